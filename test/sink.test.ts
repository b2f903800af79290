// The turbopuffer sink against the local turbopuffer-compatible server, over real HTTP.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import process from 'node:process'
import { startLocalServer } from '../src/local/server.ts'
import { DiscardSink } from '../src/turbopuffer/discard.ts'
import { defaultWritesInFlight } from '../src/turbopuffer/write-request.ts'
import {
  type RetryInfo,
  TurbopufferRequestError,
  TurbopufferSink,
  type TurbopufferSinkOptions,
} from '../src/turbopuffer/sink.ts'
import { VERSION_ATTR, type WriteOp } from '../src/types.ts'
import { del, up } from './harness/write-ops.ts'

type Server = Awaited<ReturnType<typeof startLocalServer>>
let server: Server

beforeAll(async () => {
  server = await startLocalServer({ apiKey: 'test-key' })
})
afterAll(async () => {
  await server.stop()
})

// tiny backoff so that retry storms finish quickly; the policy itself is unit-tested in sink-plan.test.ts
const fast = { baseMs: 1, capMs: 20 }
const sinkFor = (opts: TurbopufferSinkOptions = {}) =>
  new TurbopufferSink({ api_key: 'test-key', base_url: server.url }, { backoff: fast, ...opts })

let nsCounter = 0
const freshNamespace = () => `sink-test-${process.pid}-${++nsCounter}`

async function docs(sink: TurbopufferSink, ns: string): Promise<Map<unknown, Record<string, unknown>>> {
  const out = new Map<unknown, Record<string, unknown>>()
  for await (const row of sink.listDocuments(ns)) out.set(row.id, row)
  return out
}

describe('versioned writes', () => {
  test('an older upsert is skipped and the newer document kept; a newer one applies', async () => {
    const sink = sinkFor()
    const ns = freshNamespace()
    expect(await sink.write(ns, [up(1, 'v2', { name: 'two' }), up(2, 'v2', { name: 'b' })])).toEqual({
      written: 2,
      skipped: 0,
      failed: [],
    })
    expect(await sink.write(ns, [up(1, 'v1', { name: 'one' })])).toEqual({ written: 0, skipped: 1, failed: [] })
    expect((await docs(sink, ns)).get(1)).toMatchObject({ name: 'two', [VERSION_ATTR]: 'v2' })

    // the same version again (a replay) changes nothing either
    expect(await sink.write(ns, [up(1, 'v2', { name: 'replayed' })])).toMatchObject({ written: 0, skipped: 1 })
    expect(await sink.write(ns, [up(1, 'v3', { name: 'three' })])).toMatchObject({ written: 1, skipped: 0 })
    const after = await docs(sink, ns)
    expect(after.get(1)).toMatchObject({ name: 'three', [VERSION_ATTR]: 'v3' })
    expect(after.get(2)).toMatchObject({ name: 'b', [VERSION_ATTR]: 'v2' })
    expect(sink.stats()).toMatchObject({ written: 3, skipped: 2, failed: 0 })
  })

  test('a delete older than the document keeps it; a newer delete removes it', async () => {
    const sink = sinkFor()
    const ns = freshNamespace()
    await sink.write(ns, [up('a', 'v5', { n: 1 }), up('b', 'v5', { n: 2 })])
    expect(await sink.write(ns, [del('a', 'v4')])).toEqual({ written: 0, skipped: 1, failed: [] })
    expect([...(await docs(sink, ns)).keys()].sort()).toEqual(['a', 'b'])
    expect(await sink.write(ns, [del('a', 'v6')])).toEqual({ written: 1, skipped: 0, failed: [] })
    expect([...(await docs(sink, ns)).keys()]).toEqual(['b'])
  })

  test('deletes with different versions in one request are each compared with their own version', async () => {
    const sink = sinkFor()
    const ns = freshNamespace()
    await sink.write(ns, [up(1, 'v10'), up(2, 'v10'), up(3, 'v30'), up(4, 'v30'), up(5, 'v10')])
    // 1: older than its delete → deleted; 3: newer than its delete → kept; 4: delete with the highest version → deleted
    // 2 and 5 untouched; 9 does not exist
    const res = await sink.write(ns, [del(1, 'v20'), del(3, 'v20'), del(4, 'v40'), del(9, 'v20')])
    expect(res).toEqual({ written: 2, skipped: 2, failed: [] })
    expect([...(await docs(sink, ns)).keys()].sort()).toEqual([2, 3, 5])
  })

  test('replay order: a delete before any upsert is a no-op, and the replayed delete removes the document again', async () => {
    const sink = sinkFor()
    const ns = freshNamespace()
    // the stream's delete (v5) arrives while the namespace does not hold the document
    expect(await sink.write(ns, [del(1, 'v5')])).toEqual({ written: 0, skipped: 1, failed: [] })
    // one batch holding an upsert and a later delete of the same id: the delete wins (one op per id)
    expect(await sink.write(ns, [up(2, 'v3'), del(2, 'v5'), up(3, 'v3')])).toEqual({
      written: 1,
      skipped: 1,
      failed: [],
    })
    expect([...(await docs(sink, ns)).keys()]).toEqual([3])
    // a replay from the slot sends the older upsert and then the delete again: the end state is the same
    await sink.write(ns, [up(1, 'v3', { stale: true })])
    await sink.write(ns, [del(1, 'v5')])
    expect([...(await docs(sink, ns)).keys()]).toEqual([3])
    // an upsert newer than a delete of the same id recreates the document
    expect(await sink.write(ns, [up(1, 'v6', { back: true })])).toMatchObject({ written: 1 })
    expect((await docs(sink, ns)).get(1)).toMatchObject({ back: true, [VERSION_ATTR]: 'v6' })
  })

  test('documents with vectors and an explicit schema', async () => {
    const sink = sinkFor()
    const ns = freshNamespace()
    const res = await sink.write(
      ns,
      [{ kind: 'upsert', id: 1, version: 'v1', attributes: { price: 5 }, vector: [0.1, 0.2] }],
      { schema: { price: 'float' }, distanceMetric: 'cosine_distance' },
    )
    expect(res).toEqual({ written: 1, skipped: 0, failed: [] })
    // 9.99 after 5: fine, because the schema said float
    expect(await sink.write(ns, [up(2, 'v1', { price: 9.99 })], { schema: { price: 'float' } })).toMatchObject({
      written: 1,
      failed: [],
    })
  })
})

describe('failures', () => {
  test('a 429 storm with retry-after is ridden out: all written, nothing failed, the wait honoured', async () => {
    const retries: RetryInfo[] = []
    const sink = sinkFor({ onRetry: (i) => retries.push(i) })
    const ns = freshNamespace()
    server.failNext(5, 429, 150)
    const started = Date.now()
    const res = await sink.write(ns, Array.from({ length: 20 }, (_, i) => up(i, 'v1', { i })))
    // the backoff here is at most 20 ms per retry: only the retry-after of 150 ms makes 5 retries take 750 ms
    expect(Date.now() - started).toBeGreaterThanOrEqual(740)
    expect(res).toEqual({ written: 20, skipped: 0, failed: [] })
    expect(retries).toHaveLength(5)
    expect(retries.every((r) => r.status === 429 && r.delayMs === 150 && r.operation === 'write')).toBe(true)
    expect(retries.map((r) => r.attempt)).toEqual([1, 2, 3, 4, 5])
    expect(sink.stats()).toMatchObject({ retries: 5, requests: 6, written: 20, failed: 0 })
    expect((await docs(sink, ns)).size).toBe(20)
  })

  test('random 5xx failures on many requests: everything is eventually written', async () => {
    const retries: RetryInfo[] = []
    const requests: boolean[] = []
    const sink = sinkFor({
      onRetry: (i) => retries.push(i),
      onRequest: (_ms, ok) => requests.push(ok),
      limits: { maxRows: 10 },
    })
    const ns = freshNamespace()
    const server500s = server.stats().statuses['500'] ?? 0
    server.setFailRate(0.4)
    let res
    try {
      res = await sink.write(ns, Array.from({ length: 200 }, (_, i) => up(i, 'v1', { i })))
    } finally {
      server.setFailRate(0)
    }
    expect(res).toEqual({ written: 200, skipped: 0, failed: [] })
    expect(retries.length).toBeGreaterThan(0)
    expect(requests.filter((ok) => !ok)).toHaveLength(retries.length)
    expect(requests.filter((ok) => ok)).toHaveLength(20)
    expect((server.stats().statuses['500'] ?? 0) - server500s).toBe(retries.length)
    expect((await docs(sink, ns)).size).toBe(200)
  })

  test('onRequest names the operation of each request (the shed of run counts writes only)', async () => {
    const seen: string[] = []
    const sink = sinkFor({ onRequest: (_ms, ok, operation) => seen.push(`${operation} ${ok}`) })
    const ns = freshNamespace()
    server.failNext(1, 503)
    await sink.write(ns, [up(1, 'v1', { i: 1 })])
    await sink.attributeTypes!(ns)
    expect(seen).toEqual(['write false', 'write true', 'query true'])
  })

  test('useSignal: calls started after it give up when that signal aborts; calls before keep their own', async () => {
    const sink = sinkFor()
    const ns = freshNamespace()
    const first = new AbortController()
    sink.useSignal(first.signal)
    server.failNext(1_000_000, 503)
    const retried = sink.write(ns, [up(1, 'v1', { i: 1 })])
    const second = new AbortController()
    sink.useSignal(second.signal)
    const later = sink.write(ns, [up(2, 'v1', { i: 2 })])
    first.abort(new Error('the connection was lost'))
    await expect(retried).rejects.toThrow('the connection was lost')
    server.failNext(0, 503)
    expect(await later).toMatchObject({ written: 1, failed: [] })
  })

  test('a network error (nothing listening) is retried until aborted, and the abort rejects the write', async () => {
    const controller = new AbortController()
    const retries: RetryInfo[] = []
    const sink = new TurbopufferSink({ api_key: 'k', base_url: 'http://127.0.0.1:9' }, {
      backoff: fast,
      signal: controller.signal,
      onRetry: (i) => {
        retries.push(i)
        if (retries.length === 3) controller.abort(new Error('shutting down'))
      },
    })
    await expect(sink.write('ns', [up(1, 'v1')])).rejects.toThrow('shutting down')
    expect(retries).toHaveLength(3)
    expect(retries[0].status).toBeUndefined()
  })

  test('abort while waiting out a 503 rejects', async () => {
    const controller = new AbortController()
    const sink = sinkFor({
      signal: controller.signal,
      backoff: { baseMs: 60_000, capMs: 60_000 },
      onRetry: () => setTimeout(() => controller.abort(), 5),
    })
    server.failNext(1000, 503)
    try {
      await expect(sink.write(freshNamespace(), [up(1, 'v1')])).rejects.toThrow()
    } finally {
      server.failNext(0)
    }
    expect(sink.stats().retries).toBe(1)
  })

  test('a row whose value conflicts with the schema is isolated: the others are written', async () => {
    const sink = sinkFor()
    const ns = freshNamespace()
    const ops = Array.from({ length: 40 }, (_, i) => up(i, 'v1', { n: i }))
    ops[17] = up(17, 'v1', { n: 'not a number' })
    const res = await sink.write(ns, ops, { schema: { n: 'int' } })
    expect(res.written).toBe(39)
    expect(res.failed).toHaveLength(1)
    expect(res.failed[0].op).toEqual(ops[17])
    expect(res.failed[0].status).toBe(400)
    expect(res.failed[0].error.length).toBeGreaterThan(0)
    const stored = await docs(sink, ns)
    expect(stored.size).toBe(39)
    expect(stored.has(17)).toBe(false)
  })

  test('a document larger than the server accepts (413) is isolated', async () => {
    const small = await startLocalServer({ apiKey: 'test-key', maxBodyBytes: 64 * 1024 })
    try {
      const sink = new TurbopufferSink({ api_key: 'test-key', base_url: small.url }, { backoff: fast })
      const ns = freshNamespace()
      const ops = Array.from({ length: 10 }, (_, i) => up(i, 'v1', { s: 'x'.repeat(100) }))
      ops[4] = up(4, 'v1', { s: 'x'.repeat(100 * 1024) })
      const res = await sink.write(ns, ops)
      expect(res.written).toBe(9)
      expect(res.failed.map((f) => [f.op.id, f.status])).toEqual([[4, 413]])
    } finally {
      await small.stop()
    }
  })

  test('a row whose documents together pass the request limit fails before it is sent; a smaller one is written', async () => {
    const small = await startLocalServer({ apiKey: 'test-key', maxBodyBytes: 64 * 1024 })
    try {
      const sink = new TurbopufferSink(
        { api_key: 'test-key', base_url: small.url },
        { backoff: fast, limits: { requestBytes: 64 * 1024 } },
      )
      const ns = freshNamespace()
      const row = (id: string, chunks: number): WriteOp => ({
        kind: 'row',
        id,
        version: 'v1',
        documents: Array.from(
          { length: chunks },
          (_, n) => ({ id: `${id}#${n}`, attributes: { s: 'x'.repeat(3_000) } }),
        ),
      })
      const res = await sink.write(ns, [row('big', 30), row('ok', 2)])
      expect(res.failed.map((f) => [f.op.id, f.status])).toEqual([['big', undefined]])
      expect(res.failed[0].error).toContain("over turbopuffer's request limit of 65536 bytes")
      expect(sink.stats().requests).toBe(1)
      expect([...(await docs(sink, ns)).keys()].sort()).toEqual(['ok#0', 'ok#1'])
    } finally {
      await small.stop()
    }
  })

  test('a refused API key rejects the write instead of dead-lettering every row', async () => {
    const sink = new TurbopufferSink({ api_key: 'wrong', base_url: server.url }, { backoff: fast })
    const err = await sink.write(freshNamespace(), [up(1, 'v1')]).catch((e) => e)
    expect(err).toBeInstanceOf(TurbopufferRequestError)
    expect(err.fatal).toBe(true)
    expect(err.status).toBe(401)
  })

  test('ops refused by the local checks fail without a request', async () => {
    const sink = sinkFor()
    const cycle: Record<string, unknown> = {}
    cycle.self = cycle
    const res = await sink.write(freshNamespace(), [up(1, 'v1', { cycle }), up('', 'v1')])
    expect(res.written).toBe(0)
    expect(res.failed.map((f) => f.op.id)).toEqual([1, ''])
    expect(sink.stats().requests).toBe(0)
  })

  test('a bad namespace name is an error, not a row failure', async () => {
    await expect(sinkFor().write('no spaces', [up(1, 'v1')])).rejects.toThrow('namespace "no spaces"')
  })
})

describe('request splitting', () => {
  test('a large batch is split by rows and by bytes', async () => {
    const sink = sinkFor({ limits: { maxRows: 100, maxBytes: 20_000 } })
    const ns = freshNamespace()
    const before = sink.stats().requests
    const writesBefore = server.stats().writes
    const res = await sink.write(ns, Array.from({ length: 250 }, (_, i) => up(i, 'v1', { i })))
    expect(res).toEqual({ written: 250, skipped: 0, failed: [] })
    expect(sink.stats().requests - before).toBe(3)

    // 5 kB strings are over turbopuffer's 4 KiB limit for filterable values: declared not filterable
    const bytes = await sink.write(
      ns,
      Array.from({ length: 10 }, (_, i) => up(1000 + i, 'v1', { s: 'y'.repeat(5000) })),
      { schema: { s: { type: 'string', filterable: false } } },
    )
    expect(bytes.written).toBe(10)
    // 10 rows of ~5 kB under a 20 kB budget: 3 rows per request
    expect(sink.stats().requests - before).toBe(3 + 4)
    expect(server.stats().writes - writesBefore).toBe(3 + 4)
    expect((await docs(sink, ns)).size).toBe(260)
  })

  test('`whole`: a refused request is not split to find the refused documents; all its ops come back failed', async () => {
    const sink = sinkFor()
    const ns = freshNamespace()
    const before = sink.stats().requests
    server.failNext(1, 400)
    const res = await sink.write(ns, [up(1, 'v1'), up(2, 'v1'), up(3, 'v1'), up(4, 'v1')], { whole: true })
    expect(res.written).toBe(0)
    expect(res.failed.map((f) => [f.op.id, f.status])).toEqual([[1, 400], [2, 400], [3, 400], [4, 400]])
    // one request: the caller (a tenant namespace whose types it assumed) writes them again once it knows why
    expect(sink.stats().requests - before).toBe(1)
    expect((await docs(sink, ns)).size).toBe(0)
  })
})

describe('writes in flight', () => {
  test('at most `writesInFlight` namespace writes at once; the rest wait (Bun queues past 256 with timeouts running)', async () => {
    const slow = await startLocalServer({ apiKey: 'test-key', latencyMs: 300 })
    try {
      const sink = new TurbopufferSink({ api_key: 'test-key', base_url: slow.url }, { writesInFlight: 2 })
      const started = performance.now()
      const all = await Promise.all(
        Array.from({ length: 6 }, (_, i) => sink.write(`inflight-${process.pid}-${i}`, [up(i, 'v1', { i })])),
      )
      expect(all.every((r) => r.written === 1)).toBe(true)
      // 6 writes of 300 ms, 2 at a time: three rounds (all at once: one round)
      expect(performance.now() - started).toBeGreaterThanOrEqual(850)
    } finally {
      await slow.stop()
    }
  })

  test("the default: on Bun its fetch's limit (BUN_CONFIG_MAX_HTTP_REQUESTS, else 256), elsewhere 1,024", () => {
    expect(defaultWritesInFlight({}, true)).toBe(256)
    expect(defaultWritesInFlight({ BUN_CONFIG_MAX_HTTP_REQUESTS: '1024' }, true)).toBe(1024)
    expect(defaultWritesInFlight({ BUN_CONFIG_MAX_HTTP_REQUESTS: 'lots' }, true)).toBe(256)
    expect(defaultWritesInFlight({ BUN_CONFIG_MAX_HTTP_REQUESTS: '64' }, false)).toBe(1024)
  })

  test('BUN_CONFIG_MAX_HTTP_REQUESTS read as Bun reads it: a value Bun refuses leaves its 256', () => {
    // what Bun 1.x made of each (its fetch's most requests at once against a slow server, measured)
    const bunTakes: [string, number][] = [
      ['+300', 300],
      ['1_0_0', 100],
      ['01024', 1024],
      ['65535', 65535],
      ['70000', 256],
      ['1e3', 256],
      [' 1024', 256],
      ['1024 ', 256],
      ['0x400', 256],
      ['0', 256],
      ['-5', 256],
      ['_1024', 256],
      ['1024_', 256],
      ['', 256],
    ]
    for (const [value, bun] of bunTakes) {
      expect([value, defaultWritesInFlight({ BUN_CONFIG_MAX_HTTP_REQUESTS: value }, true)]).toEqual([value, bun])
    }
  })
})

describe('truncate and reads', () => {
  test('deleteAllBefore removes older documents and keeps newer ones', async () => {
    const sink = sinkFor()
    const ns = freshNamespace()
    await sink.write(ns, [up(1, 'v1'), up(2, 'v2'), up(3, 'v3'), up(4, 'v1')])
    await sink.deleteAllBefore(ns, 'v2')
    expect([...(await docs(sink, ns)).keys()].sort()).toEqual([2, 3])
    // a namespace that does not exist is fine
    await sink.deleteAllBefore(freshNamespace(), 'v9')
  })

  test('listDocuments pages through more documents than a page, in id order, with chosen attributes', async () => {
    const sink = sinkFor()
    const ns = freshNamespace()
    const n = 2_345
    await sink.write(ns, Array.from({ length: n }, (_, i) => up(i, 'v1', { i, even: i % 2 === 0 })))
    const ids: unknown[] = []
    let sawOther = false
    for await (const row of sink.listDocuments(ns, { pageSize: 500, attributes: ['i'] })) {
      ids.push(row.id)
      if ('even' in row) sawOther = true
      if (row.i !== row.id) throw new Error(`row ${row.id} has i=${row.i}`)
    }
    expect(ids).toEqual(Array.from({ length: n }, (_, i) => i))
    expect(sawOther).toBe(false)
  })

  test('documentsAtVersions pages through the documents at the versions asked, with their row keys if asked', async () => {
    const sink = sinkFor()
    const ns = freshNamespace()
    const n = 2_345
    // ids past 2^53 (bigints) page exactly; other versions are left out
    const big = (i: number) => 2n ** 60n + BigInt(i)
    const ops: WriteOp[] = Array.from({ length: n }, (_, i) => ({
      kind: 'upsert' as const,
      id: big(i),
      version: i % 3 === 0 ? 'v1' : i % 3 === 1 ? 'v2' : 'v3',
      attributes: {},
    }))
    await sink.write(ns, ops)
    const found: unknown[] = []
    let pages = 0
    for await (const page of sink.documentsAtVersions(ns, ['v1', 'v3'], false)) {
      pages++
      for (const d of page) found.push([d.id, d.version, d.row])
    }
    expect(pages).toBe(2) // 1,564 documents, 1,000 a query
    const want = ops.filter((o) => o.version !== 'v2').map((o) => [o.id, o.version, undefined])
    expect(found).toEqual(want)
    // one version; row keys (row-documents mode)
    const rows = freshNamespace()
    await sink.write(rows, [
      {
        kind: 'row',
        id: '7',
        version: 'v1',
        documents: [{ id: '7#0', attributes: {} }, { id: '7#1', attributes: {} }],
      },
      { kind: 'row', id: '8', version: 'v2', documents: [{ id: '8#0', attributes: {} }] },
    ])
    const chunks: unknown[] = []
    for await (const page of sink.documentsAtVersions(rows, ['v1'], true)) chunks.push(...page)
    expect(chunks).toEqual([{ id: '7#0', version: 'v1', row: '7' }, { id: '7#1', version: 'v1', row: '7' }])
    // a namespace that does not exist has none
    for await (const page of sink.documentsAtVersions(freshNamespace(), ['v1'], false)) expect(page).toEqual([])
  })

  test('listDocuments of a namespace that does not exist yields nothing; deleteNamespace removes one', async () => {
    const sink = sinkFor()
    expect((await docs(sink, freshNamespace())).size).toBe(0)
    const ns = freshNamespace()
    await sink.write(ns, [up(1, 'v1')])
    await sink.deleteNamespace(ns)
    expect((await docs(sink, ns)).size).toBe(0)
    await sink.deleteNamespace(ns)
  })
})

test('DiscardSink counts everything as written', async () => {
  const sink = new DiscardSink()
  expect(await sink.write('x', [up(1, 'v1'), del(2, 'v1')])).toEqual({ written: 2, skipped: 0, failed: [] })
  await sink.deleteAllBefore('x', 'v1')
  expect(sink.stats()).toMatchObject({ written: 2 })
})
