// A slot that cannot give what it promised: `run` says what happened and what to do, and exits 1, instead of
// retrying forever (invalidated: wal_status = lost) or silently creating a new one (dropped while puffgres was
// stopped, after it had streamed). `--create-slot true` creates it again, with a warning. `backfill` alike.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import postgres from 'postgres'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { runCli } from './harness/cli.ts'
import { type Cluster, startCluster, type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'
import { quietLogger, startStream, waitForSlotActive } from './harness/stream.ts'
import { quietBackfill } from './harness/backfill.ts'
import { loadConfig } from '../src/config/load.ts'
import { waitFor } from './harness/wait.ts'
import { runStream } from '../src/stream/mod.ts'

let server: LocalServer
const cleanups: (() => Promise<void> | void)[] = []

beforeAll(async () => {
  server = await startLocalServer()
})

afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  await server?.stop()
})

/** `run` from the CLI, given at most `ms` to exit (a run that does not exit is the bug). */
async function runExits(config: string, ms = 20_000, ...args: string[]) {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_r, reject) => {
    timer = setTimeout(() => reject(new Error(`run did not exit within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([runCli(['-c', config, 'run', '--poll-interval-ms', '50', ...args]), timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** A project streaming table `items` into the local server, migrated, after one row went through `run`. */
async function streamedOnce(url: string, sql: postgres.Sql): Promise<Project> {
  await sql`CREATE TABLE items (id int PRIMARY KEY, name text)`
  const project = makeProject({
    databaseUrl: url,
    turbopufferUrl: server.url,
    migrations: { '001_items.toml': migration({ name: 'items', table: 'items', namespace: `items_${Date.now()}` }) },
  })
  cleanups.push(() => project.remove())
  expect((await runCli(['-c', project.config, 'migrate'])).code).toBe(0)
  const stream = startStream(project.config)
  await waitForSlotActive(sql)
  await sql`INSERT INTO items VALUES (1, 'one')`
  await waitFor('a batch written', () => stream.flushes.some((f) => f.upserted > 0))
  await stream.stop()
  return project
}

describe('run and its slot', () => {
  let db: TestDatabase
  test('a slot dropped while puffgres was stopped: exit 1 with what to do; --create-slot true creates it', async () => {
    db = await testDatabase('slotgone')
    cleanups.push(() => db.drop())
    const project = await streamedOnce(db.url, db.sql)
    await db.sql`SELECT pg_drop_replication_slot('puffgres')`
    await db.sql`INSERT INTO items VALUES (2, 'two')` // committed while there is no slot: never streamed

    const r = await runExits(project.config)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(
      /error: replication slot "puffgres" does not exist, but puffgres had written changes up to [0-9A-F]+\//,
    )
    expect(r.err).toContain('puffgres run --create-slot true')
    expect(r.err).toContain('puffgres backfill')
    expect(await db.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'puffgres'`).toHaveLength(0)

    // backfill refuses the same way (it would cover one mapping; the gap is in all of them) ...
    const refused = await runCli(['-c', project.config, 'backfill', 'items'])
    expect(refused.code).toBe(1)
    expect(refused.err).toMatch(
      /error: replication slot "puffgres" does not exist, but puffgres had written changes up to /,
    )
    expect(refused.err).toContain('puffgres backfill <mapping> --create-slot true')
    expect(await db.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'puffgres'`).toHaveLength(0)
    // ... and creates it when told to, warning that the other mappings need the same
    const cli = await runCli(['-c', project.config, 'backfill', 'items', '--create-slot', 'true'])
    expect(cli.code).toBe(0)
    expect(await db.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'puffgres'`).toHaveLength(1)
    await db.sql`SELECT pg_drop_replication_slot('puffgres')`
    const lines: string[] = []
    const told = await quietBackfill(project.config, { mapping: 'items', createSlot: true }, lines)
    expect(told.outcome).toBe('done')
    expect(lines.join('\n')).toContain('creating the replication slot again although puffgres streamed before')
    expect(lines.join('\n')).toContain('this backfill covers one')
    expect(await db.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'puffgres'`).toHaveLength(1)
    await db.sql`SELECT pg_drop_replication_slot('puffgres')`

    // told to: created again, with a warning naming the gap
    const stream = startStream(project.config) // createSlot: true
    try {
      await waitForSlotActive(db.sql)
      expect(stream.logs.join('\n')).toContain('creating the replication slot again')
    } finally {
      await stream.stop()
    }
  })

  test('a slot of that name in another database: exit 1 naming it, with or without earlier progress', async () => {
    // slot names are cluster-wide: a second database configured with the same name finds the first one's slot
    const other = await testDatabase('slotelse')
    const here = await testDatabase('slothere')
    cleanups.push(() => other.drop(), () => here.drop())
    const slot = `shared_${Date.now() % 100000}`
    await other.sql`SELECT pg_create_logical_replication_slot(${slot}, 'pgoutput')`
    await here.sql`CREATE TABLE items (id int PRIMARY KEY, name text)`
    const project = makeProject({
      databaseUrl: here.url,
      turbopufferUrl: server.url,
      migrations: { '001_items.toml': migration({ name: 'items', table: 'items', namespace: `else_${Date.now()}` }) },
    })
    cleanups.push(() => project.remove())
    expect((await runCli(['-c', project.config, 'migrate'])).code).toBe(0)

    // nothing streamed yet: not a retry loop on "belongs to database"
    const fresh = await runExits(project.config, 20_000, '--slot', slot)
    expect(fresh.code).toBe(1)
    expect(fresh.err).toContain(`error: replication slot "${slot}" belongs to database "${other.name}"`)
    expect(fresh.err).toContain('--slot')

    // after progress (through a slot of its own): not "gone" either, the slot is there
    const stream = startStream(project.config, { slot: `own_${slot}` })
    await waitFor(
      'the slot is active',
      async () =>
        (await here.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = ${`own_${slot}`} AND active`).length > 0,
    )
    await here.sql`INSERT INTO items VALUES (1, 'one')`
    await waitFor('a batch written', () => stream.flushes.some((f) => f.upserted > 0))
    await stream.stop()
    const after = await runExits(project.config, 20_000, '--slot', slot)
    expect(after.code).toBe(1)
    expect(after.err).toContain(`error: replication slot "${slot}" belongs to database "${other.name}"`)
    expect(after.err).not.toContain('is gone')
  })

  test('the default (create only if new) starts on a fresh database, and after a backfill uses its slot', async () => {
    // the guard's false positives: neither of these is a gap
    const fresh = await testDatabase('slotfresh')
    cleanups.push(() => fresh.drop())
    await fresh.sql`CREATE TABLE items (id int PRIMARY KEY, name text)`
    await fresh.sql`INSERT INTO items VALUES (1, 'one')`
    const slot = `fresh_${Date.now() % 100000}`
    const project = makeProject({
      databaseUrl: fresh.url,
      turbopufferUrl: server.url,
      migrations: { '001_items.toml': migration({ name: 'items', table: 'items', namespace: `fresh_${slot}` }) },
    })
    cleanups.push(() => project.remove())
    expect((await runCli(['-c', project.config, 'migrate'])).code).toBe(0)
    const config = loadConfig(project.config)
    const run = async (until: () => Promise<boolean>) => {
      const stop = new AbortController()
      const lines: string[] = []
      const done = runStream(config, {
        slot,
        createSlot: 'if-new',
        pollIntervalMs: 50,
        batchSize: 1000,
        signal: stop.signal,
        log: quietLogger(lines),
      })
      try {
        await Promise.race([waitFor('run to stream', until), done.then(() => Promise.reject(new Error('run ended')))])
      } finally {
        stop.abort()
        await done.catch(() => {})
      }
      return lines.join('\n')
    }
    const active = async () =>
      (await fresh.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = ${slot} AND active`).length > 0
    // a fresh database: nothing was ever recorded, so the slot is created
    expect(await run(active)).toContain('created replication slot')
    await fresh.sql`SELECT pg_drop_replication_slot(${slot})`

    // backfill first (it creates the slot and records its snapshot), then run: the backfill's slot is used
    const b = await quietBackfill(config, { mapping: 'items', slot })
    expect(b.outcome).toBe('done')
    const logs = await run(active)
    expect(logs).not.toContain('created replication slot')
    expect(logs).not.toContain('creating the replication slot again')
  })

  test('an invalidated slot (wal_status = lost): exit 1 with what to do', async () => {
    // its own cluster: a tiny max_slot_wal_keep_size would invalidate other files' slots
    const cluster: Cluster = await startCluster({ max_slot_wal_keep_size: "'1MB'" })
    cleanups.push(() => cluster.stop())
    const admin = postgres(cluster.url(), { max: 1, onnotice: () => {} })
    await admin.unsafe('CREATE DATABASE lost')
    await admin.end()
    const sql = postgres(cluster.url('lost'), { max: 2, onnotice: () => {} })
    cleanups.push(() => sql.end({ timeout: 1 }))
    const project = await streamedOnce(cluster.url('lost'), sql)
    // more WAL than the slot may keep, then a checkpoint: PostgreSQL invalidates it
    await waitFor('the slot is lost', async () => {
      await sql`INSERT INTO items SELECT g, 'x' FROM generate_series(1000 + (random() * 1e6)::int, 1000 + (random() * 1e6)::int + 2000) g ON CONFLICT DO NOTHING`
      await sql`SELECT pg_switch_wal()`
      await sql`CHECKPOINT`
      const [s] = await sql`SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'puffgres'`
      return s?.wal_status === 'lost'
    }, 30_000)

    const r = await runExits(project.config)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/error: replication slot "puffgres" was invalidated \(wal_status = lost\)/)
    expect(r.err).toContain("pg_drop_replication_slot('puffgres')")
    expect(r.err).toContain('puffgres backfill')
  })
})
