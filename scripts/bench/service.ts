// `puffgres run` and `backfill` against a server as slow as turbopuffer (issue 15), on a throwaway cluster:
//   ./node_modules/.bin/bun scripts/bench/service.ts [--rows 60000] [--txn-rows 500] [--latency-ms 150]
//     [--jitter-ms 200] [--decode-rows 200000] [--seconds 10]
// `puffgres local --latency-ms L --jitter-ms J` (a child process) delays each request by L ± J ms, so writes land out
// of order as they can on the real service (published: p50 ≈ 165 ms, p99 ≈ 850 ms). Measured, each beside its target:
// 1. `run` draining --rows committed in --txn-rows transactions into one namespace, against the latency server;
// 2. `run --discard` against pg_recvlogical on cdc.ts's mixed workload (decoding alone; the ratio, side by side);
// 3. four namespaces at once (the same rows over four tables), against the latency server;
// 4. `backfill` of --rows rows against the latency server (its own rows/s, and whether the server answered 429);
// 5. commit→visible (commit returned → write acknowledged, stamped by a proxy) at 200 and 1,000 single-row commits/s,
//    default settings, against the zero-latency and the latency server.
import { gunzipSync } from 'node:zlib'
import { parseArgs } from 'node:util'
import postgres from 'postgres'
import { formatLsn } from '../../src/postgres/lsn.ts'
import { startCluster } from '../../src/postgres/throwaway.ts'
import { serveHttp } from '../../src/runtime.ts'
import { makeProject, migration, type Project } from '../../test/harness/project.ts'
import {
  bun,
  type Child,
  commitAtRate,
  confirmed,
  countDocs,
  fmt,
  localServer,
  markEnd,
  percentile,
  recvlogical,
  ROW_VALUES,
  startChild,
  stopChild,
  waitUntil,
  workload,
} from './common.ts'

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '60000' },
    'txn-rows': { type: 'string', default: '500' },
    'latency-ms': { type: 'string', default: '150' },
    'jitter-ms': { type: 'string', default: '200' },
    'decode-rows': { type: 'string', default: '200000' },
    seconds: { type: 'string', default: '10' },
    only: { type: 'string' },
  },
})
function whole(name: keyof typeof args, min: number): number {
  const n = Number(args[name])
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`--${name}: expected a whole number >= ${min}, got "${args[name]}"`)
  }
  return n
}
const ROWS = whole('rows', 1000)
const TXN = whole('txn-rows', 1)
const LAT = whole('latency-ms', 0)
const JIT = whole('jitter-ms', 0)
const DECODE_ROWS = whole('decode-rows', 1000)
const SECONDS = whole('seconds', 1)
const PUBLICATION = 'puffgres_pub'
const PARTS = ['one', 'decode', 'four', 'backfill', 'latency']
const ONLY = args.only?.split(',') ?? PARTS
for (const p of ONLY) if (!PARTS.includes(p)) throw new Error(`--only: expected some of ${PARTS.join(',')}, got "${p}"`)
const part = (name: string) => ONLY.includes(name)
const TABLES = ['items', 'q0', 'q1', 'q2', 'q3', 'mixed']

/** Commits rows [from, from + n) into each of `tables` in turn, `TXN` rows per transaction. */
async function commitRows(sql: postgres.Sql, tables: string[], from: number, n: number) {
  const inserts = tables.map((t) =>
    `INSERT INTO ${t} SELECT ${ROW_VALUES('g')} FROM generate_series(s, least(s + ${TXN - 1}, ${from + n - 1})) g;
     COMMIT;`
  ).join('\n')
  await sql.unsafe(`DO $$ BEGIN FOR s IN ${from}..${from + n - 1} BY ${TXN} LOOP ${inserts} END LOOP; END $$`)
}

let peakMb = 0

/** `puffgres run` as a child from an existing slot until it is confirmed at `end`; timed from "streaming". */
async function drain(
  label: string,
  sql: postgres.Sql,
  project: Project,
  slot: string,
  end: bigint,
  extra: string[] = [],
) {
  const child = startChild(bun, [
    'src/cli.ts',
    '-c',
    project.config,
    'run',
    '--slot',
    slot,
    '--create-slot',
    'false',
    ...extra,
  ], { PUFFGRES_LOG: 'info' })
  try {
    await waitUntil(`${label}: streaming`, () => child.lines.some((l) => l.includes('"streaming"')), child)
    const started = performance.now()
    await waitUntil(
      `${label}: slot confirmed at ${formatLsn(end)}`,
      async () => (await confirmed(sql, slot)) >= end,
      child,
    )
    const seconds = (performance.now() - started) / 1000
    peakMb = Math.max(peakMb, child.peakMb())
    return { seconds, peakMb: child.peakMb(), cpu: child.cpuSeconds() }
  } finally {
    await stopChild(child)
    await sql`SELECT pg_drop_replication_slot(${slot})`.catch(() => {})
  }
}

/** A proxy that stamps when each upserted id's write was acknowledged, and how long each write took. */
async function arrivalProxy(upstream: string) {
  const arrived = new Map<number, number>()
  const writeMs: number[] = []
  const server = await serveHttp({
    port: 0,
    hostname: '127.0.0.1',
    fetch: async (req) => {
      const url = new URL(req.url)
      const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : new Uint8Array(await req.arrayBuffer())
      const headers = new Headers(req.headers)
      headers.delete('host')
      headers.delete('content-length')
      const sent = performance.now()
      const res = await fetch(upstream + url.pathname + url.search, { method: req.method, headers, body })
      const out = await res.arrayBuffer()
      const now = performance.now()
      if (res.ok && body && req.method === 'POST' && /^\/v2\/namespaces\/[^/]+$/.test(url.pathname)) {
        writeMs.push(now - sent)
        const raw = req.headers.get('content-encoding') === 'gzip' ? gunzipSync(body) : body
        const w = JSON.parse(new TextDecoder().decode(raw))
        for (const r of w.upsert_rows ?? []) if (typeof r.id === 'number' && !arrived.has(r.id)) arrived.set(r.id, now)
      }
      const h = new Headers(res.headers)
      h.delete('content-encoding')
      h.delete('content-length')
      return new Response(out, { status: res.status, headers: h })
    },
  })
  return { url: `http://127.0.0.1:${server.port}`, arrived, writeMs, stop: () => server.stop() }
}

/** Single-row commits at `rate`/s for SECONDS while `run` (default settings) streams through the proxy. */
async function commitToVisible(
  sql: postgres.Sql,
  project: (url: string) => Project,
  serverUrl: string,
  rate: number,
  base: number,
) {
  const proxy = await arrivalProxy(serverUrl)
  const p = project(proxy.url)
  await sql`SELECT pg_create_logical_replication_slot('bench_latency', 'pgoutput')`
  const child = startChild(bun, ['src/cli.ts', '-c', p.config, 'run', '--slot', 'bench_latency'], {
    PUFFGRES_LOG: 'info',
  })
  const committed = new Map<number, number>()
  try {
    await waitUntil('latency run: streaming', () => child.lines.some((l) => l.includes('"streaming"')), child)
    const { total, achieved } = await commitAtRate(sql, rate, SECONDS, base, committed)
    await waitUntil('every latency row to arrive', () => proxy.arrived.size >= total, child, 60_000)
    const lat = [...committed].map(([id, t]) => proxy.arrived.get(id)! - t).sort((a, b) => a - b)
    const writes = [...proxy.writeMs].sort((a, b) => a - b)
    peakMb = Math.max(peakMb, child.peakMb())
    return {
      rate: achieved,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      writeP99: percentile(writes, 99),
      writes: writes.length,
    }
  } finally {
    await stopChild(child)
    await sql`SELECT pg_drop_replication_slot('bench_latency')`.catch(() => {})
    await proxy.stop()
  }
}

async function setLatency(url: string, ms: number, jitterMs: number) {
  const r = await fetch(`${url}/_admin/latency`, { method: 'POST', body: JSON.stringify({ ms, jitter_ms: jitterMs }) })
  if (!r.ok) throw new Error(`setting the local server's latency: ${r.status} ${await r.text()}`)
}

const stats = async (url: string) => (await (await fetch(`${url}/_admin/stats`)).json()) as Record<string, any>

// ---- main ----

const cluster = await startCluster({ synchronous_commit: 'on' })
let server: { url: string; child: Child } | undefined
const projects: Project[] = []
const rowsOut: string[] = []
const ok = (b: boolean) => (b ? 'yes' : '**no**')
const row = (measure: string, result: string, target: string, met: boolean | undefined) => {
  const line = `| ${measure} | ${result} | ${target} | ${met === undefined ? '' : ok(met)} |`
  rowsOut.push(line)
  console.log(line)
}
try {
  const admin = postgres(cluster.url(), { max: 1, onnotice: () => {} })
  await admin.unsafe('CREATE DATABASE bench')
  await admin.end()
  const url = cluster.url('bench')
  const sql = postgres(url, { max: 4, onnotice: () => {} })
  for (const t of TABLES) {
    await sql.unsafe(`CREATE TABLE ${t} (
      id bigint PRIMARY KEY, title text NOT NULL, body text, qty int, price numeric(10,2), updated_at timestamptz)`)
  }
  server = await localServer(['--latency-ms', String(LAT), '--jitter-ms', String(JIT)])
  const project = (tpUrl?: string) => {
    const p = makeProject({
      databaseUrl: url,
      turbopufferUrl: tpUrl,
      migrations: Object.fromEntries(
        TABLES.map((t, k) => [`00${k + 1}_${t}.toml`, migration({ name: t, table: t })]),
      ),
    })
    projects.push(p)
    return p
  }
  const discardProject = project()
  const remote = project(server.url)
  const m = startChild(bun, ['src/cli.ts', '-c', remote.config, 'migrate'])
  if ((await m.exited) !== 0) throw new Error(`migrate failed:\n${m.lines.join('\n')}`)
  const cpus = (await import('node:os')).cpus().length
  const load = (await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')
  console.log(`machine: ${cpus} CPUs, load average ${load}; latency server: ${LAT} ± ${JIT} ms per request\n`)
  console.log('| measure | result | target | met |\n| --- | --- | --- | --- |')

  // 1. one namespace, against the latency server (its rows are the backfill's too)
  await sql`SELECT pg_create_logical_replication_slot('bench_one', 'pgoutput')`
  await commitRows(sql, ['items'], 1, ROWS)
  let end = await markEnd(sql, 'items')
  if (!part('one')) await sql`SELECT pg_drop_replication_slot('bench_one')`
  else {
    const one = await drain('one namespace', sql, remote, 'bench_one', end)
    const docs = await countDocs(server.url, 'items')
    if (docs !== ROWS) throw new Error(`the server holds ${docs} documents of items, expected ${ROWS}`)
    const oneRate = ROWS / one.seconds
    row(
      `run, ${fmt(ROWS)} rows in ${TXN}-row txns, one namespace, ${LAT} ± ${JIT} ms`,
      `${fmt(oneRate)} rows/s`,
      '≥ 9,000 rows/s',
      oneRate >= 9000,
    )
  }

  // 2. decoding: pg_recvlogical, run --discard, pg_recvlogical again (the faster floor counts)
  if (part('decode')) {
    for (const s of ['bench_recv', 'bench_discard', 'bench_recv2']) {
      await sql`SELECT pg_create_logical_replication_slot(${s}, 'pgoutput')`
    }
    // cdc.ts's mixed workload (big and small inserts and updates, 30% single-row transactions), as issue 15 measured
    const mixed = await workload(sql, DECODE_ROWS, 'mixed')
    end = await markEnd(sql, 'mixed')
    const recv1 = await recvlogical(sql, url, 'bench_recv', end, PUBLICATION)
    const discard = await drain('discard', sql, discardProject, 'bench_discard', end, ['--discard'])
    const recv2 = await recvlogical(sql, url, 'bench_recv2', end, PUBLICATION)
    for (const s of ['bench_recv', 'bench_recv2']) await sql`SELECT pg_drop_replication_slot(${s})`
    const floor = Math.min(recv1.seconds, recv2.seconds)
    const kept = (floor / discard.seconds) * 100
    row(
      `run --discard vs pg_recvlogical, ${fmt(DECODE_ROWS)} changes in ${fmt(mixed.transactions)} txns`,
      `${fmt(DECODE_ROWS / discard.seconds)} vs ${fmt(DECODE_ROWS / floor)} changes/s (${kept.toFixed(0)}%)`,
      '≥ 85%',
      kept >= 85,
    )
  }

  // 3. four namespaces at once
  if (part('four')) {
    await sql`SELECT pg_create_logical_replication_slot('bench_four', 'pgoutput')`
    const quarter = Math.floor(ROWS / 4)
    await commitRows(sql, ['q0', 'q1', 'q2', 'q3'], 1, quarter)
    end = await markEnd(sql, 'q0')
    const four = await drain('four namespaces', sql, remote, 'bench_four', end)
    const fourRate = (quarter * 4) / four.seconds
    row(
      `run, ${fmt(quarter * 4)} rows over four namespaces, ${LAT} ± ${JIT} ms`,
      `${fmt(fourRate)} rows/s`,
      '≥ 9,000 rows/s',
      fourRate >= 9000,
    )
  }

  // 4. backfill against the latency server
  if (part('backfill')) {
    const before = await stats(server.url)
    await fetch(`${server.url}/v2/namespaces/items`, { method: 'DELETE', headers: { authorization: 'Bearer x' } })
    const bf = startChild(bun, ['src/cli.ts', '-c', remote.config, 'backfill', 'items', '--create-slot'], {
      PUFFGRES_LOG: 'warn',
    })
    if ((await bf.exited) !== 0) throw new Error(`backfill failed:\n${bf.lines.join('\n')}`)
    peakMb = Math.max(peakMb, bf.peakMb())
    const docs = Number((await sql`SELECT count(*)::int AS n FROM items`)[0].n)
    const bfRate = Number(/\(([\d,]+) rows\/s\)/.exec(bf.lines.join('\n'))?.[1].replace(/,/g, '') ?? NaN)
    const after = await stats(server.url)
    const tooMany = (after.statuses['429'] ?? 0) - (before.statuses['429'] ?? 0)
    row(
      `backfill, ${fmt(docs)} rows, ${LAT} ± ${JIT} ms`,
      `${fmt(bfRate)} rows/s, ${tooMany} × 429`,
      '≥ 10,000 rows/s, no 429 storm',
      bfRate >= 10_000,
    )
  }

  // 5. commit→visible
  let base = 1_000_000_000
  for (const [ms, jitter] of part('latency') ? [[0, 0], [LAT, JIT]] : []) {
    await setLatency(server.url, ms, jitter)
    for (const rate of [200, 1000]) {
      const r = await commitToVisible(sql, project, server.url, rate, base)
      base += rate * SECONDS
      const bound = ms === 0 ? 100 : r.writeP99 + 100
      row(
        `commit→visible, ${fmt(rate)} commits/s, ${ms} ± ${jitter} ms`,
        `p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms (write p99 ${fmt(r.writeP99)} ms, ${fmt(r.writes)} writes, ${
          fmt(r.rate)
        } commits/s)`,
        ms === 0 ? 'p99 ≤ 100 ms' : `p99 ≤ write p99 + 100 = ${fmt(bound)} ms`,
        r.p99 <= bound,
      )
    }
  }
  row('peak RSS of any puffgres child', `${fmt(peakMb)} MB`, '< 300 MB', peakMb < 300)
  await sql.end()
  console.log(`\nsummary (for README):\n| measure | result | target | met |\n| --- | --- | --- | --- |`)
  for (const l of rowsOut) console.log(l)
} finally {
  if (server) await stopChild(server.child)
  for (const p of projects) p.remove()
  cluster.stop()
}
