// The request planning and retry policy of the turbopuffer sink, without a server.
import { describe, expect, test } from 'bun:test'
import { resolveBaseUrl } from '../src/turbopuffer/client.ts'
import { backoffDelay, retryAfterMs } from '../src/turbopuffer/retry.ts'
import {
  chunkOps,
  collapseOps,
  countWritten,
  type PreparedOp,
  prepareOp,
  writeBody,
  writeBodyParts,
} from '../src/turbopuffer/write-plan.ts'
import { deleteCondition } from '../src/turbopuffer/conditions.ts'
import { restoreBigints } from '../src/turbopuffer/wire-ids.ts'
import { EMBED_HASH_ATTR, ROW_ATTR, VERSION_ATTR, type WriteOp } from '../src/types.ts'
import { del, up } from './harness/write-ops.ts'
import { unappliedPatches } from '../src/turbopuffer/patches.ts'

describe('collapseOps', () => {
  test('keeps one op per id, the highest version, the later one on a tie', () => {
    const ops = [up(1, 'b', { n: 1 }), del(1, 'a'), up(2, 'a'), up('1', 'a'), up(2, 'a', { n: 2 }), del(3, 'c')]
    const out = collapseOps(ops)
    expect(out).toHaveLength(4)
    expect(out.find((o) => o.id === 1)).toEqual(up(1, 'b', { n: 1 }))
    // the number 1 and the string '1' are different ids
    expect(out.find((o) => o.id === '1')).toEqual(up('1', 'a'))
    expect(out.find((o) => o.id === 2)).toEqual(up(2, 'a', { n: 2 }))
  })
})

describe('prepareOp', () => {
  test('builds the row with id, vector and the version attribute', () => {
    const p = prepareOp({ kind: 'upsert', id: 7, version: 'v1', attributes: { a: 'x', id: 7 }, vector: [1, 2] })
    expect(typeof p).toBe('object')
    expect((p as PreparedOp).row).toEqual({ a: 'x', id: 7, vector: [1, 2], [VERSION_ATTR]: 'v1' })
  })

  test('refuses what turbopuffer would refuse, with a message naming the problem', () => {
    expect(prepareOp(up(-1, 'v'))).toContain('unsigned')
    expect(prepareOp(up(1.5, 'v'))).toContain('unsigned')
    expect(prepareOp(up('x'.repeat(65), 'v'))).toContain('64 bytes')
    expect(prepareOp(up(1, ''))).toContain('no version')
    expect(prepareOp(up(1, 'v', { $dist: 1 }))).toContain('"$dist"')
    expect(prepareOp(up(1, 'v', { id: 2 }))).toContain('differs')
    expect(prepareOp(up(1, 'v', { [VERSION_ATTR]: 'other' }))).toContain('reserved')
    const loop: Record<string, unknown> = {}
    loop.self = loop
    expect(prepareOp(up(1, 'v', { loop }))).toContain('JSON')
    expect(typeof prepareOp(del('ok', 'v'))).toBe('object')
  })

  test('refuses a value over 8 MiB and a document over 64 MiB, as turbopuffer counts them, saying what to do', () => {
    const MiB = 1024 * 1024
    const s = (bytes: number) => 'a'.repeat(bytes)
    expect(prepareOp(up(1, 'v', { body: s(9 * MiB) }))).toBe(
      `attribute "body" of document 1 is 9437184 bytes, over turbopuffer's limit of 8388608 bytes (8 MiB) for one ` +
        "value: leave the column out of the mapping's columns, or shorten it in a transform",
    )
    // UTF-8 bytes, not characters: 4 Mi of 'é' and one 'a' are 8 MiB + 1
    expect(prepareOp(up('k', 'v', { body: 'é'.repeat(4 * MiB) + 'a' }))).toContain(
      'attribute "body" of document "k" is 8388609',
    )
    // 8 bytes a number: the JSON of these is about 2 MiB, their size 8 MiB + 8
    expect(prepareOp(up(1, 'v', { nums: new Array(MiB + 1).fill(1) }))).toContain('"nums" of document 1 is 8388616')
    expect(typeof prepareOp(up(1, 'v', { body: s(8 * MiB), nums: new Array(MiB).fill(1) }))).toBe('object')

    // eight values of 8 MiB fill a document; the version attribute ('v', 1 byte) and the vector count too
    const eight = (last: number) =>
      Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`t${i}`, s(i < 7 ? 8 * MiB : last)]))
    expect(prepareOp(up(2, 'v', eight(8 * MiB)))).toBe(
      `document 2 is 67108865 bytes, over turbopuffer's limit of 67108864 bytes (64 MiB) for one document: leave ` +
        "some columns out of the mapping's columns, or shorten them in a transform",
    )
    expect(typeof prepareOp(up(2, 'v', eight(8 * MiB - 1)))).toBe('object')
    const withVector = (vector: number[]): WriteOp => ({
      kind: 'upsert',
      id: 2,
      version: 'v',
      attributes: eight(8 * MiB - 5),
      vector,
    })
    expect(prepareOp(withVector([0.5, 0.5]))).toContain('document 2 is 67108868')
    expect(typeof prepareOp(withVector([0.5]))).toBe('object')
  })
})

describe('chunkOps', () => {
  const prepared = (ops: WriteOp[]) => ops.map((op) => prepareOp(op) as PreparedOp)

  test('splits by row count and by bytes, keeping order; an oversized op goes alone', () => {
    const ops = prepared(Array.from({ length: 25 }, (_, i) => up(i, 'v')))
    const byRows = chunkOps(ops, { maxRows: 10, maxBytes: 1e9, maxDeleteVersions: 100 })
    expect(byRows.map((c) => c.length)).toEqual([10, 10, 5])
    expect(byRows.flat().map((p) => p.op.id)).toEqual(ops.map((p) => p.op.id))

    const big = prepared([
      up(1, 'v', { s: 'x'.repeat(1000) }),
      up(2, 'v'),
      up(3, 'v', { s: 'y'.repeat(5000) }),
      up(4, 'v'),
    ])
    const byBytes = chunkOps(big, { maxRows: 100, maxBytes: 2000, maxDeleteVersions: 100 })
    expect(byBytes.map((c) => c.map((p) => p.op.id))).toEqual([[1, 2], [3], [4]])
  })

  test('bounds the distinct delete versions per request', () => {
    const ops = prepared([del(1, 'a'), del(2, 'a'), del(3, 'b'), del(4, 'c'), up(5, 'z'), del(6, 'a')])
    const chunks = chunkOps(ops, { maxRows: 100, maxBytes: 1e9, maxDeleteVersions: 2 })
    expect(chunks.map((c) => c.map((p) => p.op.id))).toEqual([[1, 2, 3], [4, 5, 6]])
  })
})

describe('conditions', () => {
  test('deletes sharing one version get a plain literal condition', () => {
    expect(deleteCondition([{ id: 1, version: 'v5' }, { id: 2, version: 'v5' }])).toEqual([VERSION_ATTR, 'Lt', 'v5'])
  })

  test('deletes with different versions compare each document with its own delete version', () => {
    expect(deleteCondition([{ id: 1, version: 'a' }, { id: 2, version: 'b' }, { id: 3, version: 'a' }])).toEqual([
      'Or',
      [
        ['And', [['id', 'In', [1, 3]], [VERSION_ATTR, 'Lt', 'a']]],
        ['And', [['id', 'Eq', 2], [VERSION_ATTR, 'Lt', 'b']]],
      ],
    ])
  })

  test('a request declares the version attribute as string and guards upserts', () => {
    const chunk = [prepareOp(up(1, 'v1', { n: 1 })) as PreparedOp, prepareOp(del(2, 'v2')) as PreparedOp]
    const body = writeBody(chunk, { schema: { n: 'int', [VERSION_ATTR]: 'uint' }, distanceMetric: 'cosine_distance' })
    expect(body.schema).toEqual({ n: 'int', [VERSION_ATTR]: 'string' })
    expect(body.upsert_condition).toEqual([
      'Or',
      [[VERSION_ATTR, 'Lt', { $ref_new: VERSION_ATTR }], [VERSION_ATTR, 'Eq', null]],
    ])
    expect(body.deletes).toEqual([2])
    expect(body.delete_condition).toEqual([VERSION_ATTR, 'Lt', 'v2'])
    expect(body.distance_metric).toBe('cosine_distance')
  })

  test('countWritten reads rows_upserted and rows_deleted, else rows_affected', () => {
    expect(countWritten({ rows_upserted: 2, rows_deleted: 1, rows_affected: 9 }, 5)).toBe(3)
    expect(countWritten({ rows_affected: 4 }, 5)).toBe(4)
    expect(countWritten({}, 5)).toBe(5)
  })
})

describe('retry policy', () => {
  test('full jitter below a doubling, capped ceiling', () => {
    const policy = { baseMs: 250, capMs: 30_000 }
    expect(backoffDelay(0, policy, () => 0.999)).toBe(249)
    expect(backoffDelay(3, policy, () => 0.5)).toBe(1000)
    expect(backoffDelay(20, policy, () => 0.999)).toBe(29_970)
    expect(backoffDelay(5000, policy, () => 0)).toBe(0)
  })

  test('retry-after-ms, then retry-after in seconds or as a date', () => {
    expect(retryAfterMs(new Headers({ 'retry-after-ms': '120', 'retry-after': '9' }))).toBe(120)
    expect(retryAfterMs(new Headers({ 'retry-after': '2' }))).toBe(2000)
    const now = Date.parse('2024-01-01T00:00:00Z')
    expect(retryAfterMs(new Headers({ 'retry-after': 'Mon, 01 Jan 2024 00:00:03 GMT' }), now)).toBe(3000)
    expect(retryAfterMs(new Headers({ 'retry-after': 'soon' }))).toBeUndefined()
    expect(retryAfterMs(new Headers({ 'retry-after': '86400' }))).toBeUndefined()
    expect(retryAfterMs(undefined)).toBeUndefined()
  })
})

describe('base URL', () => {
  test('a region fills the default URL; an explicit base URL without {region} ignores TURBOPUFFER_REGION', () => {
    expect(resolveBaseUrl({ region: 'gcp-us-central1' }, {})).toBe('https://gcp-us-central1.turbopuffer.com')
    expect(resolveBaseUrl({}, { TURBOPUFFER_REGION: 'aws-eu-central-1' })).toBe(
      'https://aws-eu-central-1.turbopuffer.com',
    )
    expect(resolveBaseUrl({ base_url: 'http://127.0.0.1:9' }, { TURBOPUFFER_REGION: 'x' })).toBe('http://127.0.0.1:9')
    expect(resolveBaseUrl({}, { TURBOPUFFER_BASE_URL: 'http://h:1/{region}', TURBOPUFFER_REGION: 'r1' })).toBe(
      'http://h:1/r1',
    )
    expect(() => resolveBaseUrl({}, {})).toThrow('no region')
    expect(() => resolveBaseUrl({ region: 'a/b' }, {})).toThrow('not a region name')
  })
})

describe('versions and big integers', () => {
  test('deletes of one transaction share one clause, compared with the highest version of that transaction', () => {
    const c = 'aaaaaaaaaaaaaaaa'
    expect(deleteCondition([{ id: 1, version: c + '00000001' }, { id: 2, version: c + '00000005' }])).toEqual([
      VERSION_ATTR,
      'Lt',
      c + '00000005',
    ])
    const d = 'bbbbbbbbbbbbbbbb'
    expect(deleteCondition([{ id: 1, version: c + '00000001' }, { id: 2, version: d + '00000001' }])).toEqual([
      'Or',
      [
        ['And', [['id', 'Eq', 1], [VERSION_ATTR, 'Lt', c + '00000001']]],
        ['And', [['id', 'Eq', 2], [VERSION_ATTR, 'Lt', d + '00000001']]],
      ],
    ])
  })

  test('a bigint attribute is sent as an exact bare JSON integer', () => {
    const p = prepareOp({ kind: 'upsert', id: 1, attributes: { big: 9007199254740993n, a: [1n] }, version: 'v' })
    if (typeof p === 'string') throw new Error(p)
    expect(restoreBigints(JSON.stringify(p.row))).toBe(
      '{"big":9007199254740993,"a":[1],"id":1,"_puffgres_version":"v"}',
    )
  })
})

describe("a row's documents (row-documents mode)", () => {
  const V1 = 'a'.repeat(16) + '00000001'
  const V2 = 'a'.repeat(16) + '00000003'
  const V3 = 'b'.repeat(16) + '00000000'
  const row = (id: string, version: string, n: number): WriteOp => ({
    kind: 'row',
    id,
    version,
    documents: Array.from({ length: n }, (_, i) => ({ id: `${id}#${i}`, attributes: { chunk: `t${i}` } })),
  })
  const prepared = (ops: WriteOp[]) => ops.map((op) => prepareOp(op) as PreparedOp)

  test('one request: delete_by_filter of each row older than its version, then the guarded upserts', () => {
    const body = writeBody(prepared([row('1', V1, 2), row('2', V2, 0), row('3', V3, 1)]), {})
    expect(body.delete_by_filter).toEqual(['Or', [
      // rows of one transaction share a clause, compared with its highest version
      ['And', [[ROW_ATTR, 'In', ['1', '2']], [VERSION_ATTR, 'Lt', V2]]],
      ['And', [[ROW_ATTR, 'Eq', '3'], [VERSION_ATTR, 'Lt', V3]]],
    ]])
    expect(body.upsert_rows).toEqual([
      { id: '1#0', chunk: 't0', [ROW_ATTR]: '1', [VERSION_ATTR]: V1 },
      { id: '1#1', chunk: 't1', [ROW_ATTR]: '1', [VERSION_ATTR]: V1 },
      { id: '3#0', chunk: 't0', [ROW_ATTR]: '3', [VERSION_ATTR]: V3 },
    ])
    expect(body.upsert_condition).toBeDefined()
    expect(body.deletes).toBeUndefined()
    expect(body.schema).toMatchObject({ [ROW_ATTR]: 'string', [VERSION_ATTR]: 'string' })
    expect(writeBody(prepared([row('9', V1, 0)]), {}).delete_by_filter)
      .toEqual(['And', [[ROW_ATTR, 'Eq', '9'], [VERSION_ATTR, 'Lt', V1]]])
  })

  test('embeddings paid once: a document with its stored vector is patched, spared by the filter, no vector sent', () => {
    const stored = { text: 't1', attribute: 'vector' }
    const op: WriteOp = {
      kind: 'row',
      id: '1',
      version: V1,
      documents: [
        { id: '1#0', attributes: { chunk: 't0' }, vector: [1, 2] },
        { id: '1#1', attributes: { chunk: 't1', gone: null }, vector: [9, 9], stored },
      ],
    }
    const upsert: WriteOp = { kind: 'upsert', id: 7, attributes: { n: 1 }, vector: [3], version: V2, stored }
    const chunk = prepared([op, row('2', V1, 1), upsert])
    const body = writeBody(chunk, {})
    expect(body.delete_by_filter).toEqual(
      ['And', [[ROW_ATTR, 'In', ['1', '2']], [VERSION_ATTR, 'Lt', V1], ['id', 'NotIn', ['1#1']]]],
    )
    expect(body.upsert_rows).toEqual([
      { id: '1#0', chunk: 't0', vector: [1, 2], [ROW_ATTR]: '1', [VERSION_ATTR]: V1 },
      { id: '2#0', chunk: 't0', [ROW_ATTR]: '2', [VERSION_ATTR]: V1 },
    ])
    expect(body.patch_rows).toEqual([
      // null: an attribute the row no longer has, cleared (a patch keeps what it does not name)
      { id: '1#1', chunk: 't1', gone: null, [ROW_ATTR]: '1', [VERSION_ATTR]: V1 },
      { id: 7, n: 1, [VERSION_ATTR]: V2 },
    ])
    // over an older version, and only while the document carries the hash the patch keeps its vector for
    expect(body.patch_condition).toEqual([
      'And',
      [[VERSION_ATTR, 'Lt', { $ref_new: VERSION_ATTR }], [EMBED_HASH_ATTR, 'Eq', { $ref_new: EMBED_HASH_ATTR }]],
    ])
    expect(body.return_affected_ids).toBe(true)
    // the patches the response does not list did not apply: redone by the writer with their vectors
    expect(unappliedPatches(chunk, { rows_patched: 2, patched_ids: ['1#1', 7] })).toEqual([])
    expect(unappliedPatches(chunk, { rows_patched: 1, patched_ids: [7] })).toEqual([{ op, ids: ['1#1'] }])
    expect(unappliedPatches(chunk, { rows_patched: 0 })).toEqual([{ op, ids: ['1#1'] }, { op: upsert, ids: [7] }])
  })

  test("a row's documents are never split over requests; maxRows counts documents", () => {
    const ops = prepared([row('1', V1, 3), row('2', V1, 3), row('3', V1, 1)])
    const chunks = chunkOps(ops, { maxRows: 4, maxBytes: 1 << 30, maxDeleteVersions: 10 })
    expect(chunks.map((c) => c.map((p) => p.op.id))).toEqual([['1'], ['2', '3']])
  })

  test('refuses a row whose key cannot be filtered on, or whose documents repeat an id', () => {
    expect(prepareOp({ kind: 'row', id: 'k'.repeat(4097), version: V1, documents: [] }))
      .toMatch(/its key is 4097 bytes, over the 4096 bytes turbopuffer can filter on/)
    expect(prepareOp({
      kind: 'row',
      id: '1',
      version: V1,
      documents: [{ id: '1#0', attributes: {} }, { id: '1#0', attributes: {} }],
    })).toBe('row "1": document id "1#0" is given twice')
    expect(prepareOp({ kind: 'row', id: '1', version: V1, documents: [{ id: 'x'.repeat(65), attributes: {} }] }))
      .toMatch(/^row "1": id "x+…": string ids are at most 64 bytes$/)
  })
})

describe('the request body as sent with fetch', () => {
  const V = '0000000001000000-0000000000'
  const stored = { text: 't', attribute: 'vector' }
  // what the body object says once serialized, bigints marked and then restored (client.ts)
  const asSent = (body: object) =>
    JSON.parse(restoreBigints(JSON.stringify(body, (_k, x) => typeof x === 'bigint' ? `\u0000bigint:${x}` : x)))
  const cases: Record<string, WriteOp[]> = {
    'upserts and deletes': [up(1, V, { n: 1, s: 'a"b' }), del(2, V), up(3, V, { tags: ['x', 'y'] })],
    'an upsert with a vector and one patched (its stored vector kept)': [
      { kind: 'upsert', id: 4, attributes: { n: 2 }, vector: [0.5, 1], version: V },
      { kind: 'upsert', id: 5, attributes: { n: 3 }, vector: [2], version: V, stored },
    ],
    "a row's documents, one patched": [{
      kind: 'row',
      id: 'r1',
      version: V,
      documents: [{ id: 'r1#0', attributes: { c: 'x' } }, { id: 'r1#1', attributes: { c: 'y' }, stored }],
    }],
    'deletes only': [del(6, V), del(7, V)],
    'a bigint id and value past 2^53': [
      { kind: 'upsert', id: 18446744073709551615n, version: V, attributes: { big: 9007199254740993n } },
    ],
  }
  for (const [name, ops] of Object.entries(cases)) {
    test(`writeBodyParts put together the same body as writeBody: ${name}`, () => {
      const chunk = ops.map((op) => prepareOp(op) as PreparedOp)
      const opts = { schema: { n: { type: 'int' } }, distanceMetric: 'cosine_distance' } as const
      const text = writeBodyParts(chunk, opts).join('')
      expect(JSON.parse(restoreBigints(text))).toEqual(asSent(writeBody(chunk, opts)))
      // sent in pieces (keep-alive.ts), each restored alone: a marked bigint never spans two pieces
      expect(writeBodyParts(chunk, opts).map(restoreBigints).join('')).toBe(restoreBigints(text))
    })
  }
})
