import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type postgres from 'postgres'
import {
  compileMembership,
  evaluate,
  isMember,
  MembershipError,
  parseMembership,
  predicateColumns,
  toSql,
} from '../src/membership/mod.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'

const sqlOf = (text: string) => toSql(parseMembership(text))
const ev = (text: string, row: Record<string, unknown>) => evaluate(parseMembership(text), row)

function parseError(text: string): string {
  try {
    parseMembership(text)
  } catch (e) {
    expect(e).toBeInstanceOf(MembershipError)
    return (e as Error).message
  }
  throw new Error(`parsed without error: ${text}`)
}

describe('parsing', () => {
  test('precedence: NOT over AND over OR, comparisons and IS inside', () => {
    expect(sqlOf('a OR b AND NOT c')).toBe('("a" OR ("b" AND (NOT "c")))')
    expect(sqlOf('(a OR b) AND c')).toBe('(("a" OR "b") AND "c")')
    expect(sqlOf('NOT x = 1 AND y IS NULL')).toBe('((NOT ("x" = 1)) AND ("y" IS NULL))')
    expect(sqlOf('x = 1 IS NOT TRUE')).toBe('(("x" = 1) IS NOT TRUE)')
    expect(sqlOf('x BETWEEN 1 AND 5 AND y')).toBe('(("x" BETWEEN 1 AND 5) AND "y")')
    expect(sqlOf('NOT NOT a')).toBe('(NOT (NOT "a"))')
  })

  test('identifiers fold to lower case unless double-quoted; keywords in any case', () => {
    expect(sqlOf('Status = \'x\' and "MixedCase" is not null')).toBe(
      '(("status" = \'x\') AND ("MixedCase" IS NOT NULL))',
    )
    expect(sqlOf('"a""b" <> 1')).toBe('("a""b" <> 1)')
    expect(sqlOf('ÉTÉ = 1')).toBe('("ÉtÉ" = 1)') // PostgreSQL folds ASCII letters only
    expect(sqlOf('x iS nOt DiStInCt FrOm y')).toBe('("x" IS NOT DISTINCT FROM "y")')
  })

  test('literals', () => {
    expect(sqlOf("s = 'it''s'")).toBe("(\"s\" = 'it''s')")
    expect(sqlOf('x != -1.50')).toBe('("x" <> (-1.50))')
    expect(sqlOf('x IN (.5, 1e3, +2, - 3, TRUE, false, NULL)')).toBe('("x" IN (.5, 1e3, 2, (-3), TRUE, FALSE, NULL))')
    expect(sqlOf('x NOT BETWEEN -1 AND 1')).toBe('("x" NOT BETWEEN (-1) AND 1)')
    expect(sqlOf("b IS UNKNOWN OR s = ''")).toBe('(("b" IS UNKNOWN) OR ("s" = \'\'))')
  })

  test('predicateColumns lists each column once', () => {
    const p = parseMembership('status = \'a\' AND (deleted_at IS NULL OR "Owner" IN (x, 1)) AND status <> y')
    expect(predicateColumns(p)).toEqual(['status', 'deleted_at', 'Owner', 'x', 'y'])
  })

  test('errors name the position and what was expected', () => {
    expect(parseError('status = ')).toBe('membership: expected a value after \'=\' at column 10: "status = "')
    expect(parseError("status = 'active")).toBe(
      'membership: unterminated string literal at column 10: "status = \'active"',
    )
    expect(parseError('')).toBe('membership: the predicate is empty')
    expect(parseError('a = 1 b')).toBe(
      'membership: expected AND, OR or the end of the predicate at column 7 but found "b": "a = 1 b"',
    )
    expect(parseError('(a = 1')).toContain("expected ')' (to close the '(' of column 1) at column 7")
    expect(parseError('a = 1)')).toContain("unbalanced ')'")
    expect(parseError('a IS 5')).toContain(
      "expected NULL, TRUE, FALSE, UNKNOWN or DISTINCT FROM after 'IS' at column 6",
    )
    expect(parseError('a NOT LIKE 1')).toContain("expected IN or BETWEEN after 'NOT' at column 7")
    expect(parseError('a IN 1, 2')).toContain("expected '(' after 'IN' at column 6")
    expect(parseError('a IN (1 2)')).toContain("expected ',' or ')' in the IN list at column 9")
    expect(parseError('a BETWEEN 1 OR 2')).toContain("expected AND after BETWEEN's lower bound at column 13")
    expect(parseError('a < b < c')).toContain('comparisons do not chain')
    expect(parseError('lower(a) = 1')).toContain('functions such as lower() are not supported')
    expect(parseError('t.a = 1')).toContain('qualified names')
    expect(parseError('a::int = 1')).toContain('casts (::) are not supported')
    expect(parseError('a = 1 ; drop table x')).toContain('unexpected character ";" at column 7')
    expect(parseError('a = AND')).toContain('expected a value after \'=\' at column 5 but found "AND"')
    expect(parseError('a = 1x')).toContain('invalid number "1x" at column 5')
    expect(parseError('a = - b')).toContain("expected a number after '-' at column 7")
    expect(parseError('"" = 1')).toContain('empty quoted identifier at column 1')
    expect(parseError('a IS DISTINCT b')).toContain("expected FROM after 'DISTINCT'")
    // one line each
    for (const bad of ['status = ', "x = 'a\nb", '(\n(a']) expect(parseError(bad)).not.toContain('\n')
  })
})

describe('three-valued logic', () => {
  const V = [true, false, null] as const
  test('AND, OR, NOT, IS [NOT] TRUE/FALSE/UNKNOWN over true/false/null', () => {
    const and = parseMembership('a AND b')
    const or = parseMembership('a OR b')
    const andNot = parseMembership('NOT (a AND NOT b)')
    for (const a of V) {
      for (const b of V) {
        const row = { a, b }
        const wantAnd = a === false || b === false ? false : a === null || b === null ? null : true
        const wantOr = a === true || b === true ? true : a === null || b === null ? null : false
        expect(evaluate(and, row)).toBe(wantAnd)
        expect(evaluate(or, row)).toBe(wantOr)
        const notB = b === null ? null : !b
        const inner = a === false || notB === false ? false : a === null || notB === null ? null : true
        expect(evaluate(andNot, row)).toBe(inner === null ? null : !inner)
      }
      expect(ev('NOT a', { a })).toBe(a === null ? null : !a)
      expect(ev('a IS TRUE', { a })).toBe(a === true)
      expect(ev('a IS NOT TRUE', { a })).toBe(a !== true)
      expect(ev('a IS FALSE', { a })).toBe(a === false)
      expect(ev('a IS NOT FALSE', { a })).toBe(a !== false)
      expect(ev('a IS UNKNOWN', { a })).toBe(a === null)
      expect(ev('a IS NOT NULL', { a })).toBe(a !== null)
    }
  })

  test('comparisons with NULL are null; IS [NOT] DISTINCT FROM is not', () => {
    expect(ev('x = 1', { x: null })).toBe(null)
    expect(ev('x <> NULL', { x: 1 })).toBe(null)
    expect(ev('x = y', { x: 1, y: null })).toBe(null)
    expect(ev('x IS DISTINCT FROM NULL', { x: 1 })).toBe(true)
    expect(ev('x IS DISTINCT FROM NULL', { x: null })).toBe(false)
    expect(ev('x IS NOT DISTINCT FROM y', { x: null, y: null })).toBe(true)
    expect(ev('x IS DISTINCT FROM 1', { x: 1 })).toBe(false)
    expect(ev('x IS DISTINCT FROM 2', { x: 1 })).toBe(true)
  })

  test('IN and NOT IN with NULLs in the list', () => {
    const cases: [string, unknown, boolean | null][] = [
      ['x IN (1, NULL)', 1, true],
      ['x IN (1, NULL)', 2, null],
      ['x IN (1, NULL)', null, null],
      ['x IN (1, 2)', 3, false],
      ['x NOT IN (1, NULL)', 1, false],
      ['x NOT IN (1, NULL)', 2, null],
      ['x NOT IN (1, NULL)', null, null],
      ['x NOT IN (1, 2)', 3, true],
      ['x NOT IN (1, 2)', 2, false],
      ['x IN (NULL)', 1, null],
    ]
    for (const [text, x, want] of cases) expect([text, x, ev(text, { x })]).toEqual([text, x, want])
  })

  test('BETWEEN is x >= a AND x <= b, with NULL bounds', () => {
    expect(ev('x BETWEEN 1 AND 3', { x: 1 })).toBe(true)
    expect(ev('x BETWEEN 1 AND 3', { x: 4 })).toBe(false)
    expect(ev('x BETWEEN 3 AND 1', { x: 2 })).toBe(false)
    expect(ev('x NOT BETWEEN 1 AND 3', { x: 4 })).toBe(true)
    expect(ev('x BETWEEN NULL AND 3', { x: 4 })).toBe(false)
    expect(ev('x BETWEEN NULL AND 3', { x: 2 })).toBe(null)
    expect(ev('x NOT BETWEEN NULL AND 3', { x: 4 })).toBe(true)
    expect(ev('x NOT BETWEEN 1 AND 3', { x: null })).toBe(null)
  })

  test('isMember is true only for true', () => {
    const p = parseMembership("status = 'active' AND deleted_at IS NULL")
    expect(isMember(p, { status: 'active', deleted_at: null })).toBe(true)
    expect(isMember(p, { status: 'gone', deleted_at: null })).toBe(false)
    expect(isMember(p, { status: null, deleted_at: null })).toBe(false)
    expect(isMember(p, { status: 'active', deleted_at: '2024-01-01' })).toBe(false)
  })
})

describe('comparing values', () => {
  test('numbers: exact decimals for numeric strings, big int8, integer literals', () => {
    expect(ev('price > 10', { price: '10.00' })).toBe(false)
    expect(ev('price = 10', { price: '10.00' })).toBe(true)
    expect(ev('price >= 10.000000000000000000001', { price: '10.00000000000000000000099' })).toBe(false)
    expect(ev('price < 1e3', { price: '999.9999999999999999999' })).toBe(true)
    expect(ev('price > -0.5', { price: '-0.25' })).toBe(true)
    expect(ev('price > 5', { price: 'NaN' })).toBe(true) // NaN sorts above every number in PostgreSQL
    expect(ev("price = 'NaN'", { price: 'NaN' })).toBe(true)
    expect(ev('big = 9007199254740993', { big: 9007199254740993n })).toBe(true)
    expect(ev('big > 9007199254740992', { big: 9007199254740993n })).toBe(true)
    expect(ev('big = 9007199254740992', { big: 9007199254740993n })).toBe(false)
    expect(ev('id = 5', { id: 5 })).toBe(true)
    expect(ev("id = '5'", { id: 5 })).toBe(true) // the unknown-typed literal takes the column's type
    expect(ev('n < 2.5', { n: 2 })).toBe(true)
    expect(ev('f = 0.1', { f: 0.1 })).toBe(true)
    expect(ev('f > 0.3', { f: 0.30000000000000004 })).toBe(true)
    expect(ev('a < b', { a: 2, b: '10' })).toBe(true)
  })

  test('text by code point (collation "C"), booleans false < true', () => {
    expect(ev("s < '\u{1F600}'", { s: '\uFB00' })).toBe(true) // UTF-16 order would say false
    expect(ev("s < 'a'", { s: 'Z' })).toBe(true)
    expect(ev("s < 'ab'", { s: 'a' })).toBe(true)
    expect(ev("s = 'O''Neil'", { s: "O'Neil" })).toBe(true)
    expect(ev('a < b', { a: false, b: true })).toBe(true)
    expect(ev("a = 'yes'", { a: true })).toBe(true)
    expect(ev("a = 'off'", { a: false })).toBe(true)
  })

  test('with column types: numeric vs string literal, dates, timestamps, uuid, float4', () => {
    const typed = (text: string, types: Record<string, number | string>, row: Record<string, unknown>) =>
      compileMembership(parseMembership(text), types)(row)
    // untyped, a numeric string against a string literal can only be text; typed, it is a number
    expect(ev("price = '10.0'", { price: '10.00' })).toBe(false)
    expect(typed("price = '10.0'", { price: 'numeric(10,2)' }, { price: '10.00' })).toBe(true)
    expect(typed("d = '2024-1-1'", { d: 'date' }, { d: '2024-01-01' })).toBe(true)
    expect(typed("d < 'infinity'", { d: 1082 }, { d: '2024-01-01' })).toBe(true)
    expect(typed("d > '0044-03-15 BC'", { d: 1082 }, { d: '0001-01-01' })).toBe(true)
    const tz = { ts: 'timestamptz' }
    expect(typed("ts = '2024-01-01 05:00:00+05'", tz, { ts: '2024-01-01T00:00:00.000Z' })).toBe(true)
    expect(typed("ts > '2023-12-31 23:59:59.9995'", tz, { ts: '2023-12-31T23:59:59.999Z' })).toBe(false)
    expect(typed("ts < '-infinity'", tz, { ts: '-000043-03-15T12:00:00.000Z' })).toBe(false)
    // timestamp without time zone ignores an offset written in the literal, as PostgreSQL does
    expect(typed("t = '2024-01-01 10:00+05'", { t: 1114 }, { t: '2024-01-01T10:00:00.000Z' })).toBe(true)
    expect(
      typed("u = '{A0EEBC99-9C0B4EF8-BB6D-6BB9BD380A11}'", { u: 'uuid' }, {
        u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      }),
    ).toBe(true)
    // float4 1.1 widened to float8 differs from the float8 literal 1.1; a string literal becomes float4 first
    expect(typed('r = 1.1', { r: 'real' }, { r: 1.1 })).toBe(false)
    expect(typed("r = '1.1'", { r: 'real' }, { r: 1.1 })).toBe(true)
    // int against a decimal literal is exact; float8 against it rounds the literal to a double
    expect(typed('x >= 2.00000000000000000001', { x: 'int4' }, { x: 2 })).toBe(false)
    expect(typed('x >= 2.00000000000000000001', { x: 'float8' }, { x: 2 })).toBe(true)
  })

  test('type errors PostgreSQL would raise are MembershipErrors at compile time when types are known', () => {
    const compileError = (text: string, types: Record<string, number | string>) => {
      try {
        compileMembership(parseMembership(text), types)
      } catch (e) {
        expect(e).toBeInstanceOf(MembershipError)
        return (e as Error).message
      }
      throw new Error(`compiled without error: ${text}`)
    }
    expect(compileError('name = 5', { name: 'text' })).toBe(
      'membership: cannot compare column "name" (text) with 5',
    )
    expect(compileError("id = '5.5'", { id: 'int8' })).toBe(
      'membership: \'5.5\' is not a valid integer (compared with column "id" (int8))',
    )
    expect(compileError("flag = 'maybe'", { flag: 'bool' })).toContain("'maybe' is not a valid boolean")
    expect(compileError("d > 'now'", { d: 'date' })).toContain("'now' is not a valid date")
    expect(compileError('archived', { archived: 'int4' })).toContain('column "archived" has type int4, not boolean')
    expect(compileError("doc = 'x'", { doc: 'jsonb' })).toContain('has type jsonb, which membership comparisons')
    expect(compileError('a = b', { a: 'date', b: 'text' })).toContain('cannot compare column "a" (date)')
    // types puffgres does not know (enums): equality only, since their order is not their text's order
    expect(compileError("mood < 'ok'", { mood: 'mood' })).toContain('can only test with =, <>, IN or IS DISTINCT FROM')
    const mood = compileMembership(parseMembership("mood IN ('ok', 'happy') AND mood <> 'sad'"), { mood: 'mood' })
    expect(mood({ mood: 'ok' })).toBe(true)
    expect(mood({ mood: 'sad' })).toBe(false)
    expect(compileError("tags = '{a}'", { tags: '_text' })).toContain('has type _text, which membership comparisons')
    expect(compileError("tags = '{a}'", { tags: 1009 })).toContain('has type oid 1009')
    // char(n) ignores its padding
    expect(compileMembership(parseMembership("c = 'ab'"), { c: 'char(4)' })({ c: 'ab  ' })).toBe(true)
    // IS NULL works on any type
    expect(compileMembership(parseMembership('doc IS NULL'), { doc: 'jsonb' })({ doc: null })).toBe(true)
  })

  test('without types, impossible comparisons and missing columns fail loudly per row', () => {
    expect(() => ev('name > 5', { name: 'abc' })).toThrow(
      /column "name" holds "abc", which cannot be compared as a number/,
    )
    expect(() => ev('archived', { archived: 1 })).toThrow(/column "archived" is used as a condition but holds 1/)
    expect(() => ev('x = 1', {})).toThrow(/column "x" is not in the row/)
    expect(() => ev('x = 1', { x: { a: 1 } })).toThrow(MembershipError)
  })
})

describe('toSql against PostgreSQL', () => {
  let db: TestDatabase
  let sql: postgres.Sql
  const nasty = [
    "it's",
    "'; DROP TABLE t; --",
    'back\\slash',
    "\\'",
    "\\\\''\\",
    '$$ $tag$',
    '"quoted"',
    'é😀',
  ]
  beforeAll(async () => {
    db = await testDatabase('membership_sql')
    sql = db.sql
    await sql`CREATE TABLE t (id int PRIMARY KEY, "we""ird Col" text, n numeric)`
    for (let i = 0; i < nasty.length; i++) await sql`INSERT INTO t VALUES (${i}, ${nasty[i]}, ${i})`
  }, 60_000)
  afterAll(async () => {
    await db?.drop()
  })

  test('string literals with quotes and backslashes select exactly their row, whatever standard_conforming_strings', async () => {
    for (const scs of ['on', 'off']) {
      await sql.begin(async (tx) => {
        await tx.unsafe(`SET LOCAL standard_conforming_strings = ${scs}`)
        await tx.unsafe('SET LOCAL escape_string_warning = off')
        for (let i = 0; i < nasty.length; i++) {
          const text = `"we""ird Col" = '${nasty[i].replace(/'/g, "''")}'`
          const p = parseMembership(text)
          expect(predicateColumns(p)).toEqual(['we"ird Col'])
          const rows = await tx.unsafe(`SELECT id FROM t WHERE (${toSql(p)})`)
          expect([scs, nasty[i], rows.map((r) => r.id)]).toEqual([scs, nasty[i], [i]])
          expect(isMember(p, { 'we"ird Col': nasty[i] })).toBe(true)
        }
      })
    }
    expect((await sql`SELECT count(*)::int AS c FROM t`)[0].c).toBe(nasty.length)
  })

  test('a custom quoteIdent is used for every column', () => {
    expect(toSql(parseMembership('a = b AND c'), (n) => `t.${n}`)).toBe('((t.a = t.b) AND t.c)')
  })

  test('negative numbers stay numbers next to operators', async () => {
    const p = parseMembership('n >= -1 AND n <> -0 AND n>-2.5 AND n NOT IN (-1, 3)')
    const rows = await sql.unsafe(`SELECT id FROM t WHERE (${toSql(p)}) ORDER BY id`)
    expect(rows.map((r) => r.id)).toEqual([1, 2, 4, 5, 6, 7])
    expect([0, 1, 2, 3, 4].map((n) => isMember(p, { n: String(n) }))).toEqual([false, true, true, false, true])
  })
})
