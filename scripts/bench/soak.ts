// Does `puffgres run`'s memory plateau while it streams for a long time (issue 21)? On a throwaway cluster:
//   ./node_modules/.bin/bun scripts/bench/soak.ts [--minutes 20] [--runtime bun|deno] [--rate 300] [--ids 6000]
//     [--row-bytes 6000] [--sample-seconds 10] [--latency-ms 0] [--jitter-ms 0] [--storm-every 2]
// `puffgres run` (a child on --runtime, into `puffgres local`, another child) streams a steady mix of single-row
// commits over a fixed set of --ids rows of ~--row-bytes each, so that the data it handles stays the same size and
// anything it keeps per change shows as growth: updates that leave the body unchanged (the body is TOASTed out of
// line, so `run` re-reads the row), updates of the body, membership flips (`status` in and out of the mapping's
// predicate: deletes and upserts), deletes and upserts (INSERT … ON CONFLICT). Two mappings of the table: `items`
// (every column, membership `status = 'active'`) and `items_t` (a TypeScript transform). Every --storm-every minutes
// (default 2; 0: never) the server answers the next 200 writes with 429, so the retry path runs all along: something
// kept per retry grows in both halves, where one storm would only be a step.
// It reads the child's RSS (VmRSS of /proc/<pid>/status) every second and prints, every --sample-seconds, the last,
// lowest and highest reading and how far `run` is behind (WAL past its slot's confirmed position); then the
// least-squares slope over the second half in MB/hour (the first half is warm-up: JIT, caches, the heap finding its
// size), of every reading and of each window's lowest (where a collection just ran: retained memory, without the
// garbage collector's sawtooth). Target: < 50 MB/hour. At the end it checks that `run` kept up (its slot confirmed
// past the last commit) and that both namespaces match the table.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import postgres from 'postgres'
import { startCluster } from '../../src/postgres/throwaway.ts'
import { makeProject } from '../../test/harness/project.ts'
import {
  bun,
  type Child,
  confirmed,
  countDocs,
  createBenchDatabase,
  fmt,
  localServer,
  migrateProject,
  root,
  serverStats,
  sleep,
  startChild,
  stopChild,
  waitUntil,
  wholeArg,
} from './common.ts'

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '20' },
    runtime: { type: 'string', default: 'bun' },
    rate: { type: 'string', default: '300' },
    ids: { type: 'string', default: '6000' },
    'row-bytes': { type: 'string', default: '6000' },
    'sample-seconds': { type: 'string', default: '10' },
    'latency-ms': { type: 'string', default: '0' },
    'jitter-ms': { type: 'string', default: '0' },
    'storm-every': { type: 'string', default: '2' },
  },
})
const MINUTES = Number(args.minutes)
if (!(MINUTES > 0)) throw new Error(`--minutes: expected a number > 0, got "${args.minutes}"`)
const RUNTIME = args.runtime
if (RUNTIME !== 'bun' && RUNTIME !== 'deno') throw new Error(`--runtime: expected bun or deno, got "${RUNTIME}"`)
const RATE = wholeArg(args, 'rate', 1)
const IDS = wholeArg(args, 'ids', 10)
const ROW_BYTES = wholeArg(args, 'row-bytes', 32)
const SAMPLE_S = wholeArg(args, 'sample-seconds', 1)
const LAT = wholeArg(args, 'latency-ms', 0)
const JIT = wholeArg(args, 'jitter-ms', 0)
const STORM_EVERY = Number(args['storm-every'])
if (!(STORM_EVERY >= 0)) throw new Error(`--storm-every: expected minutes >= 0, got "${args['storm-every']}"`)

/** The command line of `puffgres <args>` on the runtime measured. */
function cli(argv: string[]): [string, string[]] {
  if (RUNTIME === 'bun') return [bun, ['src/cli.ts', ...argv]]
  return [join(root, 'node_modules/.bin/deno'), [
    'run',
    '-A',
    '--quiet',
    '--config',
    'deno.json',
    'src/cli.ts',
    ...argv,
  ]]
}

function rssMb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : undefined
  } catch {
    return undefined
  }
}

/** Least-squares slope of y over x. */
export function slope(points: Array<[number, number]>): number {
  const n = points.length
  if (n < 2) return NaN
  const mx = points.reduce((s, p) => s + p[0], 0) / n
  const my = points.reduce((s, p) => s + p[1], 0) / n
  let num = 0
  let den = 0
  for (const [x, y] of points) {
    num += (x - mx) * (y - my)
    den += (x - mx) ** 2
  }
  return num / den
}

// a body of ~ROW_BYTES that does not compress (md5s of random numbers), so it is TOASTed out of line
const BODY = `(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, ${Math.ceil(ROW_BYTES / 32)}))`
const TRANSFORM = `export default function transform(event: any) {
  if (event.type === 'delete') return { type: 'delete', id: event.id }
  const row = event.new
  return {
    type: 'upsert',
    id: event.id,
    attributes: { title: String(row.title).toUpperCase(), size: String(row.body ?? '').length, qty: row.qty },
  }
}
`

/** One change on a random id: the mix described at the top. */
function change(sql: postgres.Sql): Promise<unknown> {
  const id = 1 + Math.floor(Math.random() * IDS)
  const r = Math.random()
  if (r < 0.45) return sql`UPDATE items SET qty = qty + 1, updated_at = now() WHERE id = ${id}`
  if (r < 0.6) return sql.unsafe(`UPDATE items SET body = ${BODY}, updated_at = now() WHERE id = ${id}`)
  if (r < 0.8) {
    return sql`UPDATE items SET status = CASE status WHEN 'active' THEN 'hidden' ELSE 'active' END WHERE id = ${id}`
  }
  if (r < 0.9) return sql`DELETE FROM items WHERE id = ${id}`
  return sql.unsafe(
    `INSERT INTO items VALUES (${id}, 'item ${id}', ${BODY}, 0, 'active', now())
     ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, body = EXCLUDED.body, status = 'active'`,
  )
}

const cluster = await startCluster({ synchronous_commit: 'on' })
let server: { url: string; child: Child } | undefined
let run: Child | undefined
let project: ReturnType<typeof makeProject> | undefined
try {
  const url = await createBenchDatabase(cluster)
  const sql = postgres(url, { max: 4, onnotice: () => {} })
  await sql.unsafe(`CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL, body text, qty int,
    status text NOT NULL, updated_at timestamptz);
    ALTER TABLE items ALTER COLUMN body SET STORAGE EXTERNAL`)
  server = await localServer(LAT || JIT ? ['--latency-ms', String(LAT), '--jitter-ms', String(JIT)] : [])
  const mapping = (name: string, version: number, extra: string) =>
    `[migration]\nname = "${name}"\nversion = ${version}\n\n[source]\ntable = "items"\n\n[mapping]\nid = "id"\n${extra}\n` +
    `\n[target]\nnamespace = "${name}"\n`
  project = makeProject({
    databaseUrl: url,
    turbopufferUrl: server.url,
    migrations: {
      '001_items.toml': mapping('items', 1, `membership = "status = 'active'"`),
      '002_items_t.toml': mapping('items_t', 1, `transform = "transforms/t.ts"`),
    },
    files: { 'transforms/t.ts': TRANSFORM },
  })
  await migrateProject(project)

  const [cmd, argv] = cli(['-c', project.config, 'run', '--slot', 'soak'])
  run = startChild(cmd, argv, { PUFFGRES_LOG: 'info' })
  await waitUntil('run: streaming', () => run!.lines.some((l) => l.includes('"streaming"')), run, 120_000)
  const pid = run.proc.pid!
  const cpus = (await import('node:os')).cpus().length
  const load = (await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')
  console.log(
    `soak: puffgres run on ${RUNTIME}, ${MINUTES} min, ${fmt(RATE)} changes/s over ${fmt(IDS)} ids of ~${
      fmt(ROW_BYTES)
    } bytes, two mappings; server ${LAT} ± ${JIT} ms${
      STORM_EVERY ? `, 200 writes answered 429 every ${STORM_EVERY} min` : ''
    }; ` +
      `${cpus} CPUs, load average ${load}`,
  )
  // the rows, through the stream (500 a transaction)
  for (let from = 1; from <= IDS; from += 500) {
    await sql.unsafe(`INSERT INTO items SELECT g, 'item ' || g, ${BODY}, 0,
      CASE WHEN g % 3 = 0 THEN 'hidden' ELSE 'active' END, now()
      FROM generate_series(${from}, ${Math.min(IDS, from + 499)}) g`)
  }

  const samples: Array<[number, number]> = []
  const started = performance.now()
  const endAt = started + MINUTES * 60_000
  let nextSample = started + SAMPLE_S * 1000
  let nextRead = started
  /** every reading (1 s apart), and per window: the last reading and the lowest (garbage collected, or nearly) */
  const reads: Array<[number, number]> = []
  const troughs: Array<[number, number]> = []
  let window: number[] = []
  let nextStorm = STORM_EVERY ? started + STORM_EVERY * 60_000 : Infinity
  let changes = 0
  let failed = 0
  const inflight = new Set<Promise<unknown>>()
  console.log('   min  RSS MB   lowest  highest   changes  behind MB')
  while (performance.now() < endAt) {
    const now = performance.now()
    // RSS every second; each --sample-seconds window prints its lowest, highest and last reading
    if (now >= nextRead) {
      const mb = rssMb(pid)
      if (mb === undefined || run.proc.exitCode !== null) {
        throw new Error(`run exited (${run.proc.exitCode}):\n${run.lines.slice(-30).join('\n')}`)
      }
      const min = (now - started) / 60_000
      reads.push([min, mb])
      window.push(mb)
      nextRead += 1000
    }
    if (now >= nextSample && window.length) {
      const min = (now - started) / 60_000
      const low = Math.min(...window)
      samples.push([min, window[window.length - 1]])
      troughs.push([min, low])
      // how far run is behind (WAL not yet confirmed): a run that falls behind holds more, which is not a leak
      const [{ behind }] = await sql<{ behind: number }[]>`
        SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::float8 AS behind
        FROM pg_replication_slots WHERE slot_name = 'soak'`
      console.log(
        `${min.toFixed(2).padStart(6)} ${window[window.length - 1].toFixed(1).padStart(8)} ${
          low.toFixed(1).padStart(8)
        } ${Math.max(...window).toFixed(1).padStart(8)} ${fmt(changes).padStart(9)} ${
          (behind / 1e6).toFixed(1).padStart(9)
        }`,
      )
      window = []
      nextSample += SAMPLE_S * 1000
    }
    if (now >= nextStorm) {
      nextStorm += STORM_EVERY * 60_000
      await fetch(`${server.url}/_admin/fail-next`, {
        method: 'POST',
        body: JSON.stringify({ count: 200, status: 429, retry_after_ms: 20 }),
      })
      console.log('       (the next 200 writes answered 429)')
    }
    // the changes due by now, at most 4 statements at once (postgres.js's pool)
    const due = Math.floor(((now - started) / 1000) * RATE)
    while (changes < due && inflight.size < 64) {
      changes++
      const p = change(sql).catch(() => failed++).finally(() => inflight.delete(p))
      inflight.add(p)
    }
    await sleep(10)
  }
  await Promise.all(inflight)
  const [{ lsn }] = await sql<{ lsn: string }[]>`SELECT pg_current_wal_lsn()::text AS lsn`
  const { parseLsn } = await import('../../src/postgres/lsn.ts')
  const end = parseLsn(lsn)
  const caughtUp = performance.now()
  await waitUntil('run to confirm the last commit', async () => (await confirmed(sql, 'soak')) >= end, run, 120_000)
    .catch(() => {/* a slot at rest is confirmed only up to its last change: checked by the docs below */})
  const lagS = (performance.now() - caughtUp) / 1000
  const active = Number((await sql`SELECT count(*)::int AS n FROM items WHERE status = 'active'`)[0].n)
  const all = Number((await sql`SELECT count(*)::int AS n FROM items`)[0].n)
  await waitUntil(
    'the namespaces to match the table',
    async () => (await countDocs(server!.url, 'items')) === active && (await countDocs(server!.url, 'items_t')) === all,
    run,
    60_000,
  )
    .catch((e) => console.log(`WARNING: ${(e as Error).message}`))
  const stats = await serverStats(server.url) as { statuses: Record<string, number> }
  const cpu = run.cpuSeconds()
  await sql.end()

  const secondHalf = (points: Array<[number, number]>) => points.filter(([m]) => m >= MINUTES / 2)
  // MB a minute → MB an hour
  const perHour = slope(secondHalf(reads)) * 60
  const troughPerHour = slope(secondHalf(troughs)) * 60
  const rss = reads.map(([, mb]) => mb)
  const met = (x: number) => (x < 50 ? 'met' : '**not met**')
  console.log(
    `\n${fmt(changes)} changes in ${MINUTES} min (${
      fmt(changes / (MINUTES * 60))
    }/s, ${failed} refused by PostgreSQL), ` +
      `caught up ${lagS.toFixed(1)} s after the last; run used ${cpu.toFixed(0)} CPU s; the server answered ` +
      `${stats.statuses['429'] ?? 0} × 429`,
  )
  console.log(`RSS series (MB, every ${SAMPLE_S} s): ${samples.map(([, m]) => m.toFixed(0)).join(' ')}`)
  console.log(`lowest RSS per ${SAMPLE_S} s: ${troughs.map(([, m]) => m.toFixed(0)).join(' ')}`)
  console.log(
    `RSS: first ${rss[0].toFixed(0)} MB, min ${Math.min(...rss).toFixed(0)}, max ${Math.max(...rss).toFixed(0)}, ` +
      `last ${rss[rss.length - 1].toFixed(0)}\nslope over the second half: every reading (${
        secondHalf(reads).length
      }, 1 s apart) ${perHour.toFixed(1)} MB/hour, ${met(perHour)}; the lowest of each ${SAMPLE_S} s ` +
      `${troughPerHour.toFixed(1)} MB/hour, ${met(troughPerHour)} (target < 50)`,
  )
} finally {
  if (run) await stopChild(run)
  if (server) await stopChild(server.child)
  project?.remove()
  cluster.stop()
}
