// The heartbeat: on an idle database the slot still advances past the heartbeat's WAL, and a slot that retains too
// much WAL is reported. Real PostgreSQL, a real replication stream.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { loadConfig } from '../src/config/load.ts'
import { runStream } from '../src/stream/mod.ts'
import { migrateCommand } from '../src/commands/migrate.ts'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { emitHeartbeat, Heartbeat } from '../src/ops/heartbeat.ts'
import { StreamMonitor } from '../src/ops/stream-monitor.ts'
import { parseLsn } from '../src/postgres/lsn.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'
import { quietLogger } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'

let db: TestDatabase
let server: LocalServer
let project: Project

beforeAll(async () => {
  db = await testDatabase('heartbeat')
  server = await startLocalServer()
  await db.sql.unsafe(`CREATE TABLE items (id int PRIMARY KEY, name text); CREATE TABLE unpublished (v text)`)
  project = makeProject({
    databaseUrl: db.url,
    turbopufferUrl: server.url,
    migrations: { '001_items.toml': migration({ name: 'items', table: 'items' }) },
  })
  expect(await migrateCommand([], () => loadConfig(project.config))).toBe(0)
})

afterAll(async () => {
  await server?.stop()
  project?.remove()
  await db?.drop()
})

const confirmedFlush = async (slot: string) =>
  (await db.sql<{ c: string | null }[]>`
    SELECT confirmed_flush_lsn::text AS c FROM pg_replication_slots WHERE slot_name = ${slot}`)[0]?.c

test('emitHeartbeat writes a logical message to the WAL and returns its LSN', async () => {
  const [{ before }] = await db.sql<{ before: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS before`
  const lsn = await emitHeartbeat(db.sql)
  expect(parseLsn(lsn)).toBeGreaterThanOrEqual(parseLsn(before))
  const [{ after }] = await db.sql<{ after: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS after`
  expect(parseLsn(after)).toBeGreaterThan(parseLsn(before))
})

test('heartbeats advance an idle slot past their WAL, and too much retained WAL is reported', async () => {
  const slot = 'idle_heartbeat'
  const logs: string[] = []
  const monitor = new StreamMonitor()
  const stop = new AbortController()
  const done = runStream(loadConfig(project.config), {
    slot,
    createSlot: true,
    pollIntervalMs: 50,
    batchSize: 100,
    signal: stop.signal,
    log: quietLogger(logs),
    monitor,
    heartbeatIntervalMs: 100,
    // any WAL at all is "too much": the warning must appear
    maxRetainedWalMb: 1e-9,
  })
  try {
    await waitFor('streaming', () => monitor.streaming)
    // only an unpublished table changes: no published change will ever carry the slot forward
    await db.sql`INSERT INTO unpublished SELECT 'x' FROM generate_series(1, 100)`
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
    stop.abort()
    await done
  }
}, 60_000)

test('with heartbeat_interval_ms = 0 a round writes no heartbeat but still measures the slot', async () => {
  const monitor = new StreamMonitor()
  const logs: string[] = []
  const hb = new Heartbeat(db.sql, {
    slot: 'idle_heartbeat',
    intervalMs: 0,
    log: quietLogger(logs),
    monitor,
    streaming: () => true,
  })
  await hb.tick()
  expect(monitor.heartbeats.get()).toBe(0)
  expect(monitor.lagBytes.get()).toBeGreaterThanOrEqual(0)
  // the same round with heartbeats on writes one
  const on = new Heartbeat(db.sql, {
    slot: 'idle_heartbeat',
    intervalMs: 1000,
    log: quietLogger(logs),
    monitor,
    streaming: () => true,
  })
  await on.tick()
  expect(monitor.heartbeats.get()).toBe(1)
})
