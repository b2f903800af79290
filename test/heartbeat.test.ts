// The heartbeat: on an idle database the slot still advances past the heartbeat's WAL, and a slot that retains too
// much WAL is reported. Real PostgreSQL, a real replication stream.
import { expect, test } from 'bun:test'
import { emitHeartbeat, Heartbeat } from '../src/stream/heartbeat.ts'
import { StreamMonitor } from '../src/stream/stream-monitor.ts'
import { parseLsn } from '../src/postgres/lsn.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { quietLogger } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'heartbeat',
  sql: `CREATE TABLE items (id int PRIMARY KEY, name text); CREATE TABLE unpublished (v text)`,
  migrations: { '001_items.toml': migration({ name: 'items', table: 'items' }) },
})

const confirmedFlush = async (slot: string) =>
  (await pipe.db.sql<{ c: string | null }[]>`
    SELECT confirmed_flush_lsn::text AS c FROM pg_replication_slots WHERE slot_name = ${slot}`)[0]?.c

test('emitHeartbeat writes a logical message to the WAL and returns its LSN', async () => {
  const [{ before }] = await pipe.db.sql<{ before: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS before`
  const lsn = await emitHeartbeat(pipe.db.sql)
  expect(parseLsn(lsn)).toBeGreaterThanOrEqual(parseLsn(before))
  const [{ after }] = await pipe.db.sql<{ after: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS after`
  expect(parseLsn(after)).toBeGreaterThan(parseLsn(before))
})

test('heartbeats advance an idle slot past their WAL, and too much retained WAL is reported', async () => {
  const slot = 'idle_heartbeat'
  const monitor = new StreamMonitor()
  const stream = await pipe.startStream({
    slot,
    batchSize: 100,
    monitor,
    heartbeatIntervalMs: 100,
    // any WAL at all is "too much": the warning must appear
    maxRetainedWalMb: 1e-9,
  })
  const logs = stream.logs
  try {
    await waitFor('streaming', () => monitor.streaming)
    // only an unpublished table changes: no published change will ever carry the slot forward
    await pipe.db.sql`INSERT INTO unpublished SELECT 'x' FROM generate_series(1, 100)`
    const beat = await waitFor('a heartbeat after the write', () => {
      const lines = logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'heartbeat')
      return lines.length >= 2 ? lines[lines.length - 1] : undefined
    })
    const beatLsn = parseLsn(beat.lsn)
    expect(monitor.heartbeats.get()).toBeGreaterThanOrEqual(2)
    // the stream confirms a keepalive past the heartbeat (sent with the next status update, within 10 s)
    await waitFor('confirmed_flush_lsn past the heartbeat', async () => {
      const c = await confirmedFlush(slot)
      return c !== undefined && c !== null && parseLsn(c) >= beatLsn
    }, 30_000)
    expect(logs.some((l) => JSON.parse(l).msg.startsWith('the replication slot retains more WAL'))).toBe(true)
    expect(monitor.retainedWal.get()).toBeGreaterThan(0)
  } finally {
    await stream.stop()
  }
}, 60_000)

test('with heartbeat_interval_ms = 0 a round writes no heartbeat but still measures the slot', async () => {
  const monitor = new StreamMonitor()
  const heartbeat = (intervalMs: number) =>
    new Heartbeat(pipe.db.sql, {
      slot: 'idle_heartbeat',
      intervalMs,
      log: quietLogger(),
      monitor,
      streaming: () => true,
    })
  await heartbeat(0).tick()
  expect(monitor.heartbeats.get()).toBe(0)
  expect(monitor.lagBytes.get()).toBeGreaterThanOrEqual(0)
  // the same round with heartbeats on writes one
  await heartbeat(1000).tick()
  expect(monitor.heartbeats.get()).toBe(1)
})
