// Streaming throughput and latency of `puffgres run` against its floor, pg_recvlogical, on a throwaway cluster:
//   ./node_modules/.bin/bun scripts/bench/cdc.ts [--rows 200000] [--poll-interval-ms 1000] [--latency-seconds 20]
//     [--rate 1000] [--batch-size 1000]
// One workload (big INSERT ... SELECT and UPDATE transactions, 100-row transactions, single-row inserts and updates;
// ~200-byte rows) is committed while nothing consumes. Three slots created before it are then drained, one after
// the other, by (a) pg_recvlogical to /dev/null (decoding alone), (b) `puffgres run --discard`, (c) `puffgres run`
// into the local turbopuffer server (`puffgres local`, its own process). Each run ends when the slot's confirmed
// flush LSN passes the workload's last commit. puffgres runs as a child process; its peak RSS is its VmHWM.
// Last, commit→visible latency at a steady rate: single-row commits while `puffgres run` streams into the local
// server through a proxy in this process that stamps each document's arrival (the write's acknowledgement).
// Targets: ≥ 70% of pg_recvlogical into the discard sink, ≥ 40% into the local server, p99 latency below the poll
// interval + 100 ms, peak RSS < 300 MB.
import { parseArgs } from 'node:util'
import { gunzipSync } from 'node:zlib'
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
  type Result,
  startChild,
  stopChild,
  waitUntil,
  watchWalsender,
  workload,
} from './common.ts'

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    'poll-interval-ms': { type: 'string', default: '1000' },
    'latency-seconds': { type: 'string', default: '20' },
    rate: { type: 'string', default: '1000' },
    'batch-size': { type: 'string', default: '1000' },
  },
})
function positive(name: keyof typeof args): number {
  const n = Number(args[name])
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive whole number, got "${args[name]}"`)
  return n
}
const ROWS = positive('rows')
if (ROWS < 100) throw new Error(`--rows: at least 100 (the workload mixes five kinds of transactions), got ${ROWS}`)
const POLL_MS = positive('poll-interval-ms')
const LATENCY_S = positive('latency-seconds')
const RATE = positive('rate')
const BATCH = positive('batch-size')
// throughput runs flush a partial batch after this long, so the drain's tail does not wait a whole poll interval
const THROUGHPUT_POLL_MS = 50

// ---- the workload ----

// ---- consumers ----

/** `puffgres run` as a child until the slot is confirmed at `end`; timed from its "streaming" log line. */
async function puffgresRun(
  label: string,
  sql: postgres.Sql,
  project: Project,
  slot: string,
  end: bigint,
  extra: string[],
  server?: Child,
): Promise<Result> {
  const spawned = performance.now()
  const child = startChild(bun, [
    'src/cli.ts',
    '-c',
    project.config,
    'run',
    '--slot',
    slot,
    '--create-slot',
    'false',
    '--poll-interval-ms',
    String(THROUGHPUT_POLL_MS),
    '--batch-size',
    String(BATCH),
    ...extra,
  ], { PUFFGRES_LOG: 'info' })
  try {
    await waitUntil(`${label}: streaming`, () => child.lines.some((l) => l.includes('"streaming"')), child)
    const started = performance.now()
    const cpu0 = child.cpuSeconds()
    const serverCpu0 = server?.cpuSeconds() ?? 0
    const walsender = watchWalsender(sql, slot)
    await waitUntil(
      `${label}: slot ${slot} confirmed at ${formatLsn(end)}`,
      async () => (await confirmed(sql, slot)) >= end,
      child,
    )
    const seconds = (performance.now() - started) / 1000
    return {
      label,
      seconds,
      peakMb: child.peakMb(),
      startupSeconds: (started - spawned) / 1000,
      cpu: child.cpuSeconds() - cpu0,
      walsenderCpu: await walsender.stop(),
      serverCpu: server ? server.cpuSeconds() - serverCpu0 : undefined,
    }
  } finally {
    await stopChild(child)
  }
}

// ---- latency ----

/** A proxy in front of the local server that stamps when each upserted id's write was acknowledged. */
async function arrivalProxy(upstream: string) {
  const arrived = new Map<number, number>()
  const server = await serveHttp({
    port: 0,
    hostname: '127.0.0.1',
    fetch: async (req) => {
      const url = new URL(req.url)
      const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : new Uint8Array(await req.arrayBuffer())
      const headers = new Headers(req.headers)
      headers.delete('host')
      headers.delete('content-length')
      const res = await fetch(upstream + url.pathname + url.search, { method: req.method, headers, body })
      const out = await res.arrayBuffer()
      const now = performance.now()
      if (res.ok && body && req.method === 'POST' && /^\/v2\/namespaces\/[^/]+$/.test(url.pathname)) {
        const raw = req.headers.get('content-encoding') === 'gzip' ? gunzipSync(body) : body
        const w = JSON.parse(new TextDecoder().decode(raw))
        const ids: unknown[] = [
          ...(w.upsert_rows ?? []).map((r: { id: unknown }) => r.id),
          ...(w.upsert_columns?.id ?? []),
        ]
        for (const id of ids) if (typeof id === 'number' && !arrived.has(id)) arrived.set(id, now)
      }
      const h = new Headers(res.headers)
      h.delete('content-encoding')
      h.delete('content-length')
      return new Response(out, { status: res.status, headers: h })
    },
  })
  return { url: `http://127.0.0.1:${server.port}`, arrived, stop: () => server.stop() }
}

async function latency(sql: postgres.Sql, dbUrl: string, serverUrl: string) {
  const proxy = await arrivalProxy(serverUrl)
  const project = makeProject({
    databaseUrl: dbUrl,
    turbopufferUrl: proxy.url,
    migrations: { '001_items.toml': migration({ name: 'items', table: 'items' }) },
  })
  await sql`SELECT pg_create_logical_replication_slot('bench_latency', 'pgoutput')`
  const child = startChild(bun, [
    'src/cli.ts',
    '-c',
    project.config,
    'run',
    '--slot',
    'bench_latency',
    '--create-slot',
    'false',
    '--poll-interval-ms',
    String(POLL_MS),
    '--batch-size',
    String(BATCH),
  ], { PUFFGRES_LOG: 'info' })
  const committed = new Map<number, number>()
  try {
    await waitUntil('latency run: streaming', () => child.lines.some((l) => l.includes('"streaming"')), child)
    // single-row transactions, RATE per second in ticks of 10 ms, each stamped when its commit returns
    const base = 1_000_000_000
    const { total, achieved } = await commitAtRate(sql, RATE, LATENCY_S, base, committed)
    await waitUntil('every latency row to arrive', () => proxy.arrived.size >= total, child, POLL_MS * 10 + 30_000)
    const lat = [...committed].map(([id, t]) => proxy.arrived.get(id)! - t).sort((a, b) => a - b)
    return {
      rows: total,
      rate: achieved,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      max: lat[lat.length - 1],
      peakMb: child.peakMb(),
    }
  } finally {
    await stopChild(child)
    await sql`SELECT pg_drop_replication_slot('bench_latency')`.catch(() => {})
    await proxy.stop()
    project.remove()
  }
}

// ---- main ----

// commits wait for the WAL flush as in production (else the walsender sees a commit only after wal_writer_delay);
// fsync stays off: the benchmark measures CPU, not this machine's disk
const cluster = await startCluster({ synchronous_commit: 'on' })
let server: { url: string; child: Child } | undefined
const projects: Project[] = []
try {
  const admin = postgres(cluster.url(), { max: 1, onnotice: () => {} })
  await admin.unsafe('CREATE DATABASE bench')
  await admin.end()
  const url = cluster.url('bench')
  const sql = postgres(url, { max: 4, onnotice: () => {} })
  await sql.unsafe(`CREATE TABLE items (
    id bigint PRIMARY KEY, title text NOT NULL, body text, qty int, price numeric(10,2), updated_at timestamptz)`)
  server = await localServer()
  const project = (tpUrl?: string) => {
    const p = makeProject({
      databaseUrl: url,
      turbopufferUrl: tpUrl,
      migrations: { '001_items.toml': migration({ name: 'items', table: 'items' }) },
    })
    projects.push(p)
    return p
  }
  const discardProject = project()
  const localProject = project(server.url)
  const m = startChild(bun, ['src/cli.ts', '-c', discardProject.config, 'migrate'])
  if ((await m.exited) !== 0) throw new Error(`migrate failed:\n${m.lines.join('\n')}`)

  const slots = ['bench_recv', 'bench_discard', 'bench_local', 'bench_recv2']
  for (const s of slots) await sql`SELECT pg_create_logical_replication_slot(${s}, 'pgoutput')`
  console.log(`committing the workload (${fmt(ROWS)} changes) with nothing consuming ...`)
  const w0 = performance.now()
  const w = await workload(sql, ROWS)
  const end = await markEnd(sql, 'items')
  const changes = ROWS + 1 // the marker update
  const [{ wal }] = await sql<{ wal: string }[]>`
    SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) AS wal
    FROM pg_replication_slots WHERE slot_name = 'bench_recv'`
  console.log(
    `  ${fmt(w.bigInsert)} in INSERT ... SELECT transactions, ${fmt(w.batchInsert)} in 100-row transactions, ` +
      `${fmt(w.singleInsert)} single-row inserts, ${fmt(w.bigUpdate)} in big UPDATEs, ${fmt(w.singleUpdate)} ` +
      `single-row updates: ${fmt(w.transactions)} transactions, ${wal} of WAL, in ` +
      `${((performance.now() - w0) / 1000).toFixed(1)} s; end ${formatLsn(end)}`,
  )

  const report = (r: Result) => {
    const cpu = [
      r.cpu !== undefined ? `puffgres ${r.cpu.toFixed(1)}` : '',
      r.walsenderCpu !== undefined ? `walsender ${r.walsenderCpu.toFixed(1)}` : '',
      r.serverCpu !== undefined ? `local server ${r.serverCpu.toFixed(1)}` : '',
    ].filter(Boolean).join(', ')
    console.log(
      `${r.label.padEnd(28)} ${fmt(changes)} changes in ${r.seconds.toFixed(2)} s: ${fmt(changes / r.seconds)} ` +
        `changes/s; CPU s: ${cpu}` +
        (r.peakMb ? `; peak RSS ${fmt(r.peakMb)} MB; startup ${r.startupSeconds!.toFixed(2)} s (not timed)` : ''),
    )
    return r
  }
  // the floor runs first and last (the faster one counts), so no consumer gains from running later
  const recv1 = report(await recvlogical(sql, url, 'bench_recv', end))
  const discard = report(
    await puffgresRun('puffgres run → discard', sql, discardProject, 'bench_discard', end, ['--discard']),
  )
  const local = report(
    await puffgresRun('puffgres run → local server', sql, localProject, 'bench_local', end, [], server.child),
  )
  const recv2 = report(await recvlogical(sql, url, 'bench_recv2', end))
  const floor = recv1.seconds <= recv2.seconds ? recv1 : recv2
  const docs = await countDocs(server.url, 'items')
  if (docs !== w.ids) throw new Error(`the local server holds ${docs} documents of items, expected ${w.ids}`)
  for (const s of slots) await sql`SELECT pg_drop_replication_slot(${s})`

  console.log(`latency: ${fmt(RATE)} single-row commits/s for ${LATENCY_S} s, --poll-interval-ms ${POLL_MS} ...`)
  const lat = await latency(sql, url, server.url)
  console.log(
    `  ${fmt(lat.rows)} rows at ${fmt(lat.rate)}/s: commit→visible p50 ${fmt(lat.p50)} ms, p99 ${fmt(lat.p99)} ms, ` +
      `max ${fmt(lat.max)} ms; peak RSS ${fmt(lat.peakMb)} MB`,
  )
  await sql.end()

  // CPU per change moves less than wall time when other work shares the machine
  const perChange = (r: Result) => `puffgres CPU ${((r.cpu! / changes) * 1e6).toFixed(0)} µs/change`
  const pct = (r: Result) => (floor.seconds / r.seconds) * 100
  const peak = Math.max(discard.peakMb!, local.peakMb!, lat.peakMb)
  const ok = (b: boolean) => (b ? 'yes' : '**no**')
  console.log(`
| measure (${fmt(changes)} changes, ${fmt(w.transactions)} transactions) | result | target | met |
| --- | --- | --- | --- |
| pg_recvlogical (decoding alone) | ${fmt(changes / floor.seconds)} changes/s | floor | |
| puffgres run → discard sink | ${fmt(changes / discard.seconds)} changes/s (${pct(discard).toFixed(0)}%; ${
    perChange(discard)
  }) | ≥ 70% | ${ok(pct(discard) >= 70)} |
| puffgres run → local server | ${fmt(changes / local.seconds)} changes/s (${pct(local).toFixed(0)}%; ${
    perChange(local)
  }) | ≥ 40% | ${ok(pct(local) >= 40)} |
| commit→visible at ${fmt(RATE)}/s, poll ${POLL_MS} ms | p50 ${fmt(lat.p50)} ms, p99 ${fmt(lat.p99)} ms | p99 < ${
    POLL_MS + 100
  } ms | ${ok(lat.p99 < POLL_MS + 100)} |
| peak RSS of puffgres run | ${fmt(peak)} MB | < 300 MB | ${ok(peak < 300)} |`)
} finally {
  if (server) await stopChild(server.child)
  for (const p of projects) p.remove()
  cluster.stop()
}
