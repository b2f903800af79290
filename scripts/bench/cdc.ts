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
import { formatLsn } from '../../src/postgres/lsn.ts'
import type { Project } from '../../test/harness/project.ts'
import {
  type Child,
  commitToVisible,
  countDocs,
  drainSlot,
  fmt,
  markEnd,
  recvlogical,
  type Result,
  wholeArg,
  withBench,
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
const ROWS = wholeArg(args, 'rows', 1)
if (ROWS < 100) throw new Error(`--rows: at least 100 (the workload mixes five kinds of transactions), got ${ROWS}`)
const POLL_MS = wholeArg(args, 'poll-interval-ms', 1)
const LATENCY_S = wholeArg(args, 'latency-seconds', 1)
const RATE = wholeArg(args, 'rate', 1)
const BATCH = wholeArg(args, 'batch-size', 1)
// throughput runs flush a partial batch after 50 ms, so the drain's tail does not wait a whole poll interval
const THROUGHPUT = ['--poll-interval-ms', '50', '--batch-size', String(BATCH)]

// ---- main ----

await withBench(
  ['items'],
  [],
  async ({ url, sql, server, projects, discard: discardProject, remote: localProject }) => {
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
    const drain = async (label: string, project: Project, slot: string, extra: string[], server?: Child) =>
      report(await drainSlot(sql, { label, project, slot, end, extra: [...THROUGHPUT, ...extra], server }))
    const discard = await drain('puffgres run → discard', discardProject, 'bench_discard', ['--discard'])
    const local = await drain('puffgres run → local server', localProject, 'bench_local', [], server.child)
    const recv2 = report(await recvlogical(sql, url, 'bench_recv2', end))
    const floor = recv1.seconds <= recv2.seconds ? recv1 : recv2
    const docs = await countDocs(server.url, 'items')
    if (docs !== w.ids) throw new Error(`the local server holds ${docs} documents of items, expected ${w.ids}`)
    for (const s of slots) await sql`SELECT pg_drop_replication_slot(${s})`

    console.log(`latency: ${fmt(RATE)} single-row commits/s for ${LATENCY_S} s, --poll-interval-ms ${POLL_MS} ...`)
    const lat = await commitToVisible(sql, {
      project: projects.make,
      serverUrl: server.url,
      rate: RATE,
      seconds: LATENCY_S,
      base: 1_000_000_000,
      extra: ['--poll-interval-ms', String(POLL_MS), '--batch-size', String(BATCH)],
      timeoutMs: POLL_MS * 10 + 30_000,
    })
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
  },
)
