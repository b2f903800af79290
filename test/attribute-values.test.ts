// The declared type of each column type, and the exact conversions of values to a declared (or the namespace's) type.
import { describe, expect, test } from 'bun:test'
import { convertValue, shapeAttributes } from '../src/pipeline/attribute-values.ts'
import { columnAttribute, mappingAttributes } from '../src/pipeline/schema.ts'
import { decodeColumn, OID } from '../src/postgres/values.ts'
import type { Row } from '../src/types.ts'

describe('columnAttribute', () => {
  const spec = (typeOid: number, typmod = -1, typeName?: string) =>
    columnAttribute({ name: 'c', typeOid, typmod, typeName })?.spec
  test('strings are filterable only when their type bounds them to 4096 bytes', () => {
    expect(spec(OID.text)).toEqual({ type: 'string', filterable: false })
    expect(spec(OID.varchar)).toEqual({ type: 'string', filterable: false })
    expect(spec(OID.varchar, 1024 + 4)).toEqual({ type: 'string' })
    expect(spec(OID.varchar, 1025 + 4)).toEqual({ type: 'string', filterable: false })
    expect(spec(OID.bpchar, 5 + 4)).toEqual({ type: 'string' })
    expect(spec(OID.bytea)).toEqual({ type: 'string', filterable: false })
    expect(spec(OID.numeric)).toEqual({ type: 'string' })
    expect(spec(20000, -1, 'mood')).toEqual({ type: 'string' }) // an enum: a short label
    expect(spec(20001, -1, 'citext')).toEqual({ type: 'string', filterable: false })
    expect(spec(OID._text)).toEqual({ type: '[]string', filterable: false })
    expect(spec(OID._varchar, 20 + 4)).toEqual({ type: '[]string' })
  })
  test('domains are their base type; json is JSON text; vectors are no attribute', () => {
    // a domain arrives with its own OID and its base type's name (pgoutput's Type message; the read plan)
    expect(spec(30000, -1, '_text')).toEqual({ type: '[]string', filterable: false })
    expect(spec(30001, -1, 'int4')).toEqual({ type: 'int' })
    expect(columnAttribute({ name: 'j', typeOid: OID.jsonb })).toMatchObject({ form: 'json-text' })
    expect(columnAttribute({ name: 'j', typeOid: OID._jsonb })).toMatchObject({ form: 'json-text' })
    expect(columnAttribute({ name: 'v', typeOid: 40000, typeName: 'vector' })).toBeUndefined()
  })
  test('[target.schema] overrides, shorthand or table', () => {
    const attrs = mappingAttributes({ schemaHints: { n: 'float', t: { type: 'string', full_text_search: true } } }, [
      { name: 'n', typeOid: OID.numeric },
      { name: 't', typeOid: OID.text },
    ])
    expect(attrs.get('n')).toMatchObject({ spec: { type: 'float' }, overridden: true, pgType: 'numeric' })
    expect(attrs.get('t')?.spec).toEqual({ type: 'string', full_text_search: true })
  })
})

describe('convertValue', () => {
  test('exact conversions only', () => {
    expect(convertValue('12', 'int')).toEqual({ ok: true, value: 12 })
    expect(convertValue('9007199254740993', 'int')).toEqual({ ok: true, value: 9007199254740993n })
    expect(convertValue('9223372036854775808', 'int').ok).toBe(false)
    expect(convertValue('12.5', 'int').ok).toBe(false)
    expect(convertValue('abc', 'int').ok).toBe(false)
    expect(convertValue('12.50', 'float')).toEqual({ ok: true, value: 12.5 })
    expect(convertValue(9007199254740993n, 'float').ok).toBe(false)
    expect(convertValue(-1, 'uint').ok).toBe(false)
    expect(convertValue(12, 'string')).toEqual({ ok: true, value: '12' })
    expect(convertValue(['1', null, '2'], '[]int')).toEqual({ ok: true, value: [1, 2] })
    expect(convertValue([[1], [2]], '[]int')).toMatchObject({
      ok: false,
      error: expect.stringContaining('multi-dimensional'),
    })
    expect(convertValue('t', 'bool')).toEqual({ ok: true, value: true })
  })

  test('a multi-dimensional array value is a dead letter naming the column and the fix', () => {
    const row: Row = {}
    decodeColumn(row, 'ia', '{{1,2},{3,4}}', OID._int4)
    const attrs = mappingAttributes({}, [{ name: 'ia', typeOid: OID._int4 }])
    // the identity transform sends a nested array as its JSON text
    const bad = shapeAttributes({ ia: '[[1,2],[3,4]]' }, row, attrs, undefined, true)
    expect(bad?.error).toContain('column "ia"')
    expect(bad?.error).toContain('ia = "string"')
    const asText = mappingAttributes({ schemaHints: { ia: 'string' } }, [{ name: 'ia', typeOid: OID._int4 }])
    const a = { ia: '[[1,2],[3,4]]' }
    expect(shapeAttributes(a, row, asText, undefined, true)).toBeUndefined()
    expect(a.ia).toBe('[[1,2],[3,4]]')
  })
})
