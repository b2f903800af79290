// The deliberate schema of a mapping (issue 12): types come from the PostgreSQL column types, backfill and stream
// write identical documents, big integers and microseconds stay exact, and schema changes while `run` streams keep
// the namespace flowing. Against the local server, which applies turbopuffer's write rules.
import { beforeAll, describe, expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

/** the documents `backfill bf` wrote, before the stream touched them */
let backfilled: Map<unknown, Record<string, unknown>>
let dryRun: string

const BIG_TEXT = 'x'.repeat(100_000)
const JSON_SHAPES = [
  '{"a": {"b": [1, "two", null]}}',
  '[]',
  '[1, "two", 3.5]',
  '9007199254740993',
  '"str"',
  'true',
  'null',
  '{"big": 9007199254740993}',
]

const pipe = usePipeline({
  name: 'schema',
  sql: `
    CREATE EXTENSION citext;
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN tags AS text[];
    CREATE DOMAIN posint AS int CHECK (VALUE > 0);
    CREATE TABLE alltypes (
      id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, n numeric, r real, dp double precision, b boolean,
      t text, vc varchar(20), vu varchar, c char(5), nm name, ci citext, u uuid, d date, ts timestamp,
      tstz timestamptz, tm time, iv interval, mo money, ip inet, j json, jb jsonb, ia int[], ta text[], by bytea,
      e mood, tg tags, pi posint, jba jsonb[]);
    INSERT INTO alltypes VALUES (1, 1, 2, 9007199254740993, 12.50, 1.5, 2.25, true, 'text', 'vc', 'unbounded',
      'ab', 'nm', 'CiText', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '2024-01-02 03:04:05.678901',
      '2024-01-02 03:04:05.678901+02', '12:34:56', '1 day 02:00:00', 12.5, '192.168.0.1',
      '{"a": [1, 2], "n": 9007199254740993}', '{"b": null}', '{1,NULL,3}', '{"x y", "z"}', '\\xdeadbeef', 'happy',
      '{x,y}', 7, ARRAY['{"k": 1}'::jsonb, '[2]'::jsonb, '{"n": 9007199254740993}'::jsonb, NULL]);
    INSERT INTO alltypes (id) VALUES (2);
    INSERT INTO alltypes (id, t, vu) VALUES (3, '${BIG_TEXT}', '${BIG_TEXT}');
    INSERT INTO alltypes (id, jb) SELECT 10 + i, (ARRAY['${JSON_SHAPES.join("','")}'])[i + 1]::jsonb
      FROM generate_series(0, ${JSON_SHAPES.length - 1}) i;
    CREATE TABLE bigids (id bigint PRIMARY KEY, v int);
    INSERT INTO bigids VALUES (0, 1), (9007199254740993, 1), (9223372036854775807, 1), (-5, 1);
    CREATE TABLE tsk (at timestamptz PRIMARY KEY, v int);
    INSERT INTO tsk VALUES ('2024-01-01 00:00:00.0001+00', 1);
    CREATE TABLE alt (id int PRIMARY KEY, qty int, name text, extra text);
  `,
  migrations: {
    '001_bf.toml': migration({ name: 'bf', table: 'alltypes' }),
    '002_st.toml': migration({ name: 'st', table: 'alltypes' }),
    '003_big.toml': migration({ name: 'big', table: 'bigids' }),
    '004_tsk.toml': migration({ name: 'tsk', table: 'tsk', id: 'at' }),
    '005_alt.toml': migration({ name: 'alt', table: 'alt' }),
    '007_bigs.toml': migration({ name: 'bigs', table: 'bigids' }) + 'id_type = "string"\n',
    '006_ovr.toml': migration({ name: 'ovr', table: 'alltypes', columns: ['n', 't', 'vc'] }) +
      '\n[target.schema]\nn = "float"\nt = { type = "string", full_text_search = true }\n',
  },
  migrate: false, // a dry run first
})

beforeAll(async () => {
  const dry = await pipe.cli('migrate', '--dry-run')
  expect(dry.code).toBe(0)
  dryRun = dry.out
  expect((await pipe.cli('migrate')).code).toBe(0)
  for (const m of ['bf', 'big', 'bigs', 'tsk', 'ovr']) {
    const r = await pipe.cli('backfill', m)
    expect([m, r.code, r.err]).toEqual([m, 0, expect.any(String)])
  }
  backfilled = structuredClone(pipe.docs('bf'))
  await pipe.startStream()
}, 240_000)

const { docs, deadLetters } = pipe

async function namespaceSchema(ns: string): Promise<Record<string, { type: string; filterable?: boolean }>> {
  const res = await fetch(`${pipe.server.url}/v1/namespaces/${ns}/schema`, {
    headers: { authorization: 'Bearer test-key' },
  })
  expect(res.status).toBe(200)
  return await res.json()
}

describe('a schema from the column types', () => {
  test('every type: the streamed documents are the backfilled ones, with no dead letter', async () => {
    const ids = [1, 2, 3, ...JSON_SHAPES.map((_, i) => 10 + i)]
    expect([...backfilled.keys()].sort((a, b) => Number(a) - Number(b))).toEqual(ids)
    // an update of every row streams each of them (the 100 KB values are TOASTed: re-read by key)
    await pipe.db.sql`UPDATE alltypes SET id = id`
    await waitFor('every row streamed', () => docs('st').size === ids.length)
    expect(docs('st')).toEqual(backfilled)
    expect(await deadLetters('bf')).toEqual([])
    expect(await deadLetters('st')).toEqual([])

    const one = backfilled.get(1)!
    expect(one).toEqual({
      i2: 1,
      i4: 2,
      i8: 9007199254740993n,
      n: '12.50',
      r: 1.5,
      dp: 2.25,
      b: true,
      t: 'text',
      vc: 'vc',
      vu: 'unbounded',
      c: 'ab',
      nm: 'nm',
      ci: 'CiText',
      u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      d: '2024-02-29',
      ts: '2024-01-02T03:04:05.678Z',
      tstz: '2024-01-02T01:04:05.678Z',
      tm: '12:34:56',
      iv: '1 day 02:00:00',
      mo: '$12.50',
      ip: '192.168.0.1',
      j: '{"a": [1, 2], "n": 9007199254740993}',
      jb: '{"b": null}',
      ia: [1, 3],
      ta: ['x y', 'z'],
      by: '3q2+7w==',
      e: 'happy',
      tg: ['x', 'y'], // a domain over text[] is its base type on both paths
      pi: 7, // a domain over int too
      jba: '[{"k": 1},[2],{"n": 9007199254740993},null]', // arrays of json: JSON text of the elements' own, exact
    })
    expect(backfilled.get(3)!.t).toBe(BIG_TEXT)
    expect(backfilled.get(3)!.vu).toBe(BIG_TEXT)

    const schema = await namespaceSchema('st')
    expect(schema.t).toMatchObject({ type: 'string', filterable: false })
    expect(schema.vu).toMatchObject({ type: 'string', filterable: false })
    expect(schema.jb).toMatchObject({ type: 'string', filterable: false })
    expect(schema.ci).toMatchObject({ type: 'string', filterable: false })
    expect(schema.vc).toMatchObject({ type: 'string', filterable: true }) // varchar(20): short enough to filter on
    expect(schema.e).toMatchObject({ type: 'string', filterable: true })
    expect(schema.tg).toMatchObject({ type: '[]string' })
    expect(schema.pi).toMatchObject({ type: 'int' })
    expect(schema.i8).toMatchObject({ type: 'int' })
  })

  test('jsonb values of every shape in one column: one string attribute, big integers exact', async () => {
    const got = JSON_SHAPES.map((_, i) => backfilled.get(10 + i)!.jb)
    // PostgreSQL's jsonb text (its own spacing, in which JSON_SHAPES are written), never a re-encoding through JS
    // numbers
    expect(got).toEqual(JSON_SHAPES)
    expect(JSON_SHAPES.map((_, i) => docs('st').get(10 + i)!.jb)).toEqual(got)
  })

  test('[target.schema] overrides: the shorthand type converts exactly, options pass through', async () => {
    const ovr = docs('ovr')
    expect(ovr.get(1)).toEqual({ n: 12.5, t: 'text', vc: 'vc' })
    expect(ovr.get(3)?.t).toBe(BIG_TEXT) // full-text search: not filterable, so 100 KB is fine
    const schema = await namespaceSchema('ovr')
    expect(schema.n).toMatchObject({ type: 'float' })
    expect(dryRun).toContain('n numeric → float [target.schema]')
    expect(dryRun).toContain('t text → string (filterable: false)')
    expect(dryRun).toContain('vc varchar(20) → string')
    expect(dryRun).toContain('jb jsonb → string (filterable: false), JSON text')
    // once applied too: the schema is what the namespace is declared with, whether or not there is a plan
    const again = await pipe.cli('migrate', '--dry-run')
    expect(again.out).toContain('Nothing to migrate')
    expect(again.out).toContain('n numeric → float [target.schema]')
    const report = await pipe.status()
    const st = report.mappings.find((m: { mapping: string }) => m.mapping === 'st')
    expect(st.schema.attributes.tg).toEqual({ type: '[]string', filterable: false, pg_type: '_text' })
    expect(st.schema.attributes.vc).toEqual({ type: 'string', pg_type: 'varchar(20)' })
    const text = await pipe.cli('status')
    expect(text.out).toContain('schema of ovr (mapping ovr):')
  })

  test('bigint ids: 0, 2^53+1 and 2^63−1 are exact uint ids; a negative one is a dead letter naming the fix', async () => {
    expect([...docs('big').keys()]).toEqual([0, 9007199254740993n, 9223372036854775807n])
    const [dl] = await deadLetters('big')
    expect(dl.doc_id).toBe('-5')
    expect(dl.error).toContain('id column "id" is -5')
    expect(dl.error).toContain('id_type = "string"')

    await pipe.db.sql`INSERT INTO bigids VALUES (-7, 1)`
    await pipe.db.sql`UPDATE bigids SET v = 2 WHERE id = 9007199254740993`
    await pipe.db.sql`DELETE FROM bigids WHERE id = 9223372036854775807`
    await waitFor('big ids streamed', () => docs('big').get(9007199254740993n)?.v === 2 && docs('big').size === 2)
    await waitFor('-7 dead-lettered', async () => (await deadLetters('big')).length === 2)
    expect((await deadLetters('big'))[1].error).toContain('is -7')
  })

  test('id_type = "string": every id is its text, negative ones included', async () => {
    // backfilled, then streamed with the test above (-7 inserted, 2^63−1 deleted)
    expect([...docs('bigs').keys()].sort()).toEqual(['-5', '-7', '0', '9007199254740993'])
    expect(await deadLetters('bigs')).toEqual([])
  })

  test('a timestamptz key keeps its microseconds: two rows 100 µs apart are two documents', async () => {
    expect([...docs('tsk').keys()]).toEqual(['2024-01-01T00:00:00.000100Z'])
    await pipe.db.sql`INSERT INTO tsk VALUES ('2024-01-01 00:00:00.0002+00', 2)`
    await waitFor('two documents', () => docs('tsk').size === 2)
    expect(docs('tsk').get('2024-01-01T00:00:00.000200Z')).toEqual({ at: '2024-01-01T00:00:00.000Z', v: 2 })
    await pipe.db.sql`DELETE FROM tsk WHERE v = 1`
    await waitFor('one deleted', () => docs('tsk').size === 1)
    expect(docs('tsk').has('2024-01-01T00:00:00.000200Z')).toBe(true)
  })
})

describe('verify', () => {
  test('finds the namespaces in sync: json text, overrides, big integers, microsecond keys', async () => {
    for (const m of ['st', 'ovr', 'big', 'tsk']) {
      const r = await pipe.cli('verify', m)
      expect([m, r.code, r.out]).toEqual([m, 0, expect.stringContaining('in sync')])
    }
    const sample = await pipe.cli('verify', 'big', '--sample', '5', '--json')
    expect([sample.code, JSON.parse(sample.out).mismatched.items]).toEqual([0, []])
  })
})

describe('schema changes while run streams', () => {
  test('ADD, DROP, RENAME and TYPE of a column: the other attributes keep flowing', async () => {
    await pipe.db.sql`INSERT INTO alt VALUES (1, 5, 'a', 'x'), (2, 6, 'b', 'y')`
    await waitFor('rows', () => docs('alt').size === 2)
    expect(docs('alt').get(1)).toEqual({ qty: 5, name: 'a', extra: 'x' })

    await pipe.db.sql`ALTER TABLE alt ADD COLUMN note text`
    await pipe.db.sql`UPDATE alt SET note = 'n1' WHERE id = 1`
    await waitFor('added', () => docs('alt').get(1)?.note === 'n1')

    await pipe.db.sql`ALTER TABLE alt DROP COLUMN extra`
    await pipe.db.sql`UPDATE alt SET name = 'b2' WHERE id = 2`
    await waitFor('dropped', () => docs('alt').get(2)?.name === 'b2')
    expect(docs('alt').get(2)).toEqual({ qty: 6, name: 'b2' }) // extra is gone, note is NULL

    await pipe.db.sql`ALTER TABLE alt RENAME COLUMN name TO title`
    await pipe.db.sql`UPDATE alt SET title = 'a2' WHERE id = 1`
    await waitFor('renamed', () => docs('alt').get(1)?.title === 'a2')

    await pipe.db.sql`ALTER TABLE alt ALTER COLUMN qty TYPE text`
    await pipe.db.sql`UPDATE alt SET qty = '12' WHERE id = 1` // converted exactly to the namespace's int
    await pipe.db.sql`UPDATE alt SET qty = 'abc' WHERE id = 2` // cannot be: a dead letter
    await pipe.db.sql`INSERT INTO alt VALUES (3, '7', 'c', 'n3')`
    await waitFor('after TYPE', () => docs('alt').get(1)?.qty === 12 && docs('alt').get(3)?.qty === 7)
    await pipe.db.sql`UPDATE alt SET title = 'a3' WHERE id = 1` // a later write that touches other columns
    await waitFor('still flowing', () => docs('alt').get(1)?.title === 'a3')
    expect(docs('alt').get(1)).toEqual({ qty: 12, title: 'a3', note: 'n1' })
    const dead = await waitFor('dead letter', async () => (await deadLetters('alt'))[0])
    expect(dead.doc_id).toBe('2')
    expect(dead.error).toContain('column "qty"')
    expect(dead.error).toContain('the namespace\'s attribute "qty" is int')
    expect(dead.error).toContain('new mapping version')
    expect(pipe.stream.flushes.reduce((n, f) => n + f.typeConflicts, 0)).toBe(1)
    expect((await namespaceSchema('alt')).qty).toMatchObject({ type: 'int' })
  })
})
