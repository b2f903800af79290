// `puffgres backfill` end to end: real PostgreSQL, the CLI, the local turbopuffer server.
import { beforeAll, describe, expect, test } from 'bun:test'
import { formatBar, formatDuration } from '../src/backfill/progress.ts'
import { copyPageSql, renderSql } from '../src/source/mod.ts'
import { parseMembership } from '../src/membership/mod.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'

const TRANSFORM = `
export default function (event) {
  if (event.type === 'delete') return { type: 'delete', id: 'doc-' + event.id }
  if (event.new.name === 'boom') throw new Error('no boom allowed')
  return { type: 'upsert', id: 'doc-' + event.id, attributes: { upper: event.new.name.toUpperCase() } }
}
`

const pipe = usePipeline({
  name: 'backfill',
  sql: `
    CREATE TABLE items (id int PRIMARY KEY, name text, status text, price numeric(10,2), secret text);
    INSERT INTO items SELECT g, 'item ' || g, CASE WHEN g % 4 = 0 THEN 'draft' ELSE 'active' END, g * 1.5, 's'
      FROM generate_series(1, 250) g;
    CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
    INSERT INTO pairs SELECT g % 12, CASE WHEN g % 5 = 0 THEN 'x:' || g ELSE g::text END, g
      FROM generate_series(1, 300) g;
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE typed (
      id bigint PRIMARY KEY, n numeric, f8 float8, b bool, u uuid, d date, ts timestamp, tstz timestamptz,
      ia int[], ta text[], by bytea, e mood, c char(5), ip inet, net cidr);
    INSERT INTO typed VALUES (9007199254740993, 12345678901234567890.123456789, 2.25, true,
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '2024-01-02 03:04:05.678', '2024-01-02 03:04:05.678+02',
      '{1,2,3}', '{"x y", "z"}', '\\xdeadbeef', 'happy', 'ab', '192.168.0.1', '10.0.0.0/8');
    CREATE TABLE loose (code text, label text);
    ALTER TABLE loose REPLICA IDENTITY FULL;
    INSERT INTO loose VALUES ('a', 'A'), ('b', 'B'), (NULL, 'no id'), ('c', 'C');
    CREATE TABLE named (id int PRIMARY KEY, name text);
    INSERT INTO named SELECT g, CASE WHEN g = 7 THEN 'boom' ELSE 'n' || g END FROM generate_series(1, 30) g;
  `,
  migrations: {
    '001_items.toml': migration({
      name: 'items',
      table: 'items',
      columns: ['name', 'price'],
      membership: "status = 'active' AND price < 300",
    }),
    '002_pairs.toml': migration({ name: 'pairs', table: 'pairs', id: ['a', 'b'] }),
    '003_typed.toml': migration({ name: 'typed', table: 'typed' }),
    '004_loose.toml': migration({ name: 'loose', table: 'loose', id: 'code' }),
    '005_named.toml': migration({ name: 'named', table: 'named', transform: 'transforms/named.ts' }),
  },
  files: { 'transforms/named.ts': TRANSFORM },
})

beforeAll(() => {
  // the one thing migrate foresees here: `loose` has a nullable id
  expect(pipe.migrated.err).toBe(
    'warning: puffgres/migrations/004_loose.toml: public.loose: mapping.id column(s) code may be NULL: a row with a ' +
      'NULL id has no document (backfill skips and counts it, the stream does not write it); add NOT NULL if it ' +
      'never is',
  )
})

const { docs } = pipe
const backfill = (...args: string[]) => pipe.cli('backfill', ...args)
const record = async (mapping: string) =>
  (await pipe.db.sql`SELECT status, rows_done::int AS rows, docs_written::int AS docs, last_key
    FROM __puffgres_backfill WHERE mapping = ${mapping}`)[0]

describe('puffgres backfill', () => {
  test('copies exactly the member rows, paged by integer id in numeric order, membership pushed down', async () => {
    const r = await backfill('items', '--batch-size', '7')
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    const expected = await pipe.db.sql<{ id: number; name: string; price: string }[]>`
      SELECT id, name, price::text FROM items WHERE status = 'active' AND price < 300 ORDER BY id`
    expect(expected.length).toBe(150)
    const got = docs('items')
    expect(got.size).toBe(expected.length)
    for (const e of expected) expect(got.get(e.id)).toEqual({ name: e.name, price: e.price })
    // non-members were never sent (pushed down), not sent and deleted
    expect(r.out).toContain(`done: 150 rows, 150 documents written in`)
    expect(r.out).toContain('created replication slot "puffgres"')
    expect(await record('items')).toMatchObject({ status: 'done', rows: 150, docs: 150, last_key: ['199'] })
    // every document carries the version of the page's snapshot LSN
    const versions = new Set(pipe.server.documents('items').map((d) => d._puffgres_version))
    expect(versions.size).toBeGreaterThan(1) // one per page (pages close together can share one)
    for (const v of versions) expect(String(v)).toMatch(/^[0-9a-f]{16}00000000$/)
  })

  test('composite ids: every row once, across page boundaries, escaped ids', async () => {
    const r = await backfill('pairs', '--batch-size', '11')
    expect(r.code).toBe(0)
    const rows = await pipe.db.sql<{ a: number; b: string; v: number }[]>`SELECT a, b, v FROM pairs`
    const got = docs('pairs')
    expect(got.size).toBe(300)
    for (const row of rows) expect(got.get(`${row.a}:${row.b.replace(':', '\\:')}`)).toEqual(row)
  })

  test('values decode exactly as the stream decodes them', async () => {
    expect((await backfill('typed')).code).toBe(0)
    const [[id, doc]] = [...docs('typed')]
    expect(id).toBe(9007199254740993n) // a uint id, exact beyond 2^53
    expect(doc).toEqual({
      n: '12345678901234567890.123456789',
      f8: 2.25,
      b: true,
      u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      d: '2024-02-29',
      ts: '2024-01-02T03:04:05.678Z',
      tstz: '2024-01-02T01:04:05.678Z',
      ia: [1, 2, 3],
      ta: ['x y', 'z'],
      by: '3q2+7w==',
      e: 'happy',
      c: 'ab',
      // as the type's output function prints it, which is what pgoutput sends the stream (`::text` adds /32)
      ip: '192.168.0.1',
      net: '10.0.0.0/8',
    })
  })

  test('rows with a NULL id are skipped with a warning; no unique index is warned about', async () => {
    const r = await backfill('loose', '--batch-size', '2')
    expect(r.code).toBe(0)
    expect([...docs('loose').keys()].sort()).toEqual(['a', 'b', 'c'])
    expect(r.out).toContain('1 row with a NULL id skipped')
  })

  test('a transform shapes the documents; a row it rejects goes to the dead-letter queue', async () => {
    const r = await backfill('named', '--batch-size', '8')
    expect(r.code).toBe(0)
    expect(r.out).toContain('1 dead-lettered')
    const got = docs('named')
    expect(got.size).toBe(29)
    expect(got.get('doc-3')).toEqual({ upper: 'N3' })
    const dlq = await pipe.db.sql`SELECT doc_id, error FROM __puffgres_dlq WHERE mapping = 'named'`
    expect(dlq.length).toBe(1)
    expect(dlq[0].doc_id).toBe('7')
    expect(dlq[0].error).toContain('no boom allowed')
  })

  test('unfinished: reported with how to resume or restart; --resume, --restart, finished runs', async () => {
    // an interrupted backfill as a crash leaves it: status running, a checkpoint in the middle
    await pipe.db.sql`UPDATE __puffgres_backfill SET status = 'running', last_key = '["100"]', rows_done = 75,
      finished_at = NULL WHERE mapping = 'items'`
    const before = pipe.server.documents('items').length
    const r = await backfill('items')
    expect(r.code).toBe(1)
    expect(r.err).toContain('the backfill of mapping "items"')
    expect(r.err).toContain('is unfinished: 75 rows copied, up to id = (100)')
    expect(r.err).toContain('puffgres backfill items --resume')
    expect(r.err).toContain('puffgres backfill items --restart')
    expect(pipe.server.documents('items').length).toBe(before)

    const resumed = await backfill('items', '--resume', '--batch-size', '10')
    expect(resumed.code).toBe(0)
    expect(resumed.out).toContain('resuming the backfill of mapping "items" after id = (100) (75 rows already copied)')
    // rows after id 100 only: 150 members in all, 75 of them up to id 100
    expect(resumed.out).toContain('done: 75 rows this run (150 in all)')
    expect(await record('items')).toMatchObject({ status: 'done', rows: 150 })

    const again = await backfill('items', '--resume')
    expect(again.code).toBe(0)
    expect(again.out).toContain('nothing to resume')

    const over = await backfill('items')
    expect(over.code).toBe(0)
    expect(over.out).toContain('finished before')
    expect(over.out).toContain('starting over')
    expect(over.out).toContain('done: 150 rows')

    await pipe.db.sql`UPDATE __puffgres_backfill SET status = 'running' WHERE mapping = 'items'`
    const restart = await backfill('items', '--restart')
    expect(restart.code).toBe(0)
    expect(restart.out).toContain('discarding the unfinished backfill')
    expect(restart.out).toContain('done: 150 rows,')
    expect(docs('items').size).toBe(150)
  })

  test('a second backfill of the same mapping is refused while one runs', async () => {
    const conn = await pipe.db.sql.reserve()
    try {
      await conn`SELECT pg_advisory_lock(${0x70756666}, hashtext('pairs'))`
      const r = await backfill('pairs')
      expect(r.code).toBe(1)
      expect(r.err).toMatch(/another backfill of mapping "pairs" is running \(PostgreSQL backend pid \d+\)/)
    } finally {
      await conn`SELECT pg_advisory_unlock_all()`
      conn.release()
    }
  })

  test('--discard reads and transforms every member row and writes nothing', async () => {
    const writes = pipe.server.stats().writes
    const before = docs('items')
    const r = await backfill('items', '--discard', '--batch-size', '20')
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(r.out).toContain('done: 150 rows')
    expect(await record('items')).toMatchObject({ status: 'done', rows: 150 })
    expect(pipe.server.stats().writes).toBe(writes)
    expect(docs('items')).toEqual(before)
  })

  test('bad input: one-line errors', async () => {
    const unknown = await backfill('nope')
    expect(unknown.code).toBe(1)
    expect(unknown.err).toBe('error: no mapping named "nope" (mappings: items, loose, named, pairs, typed)')
    const both = await backfill('items', '--resume', '--restart')
    expect(both.err).toBe('error: --resume and --restart exclude each other')
    expect((await backfill('items', '--batch-size', '0')).err).toBe(
      'error: --batch-size: expected a positive whole number, got "0"',
    )
    expect((await backfill()).err).toContain('which mapping?')
  })
})

describe('backfill SQL and progress', () => {
  test('keys and membership columns are qualified; composite keys compare as rows', () => {
    const q = renderSql('"public"."t"', ['a', 'b', 'x'], {
      idColumns: ['a', 'b'],
      membership: parseMembership("x = 'y'"),
    }, ['integer', 'text'])
    expect(copyPageSql({ ...q, keyTypes: ['integer', 'text'] }, ['7', "o'k"], 100)).toBe(
      'COPY (SELECT __puffgres_t."a", __puffgres_t."b", __puffgres_t."x" FROM "public"."t" AS __puffgres_t ' +
        `WHERE __puffgres_t."a" IS NOT NULL AND __puffgres_t."b" IS NOT NULL AND (__puffgres_t."x" = 'y') ` +
        `AND (__puffgres_t."a", __puffgres_t."b") > ('7'::integer, 'o''k'::text) ORDER BY __puffgres_t."a", ` +
        '__puffgres_t."b" LIMIT 100) TO STDOUT',
    )
  })

  test('progress bar and durations', () => {
    expect(formatBar(412_000, 1_000_000, 82_311, 10)).toBe(
      '[████░░░░░░]  41%  412,000/1,000,000 rows  82,311 rows/s  ETA 7s',
    )
    expect(formatBar(1200, undefined, 300)).toBe('1,200 rows  300 rows/s')
    expect(formatBar(1200, 1000, 300, 4)).toBe('[████] 100%  1,200/1,000 rows  300 rows/s')
    expect(formatDuration(187)).toBe('3m07s')
    expect(formatDuration(7500)).toBe('2h05m')
  })
})
