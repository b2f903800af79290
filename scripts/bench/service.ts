// `puffgres run` and `backfill` against a server as slow as turbopuffer (issue 15), on a throwaway cluster:
//   ./node_modules/.bin/bun scripts/bench/service.ts [--rows 60000] [--txn-rows 500] [--latency-ms 150]
//     [--jitter-ms 200] [--decode-rows 200000] [--seconds 10]
// `puffgres local --latency-ms L --jitter-ms J --namespace-mb-per-second 32` (a child process) delays each request by
// L ± J ms, so writes land out of order as they can on the real service (published: p50 ≈ 165 ms, p99 ≈ 850 ms), and
// answers 429 past the service's per-namespace write limit. Measured, each beside its target:
// 1. `run` draining --rows committed in --txn-rows transactions into one namespace, against the latency server;
// 2. `run --discard` against pg_recvlogical on cdc.ts's mixed workload (decoding alone; the ratio, side by side);
// 3. four namespaces at once (the same rows over four tables), against the latency server;
// 4. `backfill` of --rows rows against the latency server (its own rows/s, and whether the server answered 429);
// 5. commit→visible (commit returned → write acknowledged, stamped by a proxy) at 200 and 1,000 single-row commits/s,
//    default settings, against the zero-latency and the latency server.
import { parseArgs } from 'node:util'
import type postgres from 'postgres'
import {
  bun,
  commitToVisible,
  countDocs,
  type Drain,
  drainSlot,
  fmt,
  markEnd,
  recvlogical,
  resultTable,
  ROW_VALUES,
  serverStats,
  startChild,
  wholeArg,
  withBench,
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
const ROWS = wholeArg(args, 'rows', 1000)
const TXN = wholeArg(args, 'txn-rows', 1)
const LAT = wholeArg(args, 'latency-ms', 0)
const JIT = wholeArg(args, 'jitter-ms', 0)
const DECODE_ROWS = wholeArg(args, 'decode-rows', 1000)
const SECONDS = wholeArg(args, 'seconds', 1)
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

/** drainSlot, then the slot is dropped; counts the child's peak RSS. */
async function drain(sql: postgres.Sql, run: Drain) {
  try {
    const r = await drainSlot(sql, run)
    peakMb = Math.max(peakMb, r.peakMb!)
    return r
  } finally {
    await sql`SELECT pg_drop_replication_slot(${run.slot})`.catch(() => {})
  }
}

async function setLatency(url: string, ms: number, jitterMs: number) {
  const r = await fetch(`${url}/_admin/latency`, { method: 'POST', body: JSON.stringify({ ms, jitter_ms: jitterMs }) })
  if (!r.ok) throw new Error(`setting the local server's latency: ${r.status} ${await r.text()}`)
}

// ---- main ----

const results = resultTable()
const row = results.row
// turbopuffer's per-namespace write limit too: a 429 the service would answer, the latency server answers
const flags = ['--latency-ms', String(LAT), '--jitter-ms', String(JIT), '--namespace-mb-per-second', '32']
await withBench(TABLES, flags, async ({ url, sql, server, projects, discard: discardProject, remote }) => {
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
    const one = await drain(sql, { label: 'one namespace', project: remote, slot: 'bench_one', end })
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
    const discard = await drain(sql, {
      label: 'discard',
      project: discardProject,
      slot: 'bench_discard',
      end,
      extra: ['--discard'],
    })
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
    const four = await drain(sql, { label: 'four namespaces', project: remote, slot: 'bench_four', end })
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
    const before = await serverStats(server.url)
    await fetch(`${server.url}/v2/namespaces/items`, { method: 'DELETE', headers: { authorization: 'Bearer x' } })
    const bf = startChild(bun, ['src/cli.ts', '-c', remote.config, 'backfill', 'items', '--create-slot'], {
      PUFFGRES_LOG: 'warn',
    })
    if ((await bf.exited) !== 0) throw new Error(`backfill failed:\n${bf.lines.join('\n')}`)
    peakMb = Math.max(peakMb, bf.peakMb())
    const docs = Number((await sql`SELECT count(*)::int AS n FROM items`)[0].n)
    const bfRate = Number(/\(([\d,]+) rows\/s\)/.exec(bf.lines.join('\n'))?.[1].replace(/,/g, '') ?? NaN)
    const after = await serverStats(server.url)
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
      const r = await commitToVisible(sql, {
        project: projects.make,
        serverUrl: server.url,
        rate,
        seconds: SECONDS,
        base,
        timeoutMs: 60_000,
      })
      peakMb = Math.max(peakMb, r.peakMb)
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
  results.summary()
})
