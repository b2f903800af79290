import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import postgres from 'postgres'
import { decodeTuple, decodeValue, parseArray, TEXT_FORMAT_SETTINGS, tpufType } from '../src/postgres/values.ts'
import { NULL_VALUE, UNCHANGED_VALUE } from '../src/postgres/pgoutput.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'

// [column type, SQL literal, expected JS value, expected turbopuffer attribute type]
const CASES: [string, string, unknown, string | undefined][] = [
  ['int2', '-32768', -32768, 'int'],
  ['int4', '2147483647', 2147483647, 'int'],
  ['int8', '9007199254740991', 9007199254740991, 'int'],
  ['int8', '-9007199254740991', -9007199254740991, 'int'],
  ['int8', '9007199254740993', 9007199254740993n, 'int'],
  ['int8', '-9223372036854775808', -9223372036854775808n, 'int'],
  ['numeric', '12345678901234567890.123456789', '12345678901234567890.123456789', 'string'],
  ['numeric(10,2)', '5.00', '5.00', 'string'],
  ['numeric', "'NaN'", 'NaN', 'string'],
  ['float4', '1.5', 1.5, 'float'],
  ['float8', '0.1', 0.1, 'float'],
  ['float8', '1e300', 1e300, 'float'],
  ['float8', "'NaN'", null, 'float'],
  ['float8', "'Infinity'", null, 'float'],
  ['float4', "'-Infinity'", null, 'float'],
  ['bool', 'true', true, 'bool'],
  ['bool', 'false', false, 'bool'],
  ['text', `E'h\\u00e9llo "x" \\\\ \\U0001F600 {a,b}'`, 'héllo "x" \\ 😀 {a,b}', 'string'],
  ['varchar(10)', "'abc'", 'abc', 'string'],
  ['char(5)', "'ab'", 'ab', 'string'],
  ['char(5)[]', '\'{ab,"c "}\'', ['ab', 'c'], '[]string'],
  ['name', "'a_name'", 'a_name', 'string'],
  ['citext', "'MiXeD'", 'MiXeD', 'string'],
  ['uuid', "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'uuid'],
  ['date', "'2024-02-29'", '2024-02-29', 'string'],
  ['timestamp', "'2024-01-02 03:04:05.123456'", '2024-01-02T03:04:05.123Z', 'datetime'],
  ['timestamp', "'2024-01-02 03:04:05'", '2024-01-02T03:04:05.000Z', 'datetime'],
  ['timestamp', "'0099-06-01 00:00:00'", '0099-06-01T00:00:00.000Z', 'datetime'],
  ['timestamp', "'0044-03-15 12:00:00 BC'", '-000043-03-15T12:00:00.000Z', 'datetime'],
  ['timestamp', "'infinity'", null, 'datetime'],
  ['timestamptz', "'2024-01-02 03:04:05.5+02'", '2024-01-02T01:04:05.500Z', 'datetime'],
  ['timestamptz', "'2024-07-01 00:00:00-09:30'", '2024-07-01T09:30:00.000Z', 'datetime'],
  ['timestamptz', "'-infinity'", null, 'datetime'],
  ['time', "'13:45:00.5'", '13:45:00.5', 'string'],
  ['interval', "'1 day 2 hours'", '1 day 02:00:00', 'string'],
  ['json', `'{"a": [1, 2, {"b": null}], "c": "x"}'`, { a: [1, 2, { b: null }], c: 'x' }, undefined],
  ['jsonb', `'{"n": 1.5, "s": "é", "t": true}'`, { n: 1.5, s: 'é', t: true }, undefined],
  ['bytea', "'\\x00ff10'::bytea", 'AP8Q', 'string'],
  ['bytea', "''::bytea", '', 'string'],
  ['int4[]', "'{1,NULL,3}'", [1, null, 3], '[]int'],
  ['int8[]', "'{1,9007199254740993}'", [1, 9007199254740993n], '[]int'],
  ['int4[]', "'{}'", [], '[]int'],
  ['int4[]', "'[0:1]={7,8}'", [7, 8], '[]int'],
  ['int4[][]', "'{{1,2},{3,4}}'", [[1, 2], [3, 4]], '[]int'],
  [
    'text[]',
    `ARRAY['a,b', 'c"d', NULL, 'NULL', '', ' sp ', 'back\\slash', '{x}']`,
    ['a,b', 'c"d', null, 'NULL', '', ' sp ', 'back\\slash', '{x}'],
    '[]string',
  ],
  ['varchar[]', "'{x,y}'", ['x', 'y'], '[]string'],
  ['uuid[]', "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'", ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'], '[]uuid'],
  ['float8[]', "'{1.5,NaN,-0.25}'", [1.5, null, -0.25], '[]float'],
  ['bool[]', "'{t,f,NULL}'", [true, false, null], '[]bool'],
  ['numeric[]', "'{1.10,2}'", ['1.10', '2'], '[]string'],
  ['timestamptz[]', '\'{"2024-01-02 03:04:05+00"}\'', ['2024-01-02T03:04:05.000Z'], '[]datetime'],
  ['jsonb[]', `ARRAY['{"a":1}'::jsonb, '[2]']`, [{ a: 1 }, [2]], undefined],
  ['bytea[]', "ARRAY['\\x01'::bytea]", ['AQ=='], '[]string'],
  ['mood', "'happy'", 'happy', 'string'],
  ['mood[]', '\'{happy,"so so"}\'', ['happy', 'so so'], '[]string'],
  ['inet', "'10.0.0.1/8'", '10.0.0.1/8', 'string'],
]

let db: TestDatabase
let sql: postgres.Sql

beforeAll(async () => {
  db = await testDatabase('values')
  sql = postgres(db.url, { max: 1, onnotice: () => {}, connection: { ...TEXT_FORMAT_SETTINGS } })
  await sql.unsafe(`CREATE EXTENSION citext; CREATE TYPE mood AS ENUM ('happy', 'sad', 'so so')`)
})

afterAll(async () => {
  await sql?.end()
  await db?.drop()
})

describe('decodeValue of PostgreSQL text output', () => {
  test('every type, read back from a real table, decodes to the documented value', async () => {
    const cols = CASES.map(([type], i) => `c${i} ${type}`).join(', ')
    await sql.unsafe(`CREATE TABLE vals (id int PRIMARY KEY, ${cols})`)
    await sql.unsafe(`INSERT INTO vals VALUES (1, ${CASES.map(([, lit]) => lit).join(', ')})`)
    await sql.unsafe(`INSERT INTO vals (id) VALUES (2)`)
    const select = CASES.map((_, i) => `c${i}::text AS c${i}`).join(', ')
    const [row] = await sql.unsafe(`SELECT ${select} FROM vals WHERE id = 1`)
    const [nulls] = await sql.unsafe(`SELECT ${select} FROM vals WHERE id = 2`)
    const types = await sql`
      SELECT a.attname, a.atttypid::int AS oid, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = 'vals'::regclass AND a.attnum > 0`
    const byName = new Map(types.map((t) => [t.attname, t]))
    CASES.forEach(([type, lit, expected, tpuf], i) => {
      const { oid, typname } = byName.get(`c${i}`)!
      const label = `${type} ${lit}`
      expect([label, decodeValue(row[`c${i}`], oid, typname)]).toEqual([label, expected])
      expect([label, tpufType(oid, typname)]).toEqual([label, tpuf])
      expect([label, decodeValue(nulls[`c${i}`], oid, typname)]).toEqual([label, null])
    })
  })

  test('timestamptz printed in other time zones (with second offsets) decodes to the same instant', async () => {
    const zones = ['Asia/Kolkata', 'America/St_Johns', 'Europe/Amsterdam', 'UTC']
    for (const zone of zones) {
      await sql.unsafe(`SET TimeZone = '${zone}'`)
      const [r] = await sql.unsafe(
        `SELECT '2024-03-10 12:34:56.789+00'::timestamptz::text AS a, '1850-01-01 00:00:00+00'::timestamptz::text AS b`,
      )
      expect([zone, decodeValue(r.a, 1184)]).toEqual([zone, '2024-03-10T12:34:56.789Z'])
      expect([zone, decodeValue(r.b, 1184)]).toEqual([zone, '1850-01-01T00:00:00.000Z'])
    }
    await sql.unsafe(`SET TimeZone = 'UTC'`)
  })

  test('5,000 random timestamps and timestamptz (UTC) decode to what PostgreSQL itself prints as ISO 8601', async () => {
    // years 1-9999, any day, microseconds (printed with 0-6 fraction digits): the fast path and the general one
    const rows = await sql.unsafe<{ ts: string; tstz: string; iso: string }[]>(`
      SELECT t::text AS ts, t::timestamptz::text AS tstz,
             to_char(date_trunc('milliseconds', t), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS iso
      FROM (SELECT '0001-01-01'::timestamp + random() * ('9999-12-31'::timestamp - '0001-01-01'::timestamp)
                   + (g % 7) * interval '1 microsecond' AS t
            FROM generate_series(1, 5000) g) x`)
    for (const r of rows) {
      // date_trunc rounds toward the earlier millisecond, as decoding does (it keeps the first 3 fraction digits)
      expect([r.ts, decodeValue(r.ts, 1114)]).toEqual([r.ts, r.iso])
      expect([r.tstz, decodeValue(r.tstz, 1184)]).toEqual([r.tstz, r.iso])
    }
  })

  test('text[] and int[] with NULLs, empty strings, spaces and quotes decode as PostgreSQL reads them back', async () => {
    const rows = await sql.unsafe<{ a: string; j: string }[]>(`
      SELECT a::text AS a, array_to_json(a)::text AS j FROM (VALUES
        (ARRAY['t1', 'x']), (ARRAY['a', NULL, 'b']), (ARRAY[]::text[]), (ARRAY['', ' s ', 'NULL', 'null', 'q"u']),
        (ARRAY['a,b', '{c}', 'back\\slash']),
        -- Unicode spaces are not array whitespace: PostgreSQL leaves them unquoted, and they are kept
        (ARRAY[chr(160) || 'x', 'y']), (ARRAY[chr(160) || 'x', 'a b', chr(8195) || 'NULL', chr(12288)])) v(a)`)
    for (const r of rows) expect([r.a, decodeValue(r.a, 1009)]).toEqual([r.a, JSON.parse(r.j) ?? []])
    const [n] = await sql.unsafe<{ a: string }[]>(`SELECT ARRAY[1, NULL, -3]::int[]::text AS a`)
    expect(decodeValue(n.a, 1007)).toEqual([1, null, -3])
  })

  test('a DateStyle it cannot read is a clear error, not a wrong value', () => {
    expect(() => decodeValue('01/02/2024 03:04:05', 1114)).toThrow(/cannot read timestamp .*DateStyle ISO/)
  })
})

describe('non-builtin types named by a Type message', () => {
  test('pgvector text decodes to number[] by type name, whatever its oid', () => {
    expect(decodeValue('[1,2.5,-3e-05]', 16390, 'vector')).toEqual([1, 2.5, -3e-05])
    expect(decodeValue('[0.5]', 99999, 'halfvec')).toEqual([0.5])
    expect(tpufType(16390, 'vector')).toBeUndefined()
    expect(decodeValue('[1,2]', 16390)).toBe('[1,2]')
  })
})

describe('parseArray', () => {
  test('quotes, escapes, NULL and whitespace', () => {
    expect(parseArray('{"a\\\\b","\\"",NULL,null,"null",  x y  }', (s) => s)).toEqual([
      'a\\b',
      '"',
      null,
      null,
      'null',
      'x y',
    ])
  })
  test('malformed literals are errors', () => {
    expect(() => parseArray('{1,2', (s) => s)).toThrow(/invalid array literal/)
    expect(() => parseArray('{"a}', (s) => s)).toThrow(/invalid array literal/)
    expect(() => parseArray('{1}x', (s) => s)).toThrow(/invalid array literal/)
  })
})

describe('decodeTuple', () => {
  test('decodes by column type and leaves TOAST-unchanged columns out, listing them', () => {
    const columns = [
      { name: 'id', typeOid: 20, typmod: -1, isKey: true },
      { name: 'body', typeOid: 25, typmod: -1, isKey: false },
      { name: 'tags', typeOid: 1009, typmod: -1, isKey: false },
      { name: 'gone', typeOid: 25, typmod: -1, isKey: false },
    ]
    const out = decodeTuple(columns, [
      { kind: 'text', value: '42' },
      UNCHANGED_VALUE,
      { kind: 'text', value: '{a}' },
      NULL_VALUE,
    ])
    expect(out).toEqual({ row: { id: 42, tags: ['a'], gone: null }, unchanged: ['body'] })
  })
  test('a bad value names its column', () => {
    const columns = [{ name: 'doc', typeOid: 3802, typmod: -1, isKey: false }]
    expect(() => decodeTuple(columns, [{ kind: 'text', value: '{oops' }])).toThrow(/column "doc"/)
  })
})
