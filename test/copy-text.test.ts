import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Buffer } from 'node:buffer'
import { CopyTextParser, invalidFields, unescapeField } from '../src/postgres/copy-text.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'

const parse = (ncols: number, ...chunks: (string | Uint8Array)[]) => {
  const p = new CopyTextParser(ncols)
  for (const c of chunks) p.push(typeof c === 'string' ? Buffer.from(c) : c)
  p.end()
  return p.rows
}

describe('CopyTextParser', () => {
  test('rows, tabs, NULL and every escape', () => {
    expect(parse(3, 'a\t\\N\tc\n\\\\N\t\t\\t\\n\\r\\b\\f\\v\\\\x\\y\n')).toEqual([
      ['a', null, 'c'],
      ['\\N', '', '\t\n\r\b\f\v\\xy'],
    ])
  })

  test('octal and hex bytes are UTF-8 together with their neighbours', () => {
    expect(unescapeField('\\303\\251t\\xc3\\xa9\\101\\x41z', 0, 26)).toBe('étéAAz')
  })

  test('a chunk may end anywhere, even inside a multibyte character', () => {
    const text = Buffer.from('1\tjoyeux 😀 é\\tx\n2\t\\N\n')
    for (let cut = 0; cut <= text.length; cut++) {
      expect(parse(2, text.subarray(0, cut), text.subarray(cut))).toEqual([['1', 'joyeux 😀 é\tx'], ['2', null]])
    }
  })

  test('a leading byte order mark is data', () => {
    expect(parse(1, '\uFEFFx\n')).toEqual([['\uFEFFx']])
  })

  test('a field that is not UTF-8 (SQL_ASCII) reads byte by byte and is marked; its neighbours and rows are intact', () => {
    const p = new CopyTextParser(3)
    // row 2's second field is Latin-1 "café" (0xe9 alone is not UTF-8); row 3 holds real UTF-8
    p.push(Buffer.concat([Buffer.from('1\ta\tb\n2\tcaf'), Buffer.from([0xe9]), Buffer.from('\t\\N\n3\tdéjà\tc\n')]))
    p.end()
    expect(p.rows).toEqual([['1', 'a', 'b'], ['2', 'café', null], ['3', 'déjà', 'c']])
    expect(invalidFields(p.rows[0])).toBeUndefined()
    expect([...invalidFields(p.rows[1])!]).toEqual([[
      1,
      'the value is not valid UTF-8 (4 bytes; a SQL_ASCII database?)',
    ]])
    expect(invalidFields(p.rows[2])).toBeUndefined()
  })

  test('wrong column counts and a cut-off last row are errors', () => {
    expect(() => parse(2, 'a\n')).toThrow('COPY row 1 has 1 columns, expected 2')
    expect(() => parse(1, 'a\tb\n')).toThrow('COPY row 1 has more than 1 columns')
    expect(() => parse(1, 'a\nb')).toThrow('COPY data ended inside a row (1 complete rows before it)')
    expect(() => parse(1, 'a\\\n')).toThrow('lone backslash')
  })
})

describe('against PostgreSQL', () => {
  let db: TestDatabase
  beforeAll(async () => {
    db = await testDatabase('copytext')
  })
  afterAll(async () => {
    await db?.drop()
  })

  test('COPY TO STDOUT parses to the same texts as a query returns', async () => {
    await db.sql.unsafe(`
      CREATE TABLE t (id int PRIMARY KEY, a text, b text[], c jsonb);
      INSERT INTO t VALUES
        (1, E'tab\\there\\nnew line\\r\\\\ back \\\\N', ARRAY[E'x\\ty', 'q"uote', NULL, ''], '{"k": "v\\n"}'),
        (2, NULL, NULL, NULL),
        (3, '\\N', '{}', '[1,2]'),
        (4, E'\\u00e9\\U0001F600 \\uFEFF', ARRAY['{,}'], '"\\\\"'),
        (5, '', ARRAY[E'a\\\\b'], 'null');`)
    const select = 'SELECT id::text, a::text, b::text, c::text FROM t ORDER BY id'
    const expected = await db.sql.unsafe(select).values()
    const stream = await db.sql.unsafe(`COPY (${select}) TO STDOUT`).readable()
    const p = new CopyTextParser(4)
    for await (const chunk of stream) p.push(chunk)
    p.end()
    expect(p.rows).toEqual(expected as unknown as (string | null)[][])
  })
})
