import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import postgres from 'postgres'
import { parseLsn } from '../src/postgres/lsn.ts'
import type { PgOutputMessage, Tuple } from '../src/postgres/pgoutput.ts'
import {
  ReplicationError,
  type ReplicationEvent,
  type ReplicationOptions,
  ReplicationStream,
  SlotInUseError,
  SlotMissingError,
} from '../src/postgres/replication.ts'
import { decodeTuple } from '../src/postgres/values.ts'
import { Checkpoint } from '../src/stream/checkpoint.ts'
import { type Cluster, startCluster, type TestDatabase, testDatabase } from './harness/pg.ts'
import { waitFor } from './harness/wait.ts'

let db: TestDatabase
const open: ReplicationStream[] = []

beforeAll(async () => {
  db = await testDatabase('repl')
})

afterAll(async () => {
  for (const rs of open) await rs.close()
  await db?.drop()
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function stream(url = db.url, opts: ReplicationOptions = {}) {
  const rs = new ReplicationStream(url, opts)
  open.push(rs)
  return rs
}

/** Table, publication and slot of one test (the slot exists before any change the test makes). */
async function setup(name: string, columns: string, opts: ReplicationOptions = {}) {
  await db.sql.unsafe(`CREATE TABLE ${name} (${columns}); CREATE PUBLICATION ${name}_pub FOR TABLE ${name}`)
  const rs = stream(db.url, opts)
  await rs.ensureSlot(`${name}_slot`, { create: true })
  return rs
}

/** Reads events until `commits` Commit messages have been seen. */
async function until(it: AsyncIterator<ReplicationEvent>, commits: number): Promise<ReplicationEvent[]> {
  const out: ReplicationEvent[] = []
  while (commits > 0) {
    const r = await it.next()
    if (r.done) throw new Error('stream ended early')
    out.push(r.value)
    if (r.value.msg.tag === 'commit') commits--
  }
  return out
}

/** Changes only, with tuples decoded to rows: the shape the assertions care about. */
function changes(events: ReplicationEvent[]) {
  const row = (m: { relation: { columns: never[] } }, t: Tuple | undefined) => t && decodeTuple(m.relation.columns, t)
  return events.map((e) => e.msg).filter((m) => !['begin', 'commit', 'relation', 'type'].includes(m.tag)).map(
    (m: PgOutputMessage) => {
      switch (m.tag) {
        case 'insert':
          return { op: 'insert', table: m.relation.name, new: row(m as never, m.new) }
        case 'update':
          return {
            op: 'update',
            table: m.relation.name,
            key: row(m as never, m.key),
            old: row(m as never, m.old),
            new: row(m as never, m.new),
          }
        case 'delete':
          return { op: 'delete', table: m.relation.name, key: row(m as never, m.key), old: row(m as never, m.old) }
        case 'truncate':
          return {
            op: 'truncate',
            tables: m.relations.map((r) => r.name),
            cascade: m.cascade,
            restartIdentity: m.restartIdentity,
          }
        case 'message':
          return { op: 'message', prefix: m.prefix, content: new TextDecoder().decode(m.content), tx: m.transactional }
        default:
          return { op: m.tag }
      }
    },
  )
}

async function slotFlush(slot: string, sql = db.sql): Promise<bigint> {
  const [r] = await sql`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = ${slot}`
  return parseLsn(r.l)
}

/** Sends status updates until the slot's confirmed flush LSN reaches `lsn` (fails after 20 s). */
async function waitForFlush(rs: ReplicationStream, slot: string, lsn: bigint, sql = db.sql) {
  for (let i = 0; i < 200; i++) {
    rs.sendStatus()
    await sleep(100)
    if (await slotFlush(slot, sql) >= lsn) return
  }
  throw new Error(`slot ${slot} never reached confirmed_flush_lsn ${lsn}`)
}

/** Sends a status update and waits until the walsender has processed it (its reply time changed). */
async function statusArrives(rs: ReplicationStream, slot: string, sql = db.sql) {
  const replyTime = async () =>
    (await sql`SELECT r.reply_time::text AS t FROM pg_stat_replication r
      JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = ${slot}`)[0]?.t ?? null
  const before = await replyTime()
  rs.sendStatus()
  await waitFor(`a status update of ${slot} to arrive`, async () => (await replyTime()) !== before)
}

describe('decoding changes', () => {
  test('insert, update, primary-key change, delete, truncate and messages arrive decoded, framed by Begin/Commit', async () => {
    const rs = await setup('t1', 'id int PRIMARY KEY, name text, n int8, tags text[], at timestamptz')
    const it = await rs.start({ slot: 't1_slot', publication: 't1_pub' })
    await db.sql.unsafe(`INSERT INTO t1 VALUES (1, 'a', 9007199254740993, '{x,"y z"}', '2024-01-02 03:04:05.678+00')`)
    await db.sql.begin(async (tx) => {
      await tx`UPDATE t1 SET name = 'b' WHERE id = 1`
      await tx`UPDATE t1 SET id = 2 WHERE id = 1`
      await tx`SELECT pg_logical_emit_message(true, 'pfx', 'hello')`
    })
    await db.sql`DELETE FROM t1 WHERE id = 2`
    await db.sql`INSERT INTO t1 (id) VALUES (3)`
    await db.sql.unsafe(`TRUNCATE t1 RESTART IDENTITY CASCADE`)
    const events = await until(it, 5)
    expect(changes(events)).toEqual([
      {
        op: 'insert',
        table: 't1',
        new: {
          row: { id: 1, name: 'a', n: 9007199254740993n, tags: ['x', 'y z'], at: '2024-01-02T03:04:05.678Z' },
          unchanged: [],
        },
      },
      {
        op: 'update',
        table: 't1',
        key: undefined,
        old: undefined,
        new: {
          row: { id: 1, name: 'b', n: 9007199254740993n, tags: ['x', 'y z'], at: '2024-01-02T03:04:05.678Z' },
          unchanged: [],
        },
      },
      {
        op: 'update',
        table: 't1',
        // REPLICA IDENTITY DEFAULT: the old key only, other columns null
        key: { row: { id: 1, name: null, n: null, tags: null, at: null }, unchanged: [] },
        old: undefined,
        new: {
          row: { id: 2, name: 'b', n: 9007199254740993n, tags: ['x', 'y z'], at: '2024-01-02T03:04:05.678Z' },
          unchanged: [],
        },
      },
      { op: 'message', prefix: 'pfx', content: 'hello', tx: true },
      {
        op: 'delete',
        table: 't1',
        key: { row: { id: 2, name: null, n: null, tags: null, at: null }, unchanged: [] },
        old: undefined,
      },
      { op: 'insert', table: 't1', new: { row: { id: 3, name: null, n: null, tags: null, at: null }, unchanged: [] } },
      { op: 'truncate', tables: ['t1'], cascade: true, restartIdentity: true },
    ])
    // framing: every change sits between a Begin and its Commit, whose LSNs agree
    let begin: Extract<PgOutputMessage, { tag: 'begin' }> | undefined
    for (const { msg, walStart } of events) {
      if (msg.tag === 'begin') begin = msg
      else if (msg.tag === 'commit') {
        expect(begin!.finalLsn).toBe(msg.commitLsn)
        expect(msg.endLsn > msg.commitLsn).toBe(true)
        begin = undefined
      } else if (msg.tag !== 'relation' && msg.tag !== 'type') {
        expect(begin).toBeDefined()
        expect(walStart > 0n).toBe(true)
      }
    }
    const rel = events.find((e) => e.msg.tag === 'relation')!.msg as Extract<PgOutputMessage, { tag: 'relation' }>
    expect(rel.relation).toMatchObject({ schema: 'public', name: 't1', replicaIdentity: 'default' })
    expect(rel.relation.columns.map((c) => [c.name, c.typeOid, c.isKey])).toEqual([
      ['id', 23, true],
      ['name', 25, false],
      ['n', 20, false],
      ['tags', 1009, false],
      ['at', 1184, false],
    ])
    await rs.close()
  })

  test('REPLICA IDENTITY FULL sends whole old rows; enum columns carry their type name', async () => {
    await db.sql.unsafe(`CREATE TYPE color AS ENUM ('red', 'green')`)
    const rs = await setup('t2', 'id int PRIMARY KEY, name text, c color, cs color[]')
    await db.sql.unsafe(`ALTER TABLE t2 REPLICA IDENTITY FULL`)
    const it = await rs.start({ slot: 't2_slot', publication: 't2_pub' })
    await db.sql`INSERT INTO t2 VALUES (1, 'a', 'red', '{red,green}')`
    await db.sql`UPDATE t2 SET name = 'b', c = 'green' WHERE id = 1`
    await db.sql`DELETE FROM t2 WHERE id = 1`
    const events = await until(it, 3)
    const full = (name: string, c: string) => ({ row: { id: 1, name, c, cs: ['red', 'green'] }, unchanged: [] })
    expect(changes(events).slice(1)).toEqual([
      { op: 'update', table: 't2', key: undefined, old: full('a', 'red'), new: full('b', 'green') },
      { op: 'delete', table: 't2', key: undefined, old: full('b', 'green') },
    ])
    const rel = events.find((e) => e.msg.tag === 'relation')!.msg as Extract<PgOutputMessage, { tag: 'relation' }>
    expect(rel.relation.replicaIdentity).toBe('full')
    expect(rel.relation.columns.map((c) => c.typeName)).toEqual([undefined, undefined, 'color', '_color'])
    await rs.close()
  })

  test('a TOASTed column that an update leaves alone arrives as unchanged', async () => {
    const rs = await setup('t3', 'id int PRIMARY KEY, note text, body text')
    await db.sql.unsafe(`ALTER TABLE t3 ALTER COLUMN body SET STORAGE EXTERNAL`)
    const it = await rs.start({ slot: 't3_slot', publication: 't3_pub' })
    // ~6 kB of hex: stored out of line, never inline
    await db.sql.unsafe(
      `INSERT INTO t3 SELECT 1, 'x', string_agg(md5(i::text), '') FROM generate_series(1, 200) i`,
    )
    await db.sql`UPDATE t3 SET note = 'y' WHERE id = 1`
    const events = await until(it, 2)
    const [ins, upd] = changes(events) as { new: { row: Record<string, unknown>; unchanged: readonly string[] } }[]
    expect((ins.new.row.body as string).length).toBe(6400)
    expect(upd.new).toEqual({ row: { id: 1, note: 'y' }, unchanged: ['body'] })
    const raw = events.find((e) => e.msg.tag === 'update')!.msg as Extract<PgOutputMessage, { tag: 'update' }>
    expect(raw.new[2]).toEqual({ kind: 'unchanged' })
    await rs.close()
  })

  test('transactions that change nothing published are not delivered, on every version (14 sends them)', async () => {
    const rs = await setup('t10', 'id int PRIMARY KEY')
    await db.sql`CREATE TABLE t10_other (id int)`
    const it = await rs.start({ slot: 't10_slot', publication: 't10_pub' })
    await db.sql`INSERT INTO t10_other VALUES (1)`
    await db.sql`ALTER TABLE t10 ADD COLUMN note text`
    await db.sql`INSERT INTO t10 VALUES (1)`
    const events = await until(it, 1)
    expect(events.map((e) => e.msg.tag)).toEqual(['begin', 'relation', 'insert', 'commit'])
    await rs.close()
  })
})

describe('acknowledgement', () => {
  test('confirmed_flush_lsn moves only on confirm(); a restart without it replays the same transactions', async () => {
    const rs = await setup('t4', 'id int PRIMARY KEY')
    const startFlush = await slotFlush('t4_slot')
    const it = await rs.start({ slot: 't4_slot', publication: 't4_pub' })
    await db.sql`INSERT INTO t4 VALUES (1)`
    await db.sql`INSERT INTO t4 VALUES (2)`
    const first = await until(it, 2)
    const commits = first.map((e) => e.msg).filter((m) => m.tag === 'commit') as { endLsn: bigint }[]
    // status updates go out (and arrive), but nothing was confirmed: the slot must not pass the first commit
    await statusArrives(rs, 't4_slot')
    await statusArrives(rs, 't4_slot')
    expect(await slotFlush('t4_slot')).toBeLessThan(commits[0].endLsn)
    expect(await slotFlush('t4_slot')).toBeGreaterThanOrEqual(startFlush)
    rs.confirm(commits[0].endLsn)
    await waitForFlush(rs, 't4_slot', commits[0].endLsn)
    expect(await slotFlush('t4_slot')).toBeLessThan(commits[1].endLsn)
    await rs.close()
    expect(await slotFlush('t4_slot')).toBe(commits[0].endLsn)

    // restart: the unconfirmed second transaction comes again, the confirmed first one does not
    const rs2 = stream()
    const it2 = await rs2.start({ slot: 't4_slot', publication: 't4_pub' })
    const again = await until(it2, 1)
    expect(changes(again)).toEqual([{ op: 'insert', table: 't4', new: { row: { id: 2 }, unchanged: [] } }])
    expect(again.at(-1)!.msg).toEqual(first.at(-1)!.msg)
    rs2.confirm((again.at(-1)!.msg as { endLsn: bigint }).endLsn)
    await rs2.close()

    const rs3 = stream()
    const it3 = await rs3.start({ slot: 't4_slot', publication: 't4_pub' })
    await db.sql`INSERT INTO t4 VALUES (3)`
    expect(changes(await until(it3, 1))).toEqual([{
      op: 'insert',
      table: 't4',
      new: { row: { id: 3 }, unchanged: [] },
    }])
    await rs3.close()
  })

  test('when idle with everything confirmed, keepalives let the slot pass WAL of unpublished tables', async () => {
    // the checkpoint (src/stream/checkpoint.ts) decides; the stream tells it where keepalives fall and reports
    // deno-lint-ignore prefer-const -- assigned below, read by the checkpoint closure meanwhile
    let rs: ReplicationStream | undefined
    const checkpoint = new Checkpoint({ report: (lsn, now) => rs!.confirm(lsn, now) })
    rs = await setup('t5', 'id int PRIMARY KEY', { position: checkpoint })
    await db.sql`CREATE TABLE t5_other (id int)`
    const it = await rs.start({ slot: 't5_slot', publication: 't5_pub' })
    await db.sql`INSERT INTO t5 VALUES (1)`
    const [commit] = (await until(it, 1)).map((e) => e.msg).filter((m) => m.tag === 'commit') as { endLsn: bigint }[]
    await db.sql`INSERT INTO t5_other VALUES (1)`
    const [{ lsn }] = await db.sql`SELECT pg_current_wal_lsn()::text AS lsn`
    // not confirmed yet: keepalives must not move the slot past the delivered commit (status updates that arrived)
    await statusArrives(rs, 't5_slot')
    await statusArrives(rs, 't5_slot')
    expect(await slotFlush('t5_slot')).toBeLessThan(commit.endLsn)
    checkpoint.landed(commit.endLsn)
    // keep a next() pending, as an idle consumer does
    const pending = it.next()
    await waitForFlush(rs, 't5_slot', parseLsn(lsn))
    expect(rs.flushLsn).toBeGreaterThanOrEqual(parseLsn(lsn))
    await rs.close()
    expect(await pending).toEqual({ done: true, value: undefined })
  })
})

describe('slots and failures', () => {
  test('a missing slot is an error unless creation is allowed; createSlot returns its consistent point', async () => {
    const rs = stream()
    await expect(rs.ensureSlot('nope_slot', { create: false })).rejects.toThrow(
      'replication slot "nope_slot" does not exist (run with --create-slot or create it)',
    )
    await expect(rs.ensureSlot('nope_slot', { create: false })).rejects.toBeInstanceOf(SlotMissingError)
    const [{ before }] = await db.sql`SELECT pg_current_wal_lsn()::text AS before`
    const made = await rs.createSlot('made_slot')
    expect(made.created).toBe(true)
    expect(made.lsn).toBeGreaterThanOrEqual(parseLsn(before))
    expect(await rs.createSlot('made_slot')).toEqual({ created: false, lsn: await slotFlush('made_slot') })
    expect(await rs.ensureSlot('made_slot', { create: false })).toEqual({ created: false })
    await expect(rs.ensureSlot('Bad-Name', { create: true })).rejects.toThrow(/invalid replication slot name/)
    await rs.close()
  })

  test('failover: a failover slot from PostgreSQL 17 on; before 17 there is no such option and nothing changes', async () => {
    const [{ v17 }] = await db.sql<{ v17: boolean }[]>`
      SELECT current_setting('server_version_num')::int >= 170000 AS v17`
    const rs = stream()
    const made = await rs.createSlot('fo_made_slot', { failover: true })
    expect(made.created).toBe(true)
    expect(made.failover).toBe(v17 ? 'created' : undefined)
    expect((await rs.findSlot('fo_made_slot'))?.failover).toBe(v17 ? true : undefined)
    // an existing slot without the flag: turned on from 17 on, left as it is before
    await db.sql`SELECT pg_create_logical_replication_slot('fo_plain_slot', 'pgoutput')`
    expect(await rs.ensureSlot('fo_plain_slot', { create: false, failover: true })).toEqual(
      v17 ? { created: false, failover: 'enabled' } : { created: false },
    )
    expect((await rs.findSlot('fo_plain_slot'))?.failover).toBe(v17 ? true : undefined)
    // without the option: made as before, whatever the version
    expect(await rs.ensureSlot('fo_none_slot', { create: true })).toEqual({ created: true })
    expect((await rs.findSlot('fo_none_slot'))?.failover).toBe(v17 ? false : undefined)
    await rs.close()
  })

  test('START_REPLICATION on an active slot fails with SlotInUseError', async () => {
    const rs = await setup('t6', 'id int')
    await rs.start({ slot: 't6_slot', publication: 't6_pub' })
    const other = stream()
    const err = await other.start({ slot: 't6_slot', publication: 't6_pub' }).catch((e) => e)
    expect(err).toBeInstanceOf(SlotInUseError)
    expect(err.message).toMatch(/replication slot "t6_slot" is in use by process \d+/)
    await rs.close()
    // once released the standby can take over
    await other.start({ slot: 't6_slot', publication: 't6_pub' })
    await other.close()
  })

  test("a publication that does not exist fails the stream with the server's message", async () => {
    // 14–17 fail at the first change, 18 only warns and streams nothing: puffgres checks before it starts
    const rs = await setup('t9', 'id int')
    const err = await (async () => {
      const it = await rs.start({ slot: 't9_slot', publication: 'no_such_pub' })
      await db.sql`INSERT INTO t9 VALUES (1)`
      return await it.next()
    })().catch((e) => e)
    expect(err).toBeInstanceOf(ReplicationError)
    expect(err.message).toMatch(/publication "no_such_pub" does not exist/)
    await rs.close()
  })

  test('a terminated walsender rejects the pending next() instead of hanging', async () => {
    const rs = await setup('t7', 'id int')
    const it = await rs.start({ slot: 't7_slot', publication: 't7_pub' })
    // the handler is attached at once: the rejection may come before the terminating query returns, and Deno
    // reports a rejection that has no handler when a macrotask ends as an uncaught error of the whole file
    const pending = it.next().catch((e) => e)
    await sleep(200)
    await db.sql`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 't7_slot'`
    const err = await pending
    expect(err).toBeInstanceOf(ReplicationError)
    expect(err.message).toMatch(/replication stream of slot "t7_slot" failed/)
    await expect(it.next()).rejects.toBeInstanceOf(ReplicationError)
    await rs.close()
  })
})

describe('a slow consumer', () => {
  let cluster: Cluster
  let sql: postgres.Sql
  beforeAll(async () => {
    cluster = await startCluster({ wal_sender_timeout: "'2s'" })
    sql = postgres(cluster.url(), { max: 2, onnotice: () => {} })
  })
  afterAll(async () => {
    await sql?.end()
    cluster?.stop()
  })

  /** Fills the stream with one big transaction, then blocks the consumer for 3× wal_sender_timeout. */
  async function blockConsumer(name: string, statusIntervalMs?: number): Promise<number> {
    await sql.unsafe(`CREATE TABLE ${name} (id int, pad text); CREATE PUBLICATION ${name}_pub FOR TABLE ${name}`)
    const rs = stream(cluster.url(), { statusIntervalMs })
    await rs.ensureSlot(`${name}_slot`, { create: true })
    const it = await rs.start({ slot: `${name}_slot`, publication: `${name}_pub` })
    await sql.unsafe(`INSERT INTO ${name} SELECT i, repeat('x', 200) FROM generate_series(1, 50000) i`)
    await it.next()
    await sleep(6000)
    let rows = 0
    try {
      for (;;) {
        const { value } = await it.next()
        if (value.msg.tag === 'insert') rows++
        if (value.msg.tag === 'commit') return rows
      }
    } finally {
      await rs.close()
    }
  }

  test('timer-driven status updates keep the connection alive past wal_sender_timeout', async () => {
    // default interval: derived from the server's wal_sender_timeout
    expect(await blockConsumer('slow_ok')).toBe(50000)
  }, 60_000)

  test('control: without them the server drops the connection, and the consumer is told', async () => {
    await expect(blockConsumer('slow_ko', 60_000)).rejects.toBeInstanceOf(ReplicationError)
  }, 60_000)
})

test('a 200k-row transaction streams through a slow consumer in bounded memory', async () => {
  const rs = await setup('t8', 'id int PRIMARY KEY, pad text')
  const it = await rs.start({ slot: 't8_slot', publication: 't8_pub' })
  // ~1 kB per row, ~200 MB in all: unbounded buffering would show
  await db.sql.unsafe(
    `INSERT INTO t8 SELECT i, repeat(md5(i::text), 32) FROM generate_series(1, 200000) i`,
  )
  ;(globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc(true)
  const base = process.memoryUsage().rss
  let peak = base
  let rows = 0
  for (;;) {
    const { value } = await it.next()
    if (value.msg.tag === 'insert') {
      rows++
      if (rows % 200 === 0) {
        peak = Math.max(peak, process.memoryUsage().rss)
        await sleep(1)
      }
    }
    if (value.msg.tag === 'commit') break
  }
  expect(rows).toBe(200000)
  expect(peak - base).toBeLessThan(150 * 1024 * 1024)
  await rs.close()
}, 120_000)
