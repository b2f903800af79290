// Backfill throughput against its floor, PostgreSQL's own COPY, on a throwaway cluster:
//   bun scripts/bench/backfill.ts [rows] [runs]      (or BENCH_ROWS, BENCH_RUNS; defaults 1,000,000 and 3)
// Each round times COPY (SELECT ...) TO STDOUT, then `puffgres backfill` (the CLI, in a child process) into the
// discard sink and into the local turbopuffer server. Prints every run, then the best of the rounds for each (and
// the medians): rows/s, % of COPY, and the children's peak RSS (VmHWM).
// Targets: ≥ 30% of COPY into the discard sink; peak RSS < 300 MB.
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import process from 'node:process'
import postgres from 'postgres'
import { pgBinDir, startCluster } from '../../src/postgres/throwaway.ts'
import { startLocalServer } from '../../src/local/server.ts'
import { makeProject, migration } from '../../test/harness/project.ts'
import { createBenchDatabase, fmt, root } from './common.ts'

const ROWS = Number(process.argv[2] ?? process.env.BENCH_ROWS ?? 1_000_000)
const RUNS = Number(process.argv[3] ?? process.env.BENCH_RUNS ?? 3)
const BATCH = process.env.BENCH_BATCH ?? '1000'
if (!Number.isInteger(ROWS) || ROWS < 1) throw new Error(`rows: expected a positive integer, got ${process.argv[2]}`)
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`runs: expected a positive integer, got ${process.argv[3]}`)

/** Runs the CLI; resolves with its stdout, wall time and peak RSS (VmHWM, sampled from /proc while it runs). */
function cli(args: string[]): Promise<{ out: string; ms: number; peakMb: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const child = spawn('./node_modules/.bin/bun', ['src/cli.ts', ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
      // warnings only: progress lines would interleave with the figures
      env: { ...process.env, PUFFGRES_LOG: process.env.PUFFGRES_LOG ?? 'warn' },
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
  const url = await createBenchDatabase(cluster)
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

  const [{ n: members }] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM products WHERE active`
  await sql.end()
  project = makeProject({
    databaseUrl: url,
    turbopufferUrl: server.url,
    migrations: { '001_products.toml': migration({ name: 'products', table: 'products', membership: 'active' }) },
  })
  await cli(['-c', project.config, 'migrate'])

  const runs = { copy: [] as number[], discard: [] as number[], local: [] as number[] }
  let peakMb = 0
  for (let round = 1; round <= RUNS; round++) {
    // the floor: the same rows as text, straight out of PostgreSQL (psql's COPY to /dev/null: no client-side work)
    const copyMs = psqlCopy(url, 'COPY (SELECT * FROM products WHERE active) TO STDOUT')
    runs.copy.push(members / (copyMs / 1000))
    console.log(
      `round ${round}: COPY TO STDOUT (psql)    ${fmt(members)} rows in ${(copyMs / 1000).toFixed(1)} s: ` +
        `${fmt(members / (copyMs / 1000))} rows/s`,
    )
    for (
      const [label, extra, into] of [['discard sink', ['--discard'], runs.discard], [
        'local server',
        [],
        runs.local,
      ]] as const
    ) {
      const r = await cli(['-c', project.config, 'backfill', 'products', '--batch-size', BATCH, ...extra])
      // the backfill's own rate: process start-up, slot creation and planning are not counted
      const rate = Number(/\(([\d,]+) rows\/s\)/.exec(r.out)?.[1].replace(/,/g, '') ?? NaN)
      into.push(rate)
      peakMb = Math.max(peakMb, r.peakMb)
      console.log(
        `round ${round}: backfill → ${label.padEnd(13)} ${fmt(members)} rows: ${fmt(rate)} rows/s, ` +
          `peak RSS ${fmt(r.peakMb)} MB`,
      )
    }
  }
  const best = (xs: number[]) => Math.max(...xs)
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const pct = (x: number, floor: number) => `${((x / floor) * 100).toFixed(0)}% of COPY`
  console.log(`\n${fmt(members)} rows, best of ${RUNS} (median in brackets):`)
  console.log(`COPY TO STDOUT (psql)    ${fmt(best(runs.copy))} rows/s (${fmt(median(runs.copy))})`)
  for (const [label, xs] of [['discard sink', runs.discard], ['local server', runs.local]] as const) {
    console.log(
      `backfill → ${label.padEnd(13)} ${fmt(best(xs))} rows/s, ${pct(best(xs), best(runs.copy))} ` +
        `(${fmt(median(xs))} rows/s, ${pct(median(xs), median(runs.copy))})`,
    )
  }
  console.log(`peak RSS of the backfill processes: ${fmt(peakMb)} MB`)
  const docs = server.documents('products').length
  if (docs !== members) throw new Error(`the local server holds ${docs} documents, expected ${members}`)
} finally {
  project?.remove()
  await server.stop()
  cluster.stop()
}
