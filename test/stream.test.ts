// `puffgres run` end to end: real PostgreSQL, logical replication, the local turbopuffer server.
import { describe, expect, test } from 'bun:test'
import type postgres from 'postgres'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const BIG = () => Array.from({ length: 400 }, () => Math.random().toString(36).slice(2, 10)).join('') // ~3 kB

const pipe = usePipeline({
  name: 'stream',
  sql: `
    CREATE TABLE items (id int PRIMARY KEY, name text, status text, price numeric(10,2), body text);
    ALTER TABLE items ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
    CREATE TABLE vecs (id int PRIMARY KEY, v float8[]);
    CREATE TABLE events (dev int, at timestamptz, n int, body text, PRIMARY KEY (dev, at));
    ALTER TABLE events ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE typed (
      id bigint PRIMARY KEY, i2 int2, i4 int4, i8 int8, n numeric, f4 float4, f8 float8, b bool, t text,
      vc varchar(20), u uuid, d date, ts timestamp, tstz timestamptz, j json, jb jsonb, ia int[], ta text[],
      by bytea, e mood, ip inet);
  `.replace('CREATE TABLE typed', "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); CREATE TABLE typed"),
  migrations: {
    '001_items.toml': migration({
      name: 'items',
      table: 'items',
      columns: ['name', 'status', 'price', 'body'],
      membership: "status = 'active'",
    }),
    '002_pairs.toml': migration({ name: 'pairs', table: 'pairs', id: ['a', 'b'] }),
    '003_typed.toml': migration({ name: 'typed', table: 'typed' }),
    '005_events.toml': migration({ name: 'events', table: 'events', id: ['dev', 'at'] }),
    '006_vecs.toml': migration({ name: 'vecs', table: 'vecs', transform: 'transforms/vecs.ts' }) +
      'distance_metric = "euclidean_squared"\n',
    '004_items_all.toml': migration({ name: 'items_all', table: 'items', columns: ['name'], namespace: 'all' })
      .replace('[mapping]', '[mapping]\ntruncate = "ignore"'),
  },
  // a vector of another dimension than the namespace's is refused by turbopuffer (400): a permanent failure
  files: {
    'transforms/vecs.ts': `export default (e) =>
  e.type === 'delete' ? { type: 'delete' } : { type: 'upsert', attributes: {}, vector: e.new.v }
`,
  },
  // short, so that a stream which stops sending status updates is cut off within the test (and the status interval,
  // a third of it, is short too)
  walSenderTimeout: '3s',
  stream: true,
})

const { docs } = pipe

/**
 * Commits `write` in a transaction of its own and returns the WAL insert position right after the commit: the end of
 * that commit (nothing else writes here in between), so a confirmed position at or past it confirms the commit.
 * Not a position inside the transaction: the walsender decodes a transaction's records before its commit arrives and
 * may send an idle keepalive with a WAL end among them (the end of the last record it read); reporting that is safe,
 * since PostgreSQL skips on restart only transactions that committed before the confirmed position.
 */
async function insertThenLsn(
  sql: postgres.Sql,
  write: (tx: postgres.Sql) => Promise<unknown>,
): Promise<string> {
  const conn = await sql.reserve()
  try {
    await conn`BEGIN`
    await write(conn)
    await conn`COMMIT`
    return (await conn`SELECT pg_current_wal_insert_lsn()::text AS lsn`)[0].lsn as string
  } finally {
    conn.release()
  }
}

describe('puffgres run', () => {
  test('insert, update, membership leave and enter, delete', async () => {
    await pipe.db.sql`INSERT INTO items VALUES (1, 'one', 'active', 1.50, 'b1'), (2, 'two', 'draft', 2, 'b2')`
    await waitFor('item 1', () => docs('items').get(1)?.name === 'one')
    expect(docs('items').get(1)).toEqual({ name: 'one', status: 'active', price: '1.50', body: 'b1' })
    expect(docs('items').has(2)).toBe(false) // not a member
    await waitFor('both in "all"', () => docs('all').size === 2)

    await pipe.db.sql`UPDATE items SET name = 'uno' WHERE id = 1`
    await waitFor('item 1 updated', () => docs('items').get(1)?.name === 'uno')

    await pipe.db.sql`UPDATE items SET status = 'draft' WHERE id = 1` // leaves
    await pipe.db.sql`UPDATE items SET status = 'active' WHERE id = 2` // enters
    await waitFor('1 gone, 2 in', () => !docs('items').has(1) && docs('items').get(2)?.name === 'two')

    await pipe.db.sql`DELETE FROM items WHERE id = 2`
    await waitFor('2 deleted', () => !docs('items').has(2) && !docs('all').has(2))
  })

  test('a primary-key change deletes the old document', async () => {
    await pipe.db.sql`INSERT INTO items VALUES (10, 'ten', 'active', 10, 'x')`
    // each namespace is waited on for what is read from it: the two mappings' writes land independently
    await waitFor('10', () => docs('items').has(10) && docs('all').has(10))
    await pipe.db.sql`UPDATE items SET id = 11 WHERE id = 10`
    await waitFor('10 → 11', () => !docs('items').has(10) && docs('items').get(11)?.name === 'ten')
    await waitFor('10 → 11 in "all"', () => !docs('all').has(10) && docs('all').get(11)?.name === 'ten')
  })

  test('an unchanged TOASTed column is never blanked', async () => {
    const body = BIG()
    await pipe.db.sql`INSERT INTO items VALUES (20, 'toast', 'active', 1, ${body})`
    await waitFor('20', () => docs('items').get(20)?.body === body)
    await pipe.db.sql`UPDATE items SET name = 'toasted' WHERE id = 20`
    await waitFor('20 renamed', () => docs('items').get(20)?.name === 'toasted')
    expect(docs('items').get(20)?.body).toBe(body)
  })

  test('the TOASTed row is re-read by its exact key texts (a timestamp with microseconds in the key)', async () => {
    const body = BIG()
    await pipe.db.sql`INSERT INTO events VALUES (7, '2024-05-06 07:08:09.123456+00', 1, ${body})`
    const id = '7:2024-05-06T07\\:08\\:09.123456Z' // composite ids escape `:`; key parts keep microseconds
    await waitFor('event', () => docs('events').get(id)?.n === 1)
    await pipe.db.sql`UPDATE events SET n = 2 WHERE dev = 7`
    await waitFor('event updated', () => docs('events').get(id)?.n === 2)
    expect(docs('events').get(id)?.body).toBe(body)
  })

  test('composite ids', async () => {
    await pipe.db.sql`INSERT INTO pairs VALUES (1, 'x:y', 1), (1, 'x', 2)`
    await waitFor('pairs', () => docs('pairs').size === 2)
    expect(docs('pairs').get('1:x\\:y')).toEqual({ a: 1, b: 'x:y', v: 1 })
    await pipe.db.sql`DELETE FROM pairs WHERE b = 'x'`
    await waitFor('pair deleted', () => docs('pairs').size === 1)
  })

  test('a big transaction streams and coalesces to the last version', async () => {
    await pipe.db.sql.begin(async (tx) => {
      await tx`INSERT INTO pairs SELECT 2, g::text, 0 FROM generate_series(1, 3000) g`
      await tx`UPDATE pairs SET v = v + 1 WHERE a = 2`
      await tx`UPDATE pairs SET v = v + 1 WHERE a = 2 AND b::int % 2 = 0`
    })
    // a batch may end inside the transaction (then intermediate versions are visible for a moment): wait for the end
    const final = () => {
      const d = [...docs('pairs')].filter(([k]) => String(k).startsWith('2:'))
      return d.length === 3000 && d.every(([k, doc]) => doc.v === (Number(String(k).slice(2)) % 2 === 0 ? 2 : 1))
    }
    await waitFor('3000 pairs at their last version', final)
  })

  test('every common type maps as README says', async () => {
    await pipe.db
      .sql`INSERT INTO typed VALUES (9007199254740993, 1, 2, 9007199254740993, 12345678901234567890.123456789,
      1.5, 2.25, true, 'text', 'vc', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '2024-01-02 03:04:05.678',
      '2024-01-02 03:04:05.678+02', '{"a": [1, 2]}', '{"b": null}', '{1,NULL,3}', '{"x y", "z"}', '\\xdeadbeef', 'happy', '192.168.0.1')`
    await waitFor('typed row', () => docs('typed').size === 1).catch((e) => {
      throw new Error(`${e.message}; stream log: ${pipe.stream.logs.filter((l) => !l.includes('"debug"')).join('\n')}`)
    })
    const [[id, doc]] = [...docs('typed')]
    expect(id).toBe(9007199254740993n) // beyond 2^53: still a uint id, exact
    expect(doc).toMatchObject({
      i2: 1,
      i4: 2,
      n: '12345678901234567890.123456789',
      f4: 1.5,
      f8: 2.25,
      b: true,
      t: 'text',
      vc: 'vc',
      u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      d: '2024-02-29',
      ts: '2024-01-02T03:04:05.678Z',
      tstz: '2024-01-02T01:04:05.678Z',
      j: '{"a": [1, 2]}', // json keeps its text as written
      jb: '{"b": null}', // jsonb as PostgreSQL prints it
      ia: [1, 3], // turbopuffer arrays hold no nulls
      ta: ['x y', 'z'],
      by: '3q2+7w==',
      e: 'happy',
      ip: '192.168.0.1', // the backfill reads the same text (test/backfill.test.ts)
    })
    // beyond 2^53 the sink sends the exact integer and the local server keeps it exact
    expect(doc.i8).toBe(9007199254740993n)
  })

  test('TRUNCATE deletes the namespace documents, or is ignored where configured', async () => {
    await pipe.db.sql`INSERT INTO items VALUES (30, 'a', 'active', 1, 'x'), (31, 'b', 'active', 1, 'x')`
    await waitFor('30, 31', () => docs('items').has(30) && docs('items').has(31))
    const allBefore = docs('all').size
    await pipe.db.sql`TRUNCATE items`
    await pipe.db.sql`INSERT INTO items VALUES (32, 'after', 'active', 1, 'x')`
    await waitFor('only 32 left', () => docs('items').size === 1 && docs('items').has(32))
    expect(docs('all').size).toBeGreaterThanOrEqual(allBefore) // "ignore" keeps them
  })

  test('the slot is confirmed only up to what was written; status updates flow while turbopuffer refuses', async () => {
    // wal_sender_timeout is 3 s in this database (beforeAll): a stream that stops sending status updates while its
    // writes are held is cut off by the server within 3 s, which the walsender pid below would show.
    const walsender = async () => {
      const [r] = await pipe.db.sql`SELECT r.pid, r.reply_time::text AS reply, s.confirmed_flush_lsn::text AS confirmed
        FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'puffgres'`
      return r as { pid: number; reply: string; confirmed: string } | undefined
    }
    const before = (await waitFor('the walsender', walsender))!
    const writesBefore = pipe.server.stats().writes
    pipe.server.failNext(1_000_000, 503, 100) // hold the sink: every write is refused (transient) until released
    try {
      const lsn = await insertThenLsn(pipe.db.sql, (tx) => tx`INSERT INTO items VALUES (40, 'c', 'active', 1, 'x')`)
      // a big transaction behind it fills the stream's buffer, so reading pauses (backpressure) during the hold
      await pipe.db.sql`INSERT INTO pairs SELECT 4, g::text, 0 FROM generate_series(1, 20000) g`
      await waitFor('the batch to reach the sink and be refused', () => pipe.server.stats().writes >= writesBefore + 2)
      const heldSince = Date.now()
      const replies = new Set<string>()
      // The hold lasts until 3 status updates arrived after the write was refused, and at least 2.5 × the timeout.
      while (replies.size < 3 || Date.now() - heldSince < 7_500) {
        const w = await walsender()
        expect(w?.pid).toBe(before.pid) // never cut off for a replication timeout
        const [{ passed }] = await pipe.db.sql`SELECT ${w!.confirmed}::pg_lsn >= ${lsn}::pg_lsn AS passed`
        expect(passed).toBe(false) // the held write is not confirmed
        if (w!.reply) replies.add(w!.reply)
        if (Date.now() - heldSince > 60_000) throw new Error(`only ${replies.size} status updates in 60 s`)
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(docs('items').has(40)).toBe(false)
      pipe.server.failNext(0)
      await waitFor('40', () => docs('items').has(40))
      await waitFor(
        'confirmed past the insert',
        async () =>
          (await pipe.db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok FROM pg_replication_slots
          WHERE slot_name = 'puffgres'`)[0]?.ok,
        30_000,
        100,
      )
      expect((await walsender())?.pid).toBe(before.pid)
    } finally {
      pipe.server.failNext(0)
    }
  }, 120_000)

  test(
    'a permanent 4xx becomes a dead letter and the stream goes on; the slot waits for the dead-letter insert',
    async () => {
      await pipe.db.sql`INSERT INTO vecs VALUES (1, '{1,2,3}')` // the namespace now has 3 dimensions
      await waitFor('vector 1', () => docs('vecs').has(1)).catch((e) => {
        throw new Error(`${e.message}: ${pipe.stream.logs.filter((l) => !l.includes('"debug"')).join('\n')}`)
      })
      // hold the dead-letter queue: the stream's insert into it waits for this lock
      const locker = await pipe.db.sql.reserve()
      let locked = true
      try {
        await locker`BEGIN`
        await locker`LOCK TABLE __puffgres_dlq IN EXCLUSIVE MODE`
        const refusedBefore = pipe.server.stats().statuses['400'] ?? 0
        // 2 dimensions: refused for good
        const lsn = await insertThenLsn(pipe.db.sql, (tx) => tx`INSERT INTO vecs VALUES (2, '{1,2}')`)
        await waitFor(
          'turbopuffer to refuse vector 2',
          () => (pipe.server.stats().statuses['400'] ?? 0) > refusedBefore,
        )
        await waitFor(
          'the dead-letter insert to wait for the lock',
          async () =>
            (await pipe.db
              .sql`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = ${pipe.db.name}
            AND query ILIKE '%__puffgres_dlq%'`).length > 0,
        )
        const replies = new Set<string>()
        const heldSince = Date.now()
        while (replies.size < 3 || Date.now() - heldSince < 3_000) { // status updates go out, none confirms it
          const [r] = await pipe.db
            .sql`SELECT r.reply_time::text AS reply, s.confirmed_flush_lsn >= ${lsn}::pg_lsn AS passed
          FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'puffgres'`
          expect(r?.passed).toBe(false)
          if (r?.reply) replies.add(r.reply)
          if (Date.now() - heldSince > 60_000) throw new Error(`only ${replies.size} status updates in 60 s`)
          await new Promise((res) => setTimeout(res, 100))
        }
        await locker`COMMIT`
        locked = false
      } finally {
        if (locked) await locker`ROLLBACK`.catch(() => {})
        locker.release()
      }
      await waitFor(
        'the dead letter',
        async () =>
          (await pipe.db.sql`SELECT error FROM __puffgres_dlq WHERE mapping = 'vecs' AND doc_id = '2'`)[0]?.error,
      )
      const [{ error }] = await pipe.db.sql`SELECT error FROM __puffgres_dlq WHERE mapping = 'vecs' AND doc_id = '2'`
      expect(error).toContain('400')
      expect(error).toContain('dimensions')
      // the stream goes on
      await pipe.db.sql`INSERT INTO vecs VALUES (3, '{4,5,6}')`
      const [{ lsn: after }] = await pipe.db.sql`SELECT pg_current_wal_insert_lsn()::text AS lsn`
      await waitFor('vector 3', () => docs('vecs').has(3))
      expect(docs('vecs').has(2)).toBe(false)
      await waitFor(
        'confirmed past both',
        async () =>
          (await pipe.db.sql`SELECT confirmed_flush_lsn >= ${after}::pg_lsn AS ok FROM pg_replication_slots
        WHERE slot_name = 'puffgres'`)[0]?.ok,
      )
      await pipe.db.sql`DELETE FROM __puffgres_dlq WHERE mapping = 'vecs'`
    },
    120_000,
  )

  test('--create-slot false with a missing slot is a clear error', async () => {
    const r = await pipe.cli('run', '--slot', 'nosuch', '--create-slot', 'false')
    expect(r.code).toBe(1)
    expect(r.err).toBe('error: replication slot "nosuch" does not exist (run with --create-slot or create it)')
  })
})
