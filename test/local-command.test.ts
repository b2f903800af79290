// `puffgres local` as a user runs it: a child process that serves until SIGTERM, and clear errors for bad flags.
import { describe, expect, test } from 'bun:test'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'
import Turbopuffer from '@turbopuffer/turbopuffer'
import { help, localCommand } from '../src/commands/local.ts'

const isDeno = (globalThis as any).Deno !== undefined
/** runs src/cli.ts with the runtime running this test */
function cli(args: string[]) {
  const runtimeArgs = isDeno ? ['run', '-A', '--config', 'deno.json', 'src/cli.ts'] : ['src/cli.ts']
  return spawn(process.execPath, [...runtimeArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
}

describe('puffgres local', () => {
  test('serves until SIGTERM, prints the URL to use, and keeps data in --data-dir', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'puffgres-local-cmd-'))
    try {
      for (const round of [1, 2]) {
        const child = cli(['local', '--port', '0', '--data-dir', dir, '--api-key', 'sekret'])
        let out = ''
        child.stderr.on('data', (d) => (out += d))
        const url = await new Promise<string>((resolve, reject) => {
          child.stdout.on('data', (d) => {
            out += d
            const m = /TURBOPUFFER_BASE_URL=(http:\/\/127\.0\.0\.1:\d+)/.exec(out)
            if (m) resolve(m[1])
          })
          child.on('exit', (code) => reject(new Error(`exited early (${code}): ${out}`)))
        })
        const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
        const tpuf = new Turbopuffer({ apiKey: 'sekret', baseURL: url, maxRetries: 0 })
        const ns = tpuf.namespace('cmd')
        if (round === 1) await ns.write({ upsert_rows: [{ id: 1, round }] })
        // the second process finds what the first one stored
        const rows = await ns.query({ rank_by: ['id', 'asc'], include_attributes: true })
        expect(rows.rows).toEqual([{ id: 1, round: 1 }])
        child.kill('SIGTERM')
        const code = await exited
        expect(out).toContain('SIGTERM: stopping')
        // Deno's node:child_process reports any child it sent a signal to as (null, 'SIGTERM'), even one that
        // exited with 0 (checked with a shell child that traps TERM and exits 0), so the code is only checked on Bun.
        if (!isDeno) expect(code).toBe(0)
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('bad flags are a one-line error and exit code 2', async () => {
    const errors: string[] = []
    const orig = console.error
    console.error = (...a: unknown[]) => void errors.push(a.join(' '))
    try {
      expect(await localCommand(['--port', 'eighty'])).toBe(2)
      expect(await localCommand(['--fail-rate', '1.5'])).toBe(2)
      expect(await localCommand(['--nope'])).toBe(2)
    } finally {
      console.error = orig
    }
    expect(errors[0]).toContain('invalid --port "eighty"')
    expect(errors[1]).toContain('invalid --fail-rate "1.5"')
    expect(errors.every((e) => !e.includes('\n'))).toBe(true)
    expect(help).toContain('TURBOPUFFER_BASE_URL')
  })
})
