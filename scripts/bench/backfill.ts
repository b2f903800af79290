// Backfill throughput against its floor, PostgreSQL's own COPY, on a throwaway cluster:
//   bun scripts/bench/backfill.ts [rows]        (or BENCH_ROWS=...; default 1,000,000)
// Prints COPY (SELECT ...) TO STDOUT rows/s, then `puffgres backfill` (the CLI, in a child process) into the
// discard sink and into the local turbopuffer server: rows/s, % of COPY, and the child's peak RSS (VmHWM).
// Targets: ≥ 30% of COPY into the discard sink; peak RSS < 300 MB.
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import process from 'node:process'
import postgres from 'postgres'
import { pgBinDir, startCluster } from '../../src/postgres/throwaway.ts'
import { startLocalServer } from '../../src/local/server.ts'
import { makeProject, migration } from '../../test/harness/project.ts'

const ROWS = Number(process.argv[2] ?? process.env.BENCH_ROWS ?? 1_000_000)
const BATCH = process.env.BENCH_BATCH ?? '1000'
if (!Number.isInteger(ROWS) || ROWS < 1) throw new Error(`rows: expected a positive integer, got ${process.argv[2]}`)

const root = new URL('../..', import.meta.url).pathname
const fmt = (n: number) => Math.round(n).toLocaleString('en-US')

/** Runs the CLI; resolves with its stdout, wall time and peak RSS (VmHWM, sampled from /proc while it runs). */
function cli(args: string[]): Promise<{ out: string; ms: number; peakMb: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const child = spawn('./node_modules/.bin/bun', ['src/cli.ts', ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    let peakKb = 0
    child.stdout.on('data', (d) => out += d)
    const sample = () => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
        if (m) peakKb = Math.max(peakKb, Number(m[1]))
      } catch { /* exited */ }
    }
    const timer = setInterval(sample, 50)
    child.on('exit', (code) => {
      clearInterval(timer)
      if (code !== 0) reject(new Error(`puffgres ${args.join(' ')} exited ${code}: ${out}`))
      else resolve({ out, ms: performance.now() - started, peakMb: peakKb / 1024 })
    })
  })
}

/** Runs `copy` with psql, its output discarded; returns the wall time in ms. */
function psqlCopy(url: string, copy: string): number {
  const started = performance.now()
  const r = spawnSync(join(pgBinDir(), 'psql'), ['-X', '-q', '-d', url, '-c', copy], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`)
  return performance.now() - started
}

const cluster = await startCluster()
const server = await startLocalServer()
let project: ReturnType<typeof makeProject> | undefined
try {
  const admin = postgres(cluster.url(), { max: 1, onnotice: () => {} })
  await admin.unsafe('CREATE DATABASE bench')
  await admin.end()
  const url = cluster.url('bench')
  const sql = postgres(url, { max: 2, onnotice: () => {} })
  console.log(`creating ${fmt(ROWS)} rows ...`)
  await sql.unsafe(`
    CREATE TABLE products (
      id bigint PRIMARY KEY, title text NOT NULL, body text, price numeric(10,2), qty int, active bool,
      created_at timestamptz, tags text[]);
    INSERT INTO products SELECT g, 'product number ' || g, repeat(md5(g::text), 3), (g % 10000) / 100.0, g % 97,
      g % 10 <> 0, '2024-01-01'::timestamptz + g * interval '1 second', ARRAY['t' || (g % 7), 'x']
      FROM generate_series(1, ${ROWS}) g;`)
  await sql.unsafe('VACUUM ANALYZE products')

  // the floor: the same rows as text, straight out of PostgreSQL (psql's COPY to /dev/null: no client-side work)
  const [{ n: members }] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM products WHERE active`
  const copyMs = psqlCopy(url, 'COPY (SELECT * FROM products WHERE active) TO STDOUT')
  const copyRate = members / (copyMs / 1000)
  console.log(
    `COPY TO STDOUT (psql):    ${fmt(members)} rows in ${(copyMs / 1000).toFixed(1)} s: ${fmt(copyRate)} rows/s`,
  )
  await sql.end()

  project = makeProject({
    databaseUrl: url,
    turbopufferUrl: server.url,
    migrations: { '001_products.toml': migration({ name: 'products', table: 'products', membership: 'active' }) },
  })
  await cli(['-c', project.config, 'migrate'])
  for (const [label, extra] of [['discard sink', ['--discard']], ['local server', []]] as const) {
    const r = await cli(['-c', project.config, 'backfill', 'products', '--batch-size', BATCH, ...extra])
    const rate = Number(/\(([\d,]+) rows\/s\)/.exec(r.out)?.[1].replace(/,/g, '') ?? NaN)
    console.log(
      `backfill → ${label.padEnd(13)} ${fmt(members)} rows in ${(r.ms / 1000).toFixed(1)} s (process):` +
        ` ${fmt(rate)} rows/s (${((rate / copyRate) * 100).toFixed(0)}% of COPY), peak RSS ${fmt(r.peakMb)} MB`,
    )
  }
  const docs = server.documents('products').length
  if (docs !== members) throw new Error(`the local server holds ${docs} documents, expected ${members}`)
} finally {
  project?.remove()
  await server.stop()
  cluster.stop()
}
