// `puffgres local` with thousands of namespaces (issue 24: a namespace per tenant): writes, queries, listing by
// prefix with cursor and page_size, deletion, and a data dir that survives a restart, through the official SDK.
// Not a timing test: scripts/bench/local-namespaces.ts measures the speed.
import { describe, expect, test } from 'bun:test'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'
import Turbopuffer from '@turbopuffer/turbopuffer'
import { startLocalServer } from '../src/local/server.ts'

const isDeno = (globalThis as { Deno?: unknown }).Deno !== undefined
const TENANTS = 3000
const tenant = (i: number) => `docs_${String(i).padStart(5, '0')}`

/** Runs `count` tasks, 32 at a time. */
async function pool(count: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < count) await task(next++)
  }))
}

async function listAll(tpuf: Turbopuffer, prefix: string, pageSize: number): Promise<string[]> {
  const names: string[] = []
  for await (const ns of tpuf.namespaces({ prefix, page_size: pageSize })) names.push(ns.id)
  return names
}

describe('thousands of namespaces', () => {
  test('written, queried, listed by prefix page by page, deleted, and kept across a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'puffgres-many-ns-'))
    try {
      let server = await startLocalServer({ dataDir: dir })
      let tpuf = new Turbopuffer({ apiKey: 'k', baseURL: server.url, maxRetries: 0 })
      await pool(
        TENANTS,
        (i) => tpuf.namespace(tenant(i)).write({ upsert_rows: [{ id: 1, tenant: i }, { id: 2, tenant: i }] }),
      )
      await tpuf.namespace('other_1').write({ upsert_rows: [{ id: 1 }] })

      const all = await listAll(tpuf, 'docs_', 1000)
      expect(all).toEqual(Array.from({ length: TENANTS }, (_, i) => tenant(i)))
      // a page size that does not divide the count, and a narrower prefix
      expect(await listAll(tpuf, 'docs_', 7)).toEqual(all)
      expect(await listAll(tpuf, 'docs_0012', 3)).toEqual(Array.from({ length: 10 }, (_, i) => tenant(120 + i)))
      expect(await listAll(tpuf, 'nothing_', 10)).toEqual([])
      // the raw page: next_cursor only while more names follow
      const first = await tpuf.namespaces({ prefix: 'docs_', page_size: 2 })
      expect([first.namespaces.map((n) => n.id), first.next_cursor]).toEqual([[tenant(0), tenant(1)], tenant(1)])
      const last = await tpuf.namespaces({ prefix: 'docs_', page_size: 2, cursor: tenant(TENANTS - 3) })
      expect([last.namespaces.map((n) => n.id), last.next_cursor]).toEqual([
        [tenant(TENANTS - 2), tenant(TENANTS - 1)],
        '',
      ])

      // every tenant's own documents, and only those
      await pool(TENANTS, async (i) => {
        const r = await tpuf.namespace(tenant(i)).query({
          rank_by: ['id', 'asc'],
          top_k: 10,
          include_attributes: ['tenant'],
        })
        const rows = r.rows ?? []
        if (rows.length !== 2 || rows.some((row) => row.tenant !== i)) {
          throw new Error(`${tenant(i)} answered ${JSON.stringify(r.rows)}`)
        }
      })

      // a tenant's deletion is one call
      await pool(100, (i) => tpuf.namespace(tenant(i * 2)).deleteAll())
      const left = await listAll(tpuf, 'docs_', 1000)
      expect(left.length).toBe(TENANTS - 100)
      expect(left).not.toContain(tenant(0))
      expect(left).toContain(tenant(1))

      await server.stop()
      server = await startLocalServer({ dataDir: dir })
      tpuf = new Turbopuffer({ apiKey: 'k', baseURL: server.url, maxRetries: 0 })
      expect(await listAll(tpuf, 'docs_', 500)).toEqual(left)
      expect(server.documents(tenant(TENANTS - 1))).toEqual([
        { id: 1, tenant: TENANTS - 1 },
        { id: 2, tenant: TENANTS - 1 },
      ])
      await server.stop()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 240_000)

  // The data dir held one open file per namespace: past the process's file limit (often 256 or 1024), every
  // write to a new namespace failed with EMFILE.
  test.skipIf(process.platform === 'win32')(
    'a data dir with more namespaces than the process may open files',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'puffgres-many-ns-fd-'))
      const runtimeArgs = isDeno ? ['run', '-A', '--config', 'deno.json', 'src/cli.ts'] : ['src/cli.ts']
      const child = spawn(
        'sh',
        [
          '-c',
          'ulimit -n 128 && exec "$@"',
          'sh',
          process.execPath,
          ...runtimeArgs,
          'local',
          '--port',
          '0',
          '--data-dir',
          dir,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let out = ''
      child.stderr.on('data', (d) => (out += d))
      const exited = new Promise<void>((r) => child.on('exit', () => r()))
      try {
        const url = await new Promise<string>((resolve, reject) => {
          child.stdout.on('data', (d) => {
            out += d
            const m = /TURBOPUFFER_BASE_URL=(http:\/\/127\.0\.0\.1:\d+)/.exec(out)
            if (m) resolve(m[1])
          })
          child.on('exit', (code) => reject(new Error(`exited early (${code}): ${out}`)))
        })
        const tpuf = new Turbopuffer({ apiKey: 'k', baseURL: url, maxRetries: 0 })
        await pool(500, (i) => tpuf.namespace(tenant(i)).write({ upsert_rows: [{ id: i }] }))
        expect((await listAll(tpuf, 'docs_', 1000)).length).toBe(500)
      } finally {
        child.kill('SIGTERM')
        await exited
        rmSync(dir, { recursive: true, force: true })
      }
    },
    120_000,
  )
})
