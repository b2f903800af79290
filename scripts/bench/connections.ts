// Write requests over Bun's fetch vs over the sink's own kept-open connections (src/turbopuffer/keep-alive.ts),
// plain HTTP and TLS, against a server as slow as turbopuffer (150 ± 200 ms per request), in one run:
//   ./node_modules/.bin/bun scripts/bench/connections.ts [--requests 1000] [--rounds 4] [--rows 20]
// Each round sends --requests writes of --rows documents at once (a batch over that many tenant namespaces) and
// waits for all; the client and the server are child processes, their CPU read from the kernel. Prints wall time,
// client and server CPU per request, and the ratio own connections / fetch (target: client CPU ratio < 1 over TLS,
// where fetch opens a connection, a handshake, for nearly every request past Bun's 64 kept idle).
// Needs `openssl` on the PATH for the TLS rows (skipped without it).
import { parseArgs } from 'node:util'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import process from 'node:process'
import { Buffer } from 'node:buffer'
import { selfSigned } from '../../test/harness/tls.ts'

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    requests: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '4' },
    rows: { type: 'string', default: '20' },
    // internal: the child roles
    serve: { type: 'boolean' },
    client: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
})
const REQUESTS = Number(args.requests)
const ROUNDS = Number(args.rounds)
const ROWS = Number(args.rows)
const bun = process.execPath
const self = new URL(import.meta.url).pathname
const g = globalThis as unknown as { Bun: any }

/** CPU ms (user + system) of a process, from /proc (the whole process: every thread). */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) * 1000 / 100
}

if (args.serve) {
  // the server: answers each write after 150 ± 200 ms (at least 0), like `puffgres local --latency-ms 150
  // --jitter-ms 200`, and prints its port
  const tls = args.cert ? { cert: readFileSync(args.cert, 'utf8'), key: readFileSync(args.key!, 'utf8') } : undefined
  const server = g.Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    tls,
    async fetch(req: Request) {
      await req.arrayBuffer()
      await new Promise((r) => setTimeout(r, Math.max(0, 150 + (Math.random() * 2 - 1) * 200)))
      return new Response('{"status":"OK","rows_affected":1}', { headers: { 'content-type': 'application/json' } })
    },
  })
  console.log(server.port)
} else if (args.client) {
  // a client: ROUNDS × REQUESTS writes at once, over fetch or the pool; prints the wall time
  const [mode, url, ca] = [args.client, positionals[0], args.cert ? readFileSync(args.cert, 'utf8') : undefined]
  const { KeepAlivePool } = await import('../../src/turbopuffer/keep-alive.ts')
  const pool = new KeepAlivePool(url, REQUESTS, ca ? { tls: { ca } } : {})
  const body = JSON.stringify({
    upsert_rows: Array.from({ length: ROWS }, (_, i) => ({ id: i, title: `item ${i}`, body: 'x'.repeat(128) })),
  })
  const headers = { 'content-type': 'application/json', authorization: 'Bearer x' }
  const one = async (i: number) => {
    const p = `/v2/namespaces/t_${i}`
    if (mode === 'own') return (await pool.request('POST', p, headers, Buffer.from(body))).text
    const init = { method: 'POST', body, headers, ...(ca ? { tls: { ca } } : {}) }
    return await (await fetch(url + p, init as RequestInit)).text()
  }
  const t = performance.now()
  for (let r = 0; r < ROUNDS; r++) await Promise.all(Array.from({ length: REQUESTS }, (_, i) => one(i)))
  console.log(Math.round(performance.now() - t))
  pool.close()
} else {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'puffgres-bench-tls-'))
  let tls: { cert: string; key: string } | undefined
  try {
    const made = selfSigned(dir, 'DNS:localhost')
    tls = { cert: made.certFile, key: made.keyFile }
  } catch {
    console.log('no openssl: the TLS rows are skipped')
  }
  const firstLine = (child: ReturnType<typeof spawn>) =>
    new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout!.on('data', (d: Buffer) => {
        out += d
        if (out.includes('\n')) resolve(out.split('\n')[0])
      })
      child.on('exit', (code) => reject(new Error(`exited ${code}`)))
    })
  const env = { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: String(Math.max(REQUESTS, 256)) }
  const rows: string[] = []
  for (const scheme of tls ? ['http', 'https'] : ['http']) {
    const result: Record<string, { wall: number; client: number; server: number }> = {}
    for (const mode of ['fetch', 'own']) {
      const tlsArgs = scheme === 'https' ? ['--cert', tls!.cert, '--key', tls!.key] : []
      const server = spawn(bun, [self, '--serve', ...tlsArgs], { stdio: ['ignore', 'pipe', 'inherit'] })
      const port = await firstLine(server)
      const host = scheme === 'https' ? 'localhost' : '127.0.0.1'
      const s0 = cpuMs(server.pid!)
      const client = spawn(bun, [
        self,
        '--client',
        mode,
        `${scheme}://${host}:${port}`,
        '--requests',
        String(REQUESTS),
        '--rounds',
        String(ROUNDS),
        '--rows',
        String(ROWS),
        ...(scheme === 'https' ? ['--cert', tls!.cert] : []),
      ], { stdio: ['ignore', 'pipe', 'inherit'], env })
      let clientCpu = 0
      const sample = setInterval(() => {
        try {
          clientCpu = cpuMs(client.pid!)
        } catch { /* exited */ }
      }, 20)
      const wall = Number(await firstLine(client))
      clearInterval(sample)
      const serverCpu = cpuMs(server.pid!) - s0
      server.kill()
      result[mode] = { wall, client: clientCpu, server: serverCpu }
    }
    const n = REQUESTS * ROUNDS
    const per = (ms: number) => `${Math.round(ms * 1000 / n)} µs`
    for (const mode of ['fetch', 'own']) {
      const r = result[mode]
      rows.push(
        `| ${scheme} | ${mode === 'own' ? 'own connections' : "Bun's fetch"} | ${r.wall} ms | ${per(r.client)} | ${
          per(r.server)
        } |`,
      )
    }
    const ratio = (k: 'wall' | 'client' | 'server') => (result.own[k] / result.fetch[k]).toFixed(2)
    rows.push(`| ${scheme} | ratio own / fetch | ${ratio('wall')} | ${ratio('client')} | ${ratio('server')} |`)
  }
  rmSync(dir, { recursive: true, force: true })
  console.log(
    `${ROUNDS} rounds of ${REQUESTS} writes at once (${ROWS} documents each), server 150 ± 200 ms per request\n`,
  )
  console.log('| scheme | client | wall | client CPU per request | server CPU per request |')
  console.log('| --- | --- | --- | --- | --- |')
  for (const r of rows) console.log(r)
}
