// Conformance of the local turbopuffer server, driven through the official SDK as puffgres uses it.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Turbopuffer from '@turbopuffer/turbopuffer'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { encodeVersion, VERSION_ATTR } from '../src/types.ts'

let server: LocalServer
let tpuf: Turbopuffer
let n = 0
/** a fresh namespace name per test */
const fresh = (p = 'ns') => `${p}-${++n}`

beforeAll(async () => {
  server = await startLocalServer()
  tpuf = new Turbopuffer({ apiKey: 'test-key', baseURL: server.url, maxRetries: 0 })
})
afterAll(() => server.stop())

async function ids(ns: string, filters?: unknown): Promise<Array<string | number>> {
  const r = await tpuf.namespace(ns).query({ rank_by: ['id', 'asc'], top_k: 1000, filters: filters as any })
  return (r.rows ?? []).map((row) => row.id)
}

/** the error the SDK throws for a request, with its status and message */
async function failure(p: Promise<unknown>): Promise<{ status: number; message: string }> {
  try {
    await p
  } catch (e) {
    return { status: (e as any).status, message: String((e as Error).message) }
  }
  throw new Error('expected the request to fail')
}

describe('writes', () => {
  test('upsert_rows, patch_rows, deletes and the response counts', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    const r1 = await ns.write({
      upsert_rows: [{ id: 1, title: 'a', n: 1 }, { id: 2, title: 'b', n: 2 }, { id: 3, title: 'c' }],
      return_affected_ids: true,
    })
    expect(r1.status).toBe('OK')
    expect(r1.rows_upserted).toBe(3)
    expect(r1.rows_affected).toBe(3)
    expect(r1.upserted_ids).toEqual([1, 2, 3])
    const r2 = await ns.write({
      patch_rows: [{ id: 1, n: 10 }, { id: 99, n: 1 }],
      deletes: [3, 98],
      return_affected_ids: true,
    })
    // patches and deletes of documents that do not exist are skipped
    expect(r2).toMatchObject({ rows_patched: 1, rows_deleted: 1, rows_upserted: 0, rows_affected: 2 })
    expect(r2.patched_ids).toEqual([1])
    expect(r2.deleted_ids).toEqual([3])
    expect(server.documents(name)).toEqual([{ id: 1, title: 'a', n: 10 }, { id: 2, title: 'b', n: 2 }])
    const r3 = await ns.write({ upsert_rows: [{ id: 4 }] })
    expect(r3.upserted_ids).toBeUndefined()
  })

  test('upsert replaces the whole document; a patch with null removes an attribute', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({ upsert_rows: [{ id: 'a', x: 1, y: 2 }] })
    await ns.write({ upsert_rows: [{ id: 'a', x: 5 }] })
    expect(server.documents(name)).toEqual([{ id: 'a', x: 5 }])
    await ns.write({ patch_rows: [{ id: 'a', x: null, z: 'new' }] })
    expect(server.documents(name)).toEqual([{ id: 'a', z: 'new' }])
  })

  test('upsert_columns and patch_columns', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({ upsert_columns: { id: [1, 2], name: ['one', 'two'], tags: [['x'], null] } })
    await ns.write({ patch_columns: { id: [2, 3], name: ['TWO', 'three'] } })
    expect(server.documents(name)).toEqual([{ id: 1, name: 'one', tags: ['x'] }, { id: 2, name: 'TWO' }])
    const e = await failure(ns.write({ upsert_columns: { id: [1, 2], name: ['x'] } }))
    expect(e.status).toBe(400)
  })

  test('delete_by_filter, then patch_by_filter, then the rest, in one request', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({ upsert_rows: [1, 2, 3, 4].map((id) => ({ id, group: id % 2 === 0 ? 'even' : 'odd' })) })
    const r = await ns.write({
      delete_by_filter: ['group', 'Eq', 'even'],
      patch_by_filter: { filters: ['id', 'Gte', 0], patch: { seen: true } },
      // upserted after the filters ran: neither deleted nor patched
      upsert_rows: [{ id: 2, group: 'even' }],
    })
    expect(r).toMatchObject({ rows_deleted: 2, rows_patched: 2, rows_upserted: 1 })
    expect(server.documents(name)).toEqual([
      { id: 1, group: 'odd', seen: true },
      { id: 2, group: 'even' },
      { id: 3, group: 'odd', seen: true },
    ])
  })

  test('the same id twice in one request is a 400 and nothing is applied', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({ upsert_rows: [{ id: 1, v: 'a' }] })
    const e = await failure(ns.write({ upsert_rows: [{ id: 2, v: 'x' }], deletes: [2] }))
    expect(e.status).toBe(400)
    expect(e.message).toContain('duplicate id')
    const e2 = await failure(ns.write({ upsert_rows: [{ id: 5 }, { id: 5 }] }))
    expect(e2.status).toBe(400)
    expect(server.documents(name)).toEqual([{ id: 1, v: 'a' }])
  })

  test('gzip-compressed request bodies are accepted', async () => {
    const gz = new Turbopuffer({ apiKey: 'k', baseURL: server.url, maxRetries: 0, compression: true })
    const name = fresh()
    const ns = gz.namespace(name)
    const rows = Array.from({ length: 50 }, (_, i) => ({ id: i, text: 'x'.repeat(100) }))
    await ns.write({ upsert_rows: rows }) // > 1 KiB: the SDK gzips it
    expect(server.documents(name)).toHaveLength(50)
    const q = await ns.query({ rank_by: ['id', 'desc'], top_k: 1, include_attributes: true })
    expect(q.rows).toEqual([{ id: 49, text: 'x'.repeat(100) }])
  })

  test('copy_from_namespace copies documents and schema', async () => {
    const srcName = fresh()
    await tpuf.namespace(srcName).write({ upsert_rows: [{ id: 1, a: 'x' }], schema: { b: 'uint' } })
    const dstName = fresh()
    const dst = tpuf.namespace(dstName)
    await dst.copyFrom({ source_namespace: srcName })
    expect(server.documents(dstName)).toEqual([{ id: 1, a: 'x' }])
    expect((await dst.schema()).b.type).toBe('uint')
  })
})

describe('conditional writes (version guards)', () => {
  const v = (lsn: number) => encodeVersion(BigInt(lsn))
  const guard = ['Or', [[VERSION_ATTR, 'Lt', { $ref_new: VERSION_ATTR }], [VERSION_ATTR, 'Eq', null]]] as any

  test('upsert_condition with $ref_new: newer wins, older and equal are skipped, missing docs are created', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    const up = (id: number, lsn: number, title: string) =>
      ns.write({ upsert_rows: [{ id, [VERSION_ATTR]: v(lsn), title }], upsert_condition: guard })
    expect((await up(1, 0x200, 'first')).rows_upserted).toBe(1)
    expect((await up(1, 0x100, 'older')).rows_upserted).toBe(0)
    expect((await up(1, 0x200, 'same')).rows_upserted).toBe(0)
    // string order, not numeric: 0x1000 > 0x200 only because the hex is fixed-width
    expect((await up(1, 0x1000, 'newer')).rows_upserted).toBe(1)
    expect(server.documents(name)).toEqual([{ id: 1, [VERSION_ATTR]: v(0x1000), title: 'newer' }])
  })

  test('a condition that fails for an existing doc without the attribute is admitted by the Eq null branch', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({ upsert_rows: [{ id: 1, title: 'unversioned' }] })
    const r = await ns.write({ upsert_rows: [{ id: 1, [VERSION_ATTR]: v(5), title: 'v' }], upsert_condition: guard })
    expect(r.rows_upserted).toBe(1)
    const strict = await ns.write({
      upsert_rows: [{ id: 1, [VERSION_ATTR]: v(9), title: 'never' }],
      upsert_condition: [VERSION_ATTR, 'Gt', { $ref_new: VERSION_ATTR }],
    })
    expect(strict.rows_upserted).toBe(0)
  })

  test('upsert_condition never blocks creating a document', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    const r = await ns.write({ upsert_rows: [{ id: 7, x: 1 }], upsert_condition: ['x', 'Eq', 12345] })
    expect(r.rows_upserted).toBe(1)
  })

  test('delete_condition compares with a literal; $ref_new is null for deletes', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({ upsert_rows: [{ id: 1, [VERSION_ATTR]: v(10) }, { id: 2, [VERSION_ATTR]: v(30) }] })
    const r = await ns.write({ deletes: [1, 2, 3], delete_condition: [VERSION_ATTR, 'Lt', v(20)] })
    expect(r.rows_deleted).toBe(1)
    expect(await ids(name)).toEqual([2])
    const r2 = await ns.write({ deletes: [2], delete_condition: [VERSION_ATTR, 'Lt', { $ref_new: VERSION_ATTR }] })
    expect(r2.rows_deleted).toBe(0)
  })

  test('patch_condition: applies when it passes, skipped for missing docs', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({ upsert_rows: [{ id: 1, [VERSION_ATTR]: v(10), n: 1 }] })
    const cond = [VERSION_ATTR, 'Lt', { $ref_new: VERSION_ATTR }] as any
    const older = await ns.write({ patch_rows: [{ id: 1, [VERSION_ATTR]: v(5), n: 2 }], patch_condition: cond })
    expect(older.rows_patched).toBe(0)
    const newer = await ns.write({
      patch_rows: [{ id: 1, [VERSION_ATTR]: v(11), n: 3 }, { id: 2, [VERSION_ATTR]: v(11), n: 3 }],
      patch_condition: cond,
    })
    expect(newer.rows_patched).toBe(1)
    expect(server.documents(name)).toEqual([{ id: 1, [VERSION_ATTR]: v(11), n: 3 }])
  })
})

describe('schema and types', () => {
  test('types are inferred from the first value; a value of another type is a 400', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({ upsert_rows: [{ id: 1, price: 5, name: 'x', ok: true, tags: ['a'] }] })
    const schema = await ns.schema()
    expect(schema.price.type).toBe('int')
    expect(schema.name.type).toBe('string')
    expect(schema.ok.type).toBe('bool')
    expect(schema.tags.type).toBe('[]string')
    const e = await failure(ns.write({ upsert_rows: [{ id: 2, price: 9.99 }] }))
    expect(e.status).toBe(400)
    expect(e.message).toContain('price')
    expect((await failure(ns.write({ upsert_rows: [{ id: 2, name: 5 }] }))).status).toBe(400)
    expect((await failure(ns.write({ upsert_rows: [{ id: 2, nested: { a: 1 } }] }))).status).toBe(400)
  })

  test('declared types are enforced: float accepts integers, uint refuses negatives, datetime and uuid', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({
      upsert_rows: [{ id: 1, price: 5, u: 1, at: '2024-01-02T03:04:05Z', ref: '0190a9b2-7c3e-7f00-8000-000000000001' }],
      schema: { price: 'float', u: 'uint', at: 'datetime', ref: { type: 'uuid', filterable: true } },
    })
    await ns.write({ upsert_rows: [{ id: 2, price: 9.99 }] })
    expect((await failure(ns.write({ upsert_rows: [{ id: 3, u: -1 }] }))).status).toBe(400)
    expect((await failure(ns.write({ upsert_rows: [{ id: 3, at: 'yesterday' }] }))).status).toBe(400)
    expect((await failure(ns.write({ upsert_rows: [{ id: 3, ref: 'nope' }] }))).status).toBe(400)
    const e = await failure(ns.write({ upsert_rows: [{ id: 3 }], schema: { price: 'string' } }))
    expect(e.status).toBe(400)
    expect(e.message).toContain('cannot change type')
  })

  test('updateSchema and metadata', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    const s = await ns.updateSchema({ schema: { title: { type: 'string', full_text_search: true } } })
    expect(s.title).toMatchObject({ type: 'string', full_text_search: true })
    await ns.write({ upsert_rows: [{ id: 1, title: 't' }, { id: 2 }] })
    const md = await ns.metadata()
    expect(md.approx_row_count).toBe(2)
    expect(md.schema.title.type).toBe('string')
    expect(md.index.status).toBe('up-to-date')
    expect(typeof md.created_at).toBe('string')
    expect((await ns.hintCacheWarm()).status).toBe('ACCEPTED')
  })

  test('one id type per namespace', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({ upsert_rows: [{ id: 1 }] })
    expect((await failure(ns.write({ upsert_rows: [{ id: 'one' }] }))).status).toBe(400)
    expect((await failure(ns.write({ upsert_rows: [{ id: -1 }] }))).status).toBe(400)
    expect((await failure(ns.write({ upsert_rows: [{ id: 'x'.repeat(65) }] }))).status).toBe(400)
  })
})

describe('queries', () => {
  const NS = 'query-fixture'
  beforeAll(async () => {
    await tpuf.namespace(NS).write({
      distance_metric: 'euclidean_squared',
      upsert_rows: [
        { id: 1, vector: [0, 0], name: 'apple', n: 1, tags: ['red', 'fruit'], v: '00a' },
        { id: 2, vector: [1, 0], name: 'Banana', n: 2, tags: ['yellow', 'fruit'], v: '00b' },
        { id: 3, vector: [3, 0], name: 'cherry', n: 3, tags: ['red'], v: '010' },
        { id: 4, vector: [0, 5], name: 'date', tags: [], v: '0ff' },
        { id: 5, name: 'elder' },
      ],
    })
  })
  const q = (filters: unknown) => ids(NS, filters)

  test('filters: Eq NotEq In NotIn and null semantics', async () => {
    expect(await q(['name', 'Eq', 'apple'])).toEqual([1])
    expect(await q(['name', 'NotEq', 'apple'])).toEqual([2, 3, 4, 5])
    expect(await q(['n', 'Eq', null])).toEqual([4, 5])
    expect(await q(['n', 'NotEq', null])).toEqual([1, 2, 3])
    expect(await q(['n', 'In', [1, 3]])).toEqual([1, 3])
    expect(await q(['n', 'NotIn', [1, 3]])).toEqual([2, 4, 5])
    expect(await q(['id', 'In', [2, 5, 77]])).toEqual([2, 5])
  })

  test('filters: Lt Lte Gt Gte (numbers, strings lexicographically, ids); null never compares', async () => {
    expect(await q(['n', 'Lt', 2])).toEqual([1])
    expect(await q(['n', 'Lte', 2])).toEqual([1, 2])
    expect(await q(['n', 'Gt', 2])).toEqual([3])
    expect(await q(['n', 'Gte', 2])).toEqual([2, 3])
    expect(await q(['v', 'Lt', '00b'])).toEqual([1])
    expect(await q(['v', 'Gt', '00b'])).toEqual([3, 4]) // '010' > '00b' as strings
    expect(await q(['name', 'Lt', 'a'])).toEqual([2]) // 'B' < 'a' in byte order
    expect(await q(['id', 'Gt', 3])).toEqual([4, 5])
  })

  test('filters: Glob NotGlob IGlob NotIGlob Regex', async () => {
    expect(await q(['name', 'Glob', '*e*'])).toEqual([1, 3, 4, 5])
    expect(await q(['name', 'Glob', 'b*'])).toEqual([])
    expect(await q(['name', 'IGlob', 'b*'])).toEqual([2])
    expect(await q(['name', 'NotGlob', '?a*'])).toEqual([1, 3, 5])
    expect(await q(['name', 'NotIGlob', '[a-c]*'])).toEqual([4, 5])
    expect(await q(['name', 'Regex', '^[cd]'])).toEqual([3, 4])
  })

  test('filters on arrays: Contains NotContains ContainsAny NotContainsAny', async () => {
    expect(await q(['tags', 'Contains', 'red'])).toEqual([1, 3])
    expect(await q(['tags', 'NotContains', 'red'])).toEqual([2, 4, 5])
    expect(await q(['tags', 'ContainsAny', ['yellow', 'red']])).toEqual([1, 2, 3])
    expect(await q(['tags', 'NotContainsAny', ['fruit']])).toEqual([3, 4, 5])
  })

  test('filters: And Or Not', async () => {
    expect(await q(['And', [['tags', 'Contains', 'red'], ['n', 'Gt', 1]]])).toEqual([3])
    expect(await q(['Or', [['n', 'Eq', 1], ['name', 'Eq', 'elder']]])).toEqual([1, 5])
    expect(await q(['Not', ['tags', 'Contains', 'fruit']])).toEqual([3, 4, 5])
  })

  test('bad filters are a 400 with the reason', async () => {
    const e = await failure(q(['n', 'Lt', 'two']))
    expect(e.status).toBe(400)
    expect(e.message).toContain('int')
    expect((await failure(q(['n', 'Between', 1]))).status).toBe(400)
    expect((await failure(q(['n', 'In', 1]))).status).toBe(400)
    expect((await failure(q(['name', 'ContainsAllTokens', 'a']))).status).toBe(400)
  })

  test('rank_by vector ANN gives exact nearest neighbours with $dist', async () => {
    const r = await tpuf.namespace(NS).query({ rank_by: ['vector', 'ANN', [0.9, 0]], top_k: 3 })
    expect(r.rows!.map((x) => x.id)).toEqual([2, 1, 3])
    expect(r.rows![0].$dist).toBeCloseTo(0.01, 6)
    expect(r.rows![1].$dist).toBeCloseTo(0.81, 6)
    const bad = await failure(tpuf.namespace(NS).query({ rank_by: ['vector', 'ANN', [1, 2, 3]] }))
    expect(bad.status).toBe(400)
  })

  test('cosine distance', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({
      distance_metric: 'cosine_distance',
      upsert_rows: [{ id: 1, vector: [1, 0] }, { id: 2, vector: [0, 3] }, { id: 3, vector: [1, 1] }],
    })
    const r = await ns.query({ rank_by: ['vector', 'ANN', [2, 0]], top_k: 10, include_attributes: ['vector'] })
    expect(r.rows!.map((x) => x.id)).toEqual([1, 3, 2])
    expect(r.rows![0].$dist).toBeCloseTo(0, 6)
    expect(r.rows![1].$dist).toBeCloseTo(1 - Math.SQRT1_2, 6)
    expect(r.rows![2].$dist).toBeCloseTo(1, 6)
    expect(r.rows![0].vector).toEqual([1, 0])
    const e = await failure(tpuf.namespace(fresh()).write({ upsert_rows: [{ id: 1, vector: [1] }] }))
    expect(e.message).toContain('distance_metric')
  })

  test('rank_by attributes asc/desc with ties by id, top_k and limit, include_attributes', async () => {
    const ns = tpuf.namespace(NS)
    const desc = await ns.query({ rank_by: ['n', 'desc'], limit: 3, include_attributes: ['n'] })
    expect(desc.rows).toEqual([{ id: 3, n: 3 }, { id: 2, n: 2 }, { id: 1, n: 1 }])
    const asc = await ns.query({ rank_by: ['n', 'asc'], top_k: 2 })
    expect(asc.rows).toEqual([{ id: 4 }, { id: 5 }]) // null first, ties by id
    const multi = await ns.query({ rank_by: [['tags', 'asc'], ['id', 'desc']] as any, top_k: 1 })
    expect(multi.rows!.length).toBe(1)
    const all = await ns.query({ rank_by: ['id', 'asc'], top_k: 1, include_attributes: true })
    expect(all.rows).toEqual([{ id: 1, vector: [0, 0], name: 'apple', n: 1, tags: ['red', 'fruit'], v: '00a' }])
    expect((await failure(ns.query({ rank_by: ['id', 'asc'], top_k: 100_000 }))).status).toBe(400)
    expect((await failure(ns.query({ top_k: 1 }))).status).toBe(400)
  })

  test('paging through all documents: rank_by id asc with id Gt the last id', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    const all = Array.from({ length: 23 }, (_, i) => `doc-${String(i).padStart(3, '0')}`)
    await ns.write({ upsert_rows: all.map((id) => ({ id })) })
    const seen: string[] = []
    let last: string | undefined
    while (true) {
      const r = await ns.query({
        rank_by: ['id', 'asc'],
        top_k: 5,
        filters: last === undefined ? undefined : ['id', 'Gt', last],
      })
      const page = (r.rows ?? []).map((row) => row.id as string)
      if (page.length === 0) break
      seen.push(...page)
      last = page[page.length - 1]
    }
    expect(seen).toEqual(all)
  })

  test('aggregate_by Count and multi-query', async () => {
    const ns = tpuf.namespace(NS)
    const agg = await ns.query({ aggregate_by: { count: ['Count'] }, filters: ['tags', 'Contains', 'red'] })
    expect(agg.aggregations).toEqual({ count: 2 })
    const multi = await ns.multiQuery({
      queries: [{ rank_by: ['id', 'asc'], top_k: 1 }, { rank_by: ['id', 'desc'], top_k: 1 }],
    })
    expect(multi.results.map((r) => r.rows)).toEqual([[{ id: 1 }], [{ id: 5 }]])
  })
})

describe('namespaces', () => {
  test('list with prefix and page_size pages through all of them', async () => {
    for (let i = 0; i < 7; i++) await tpuf.namespace(`list-${i}`).write({ upsert_rows: [{ id: 1 }] })
    const names: string[] = []
    for await (const ns of tpuf.namespaces({ prefix: 'list-', page_size: 3 })) names.push(ns.id)
    expect(names).toEqual(['list-0', 'list-1', 'list-2', 'list-3', 'list-4', 'list-5', 'list-6'])
    const first = await tpuf.namespaces({ prefix: 'list-', page_size: 3 })
    expect(first.namespaces.length).toBe(3)
    expect(first.next_cursor).toBeTruthy()
  })

  test('delete namespace; then its queries, metadata and schema are 404', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write({ upsert_rows: [{ id: 1 }] })
    expect(await ns.exists()).toBe(true)
    await ns.deleteAll()
    expect(server.namespaces()).not.toContain(name)
    expect(await ns.exists()).toBe(false)
    const e = await failure(ns.query({ rank_by: ['id', 'asc'] }))
    expect(e.status).toBe(404)
    expect(e.message).toContain(`namespace '${name}' was not found`)
    expect((await failure(ns.metadata())).status).toBe(404)
    expect((await failure(ns.deleteAll())).status).toBe(404)
  })

  test('invalid namespace names are a 400', async () => {
    expect((await failure(tpuf.namespace('bad name!').write({ upsert_rows: [{ id: 1 }] }))).status).toBe(400)
  })
})

describe('HTTP errors', () => {
  test('401 without a bearer key; 401 with the wrong one when the server has a key', async () => {
    const res = await fetch(`${server.url}/v1/namespaces`)
    expect(res.status).toBe(401)
    expect(res.headers.get('content-type')).toBe('application/json')
    expect((await res.json()).status).toBe('error')
    const keyed = await startLocalServer({ apiKey: 'secret' })
    try {
      const wrong = new Turbopuffer({ apiKey: 'other', baseURL: keyed.url, maxRetries: 0 })
      expect((await failure(wrong.namespace('a').write({ upsert_rows: [{ id: 1 }] }))).status).toBe(401)
      const right = new Turbopuffer({ apiKey: 'secret', baseURL: keyed.url, maxRetries: 0 })
      expect((await right.namespace('a').write({ upsert_rows: [{ id: 1 }] })).rows_upserted).toBe(1)
    } finally {
      await keyed.stop()
    }
  })

  test('413 for a body over the limit, 422 for undecodable JSON, 400 for unknown fields', async () => {
    const small = await startLocalServer({ maxBodyBytes: 1000 })
    try {
      const c = new Turbopuffer({ apiKey: 'k', baseURL: small.url, maxRetries: 0 })
      const e = await failure(c.namespace('a').write({ upsert_rows: [{ id: 1, text: 'x'.repeat(2000) }] }))
      expect(e.status).toBe(413)
      expect(small.namespaces()).toEqual([])
    } finally {
      await small.stop()
    }
    const res = await fetch(`${server.url}/v2/namespaces/a`, {
      method: 'POST',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: '{"upsert_rows": [',
    })
    expect(res.status).toBe(422)
    const body = await res.json()
    expect(body.status).toBe('error')
    expect(typeof body.error).toBe('string')
    const e = await failure(tpuf.namespace(fresh()).write({ upsert_rowz: [] } as any))
    expect(e.status).toBe(400)
    expect(e.message).toContain('upsert_rowz')
  })
})
