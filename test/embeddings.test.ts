import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { applyEmbedding, embeddingText } from '../src/pipeline/transform/declarative-embedding.ts'
import { createEmbedder, type EmbedderOptions, EmbeddingError, embedHash } from '../src/embeddings/embedder.ts'
import { LruCache } from '../src/embeddings/lru.ts'
import { DEFAULT_BASE_URLS, retryAfterMs } from '../src/embeddings/provider.ts'
import type { TransformResult } from '../src/pipeline/transform/action.ts'
import { EMBED_HASH_ATTR, type RowEvent } from '../src/types.ts'

const hash = (text: string) => embedHash('test-model', text)
import { type EmbeddingServer, expectedVector, startEmbeddingServer } from './fixtures/transforms/embedding-server.ts'

let server: EmbeddingServer
beforeAll(async () => {
  server = await startEmbeddingServer('secret-key')
})
afterAll(() => server.close())
beforeEach(() => {
  server.requests.length = 0
})

const fast: EmbedderOptions = { baseDelayMs: 1, maxDelayMs: 5 }
function embedder(opts: EmbedderOptions = {}, key = 'secret-key') {
  return createEmbedder({ type: 'openai', model: 'test-model', api_key: key, base_url: server.url }, {
    ...fast,
    ...opts,
  })
}

describe('embedder', () => {
  test('splits N texts into ceil(N/limit) requests, returns vectors in input order, sends the key', async () => {
    // the metrics hear of each request once, though the three are in flight together
    const heard = { requests: 0, texts: 0, tokens: 0 }
    const observer = {
      requests: (n: number) => void (heard.requests += n),
      texts: (n: number) => void (heard.texts += n),
      tokens: (n: number) => void (heard.tokens += n),
      skipped: () => {},
    }
    const e = embedder({ maxBatchSize: 4, observer })
    const texts = Array.from({ length: 10 }, (_, i) => `text ${i}`)
    const vectors = await e.embed(texts)
    expect(heard).toEqual({ requests: 3, texts: 10, tokens: 20 })
    expect(vectors).toEqual(texts.map((t) => expectedVector(t)))
    // the requests go out at once: they may arrive in any order
    expect(server.requests.map((r) => r.input.length).sort()).toEqual([2, 4, 4])
    expect(server.requests.every((r) => r.authorization === 'Bearer secret-key' && r.model === 'test-model')).toBe(true)
    expect(e.stats()).toEqual({ requests: 3, retries: 0, texts: 10, cacheHits: 0, tokens: 20, storedHits: 0 })
  })

  test("the provider config's batch_size sets the request size", async () => {
    const e = createEmbedder({
      type: 'openai',
      model: 'test-model',
      api_key: 'secret-key',
      base_url: server.url,
      batch_size: 2,
    })
    await e.embed(['p', 'q', 'r'])
    // in any order (they go out at once)
    expect(server.requests.map((r) => r.input).sort((a, b) => b.length - a.length)).toEqual([['p', 'q'], ['r']])
  })

  test('merges calls made by many rows in the same tick into one request', async () => {
    const e = embedder()
    const texts = ['a', 'b', 'c', 'd', 'e']
    const vectors = await Promise.all(texts.map((t) => e.embed([t])))
    expect(vectors.map((v) => v[0])).toEqual(texts.map((t) => expectedVector(t)))
    expect(server.requests).toHaveLength(1)
    expect(server.requests[0].input).toEqual(texts)
  })

  test('an unchanged text costs nothing: cache hits, and duplicates in flight are sent once', async () => {
    const e = embedder()
    await e.embed(['same', 'same', 'other'])
    expect(server.requests).toHaveLength(1)
    expect(server.requests[0].input).toEqual(['same', 'other'])
    const again = await e.embed(['other', 'same'])
    expect(again).toEqual([expectedVector('other'), expectedVector('same')])
    expect(server.requests).toHaveLength(1)
    expect(e.stats()).toEqual({ requests: 1, retries: 0, texts: 2, cacheHits: 3, tokens: 3, storedHits: 0 })
  })

  test('the cache is bounded: the least recently used text is evicted', async () => {
    const e = embedder({ cacheEntries: 2 })
    await e.embed(['one'])
    await e.embed(['two'])
    await e.embed(['one']) // hit: 'two' is now the oldest
    await e.embed(['three']) // evicts 'two'
    await e.embed(['one'])
    expect(server.requests).toHaveLength(3)
    await e.embed(['two'])
    expect(server.requests).toHaveLength(4)
  })

  test('retries 429 (honouring Retry-After) and 500, then succeeds', async () => {
    const e = embedder()
    server.failNext({ status: 429, retryAfter: '1' }, { status: 500 })
    const started = Date.now()
    expect(await e.embed(['retry me'])).toEqual([expectedVector('retry me')])
    // the backoff here is at most 5 ms: only the Retry-After of 1 s makes the call take a second
    expect(Date.now() - started).toBeGreaterThanOrEqual(990)
    expect(server.requests).toHaveLength(3)
    expect(e.stats()).toMatchObject({ requests: 3, retries: 2, texts: 1 })
  })

  test('retries a dropped connection', async () => {
    const e = embedder()
    server.dropNext()
    expect(await e.embed(['dropped once'])).toEqual([expectedVector('dropped once')])
    expect(e.stats().retries).toBe(1)
  })

  test('gives up after maxRetries with a retryable error, and forgets the failure', async () => {
    const e = embedder({ maxRetries: 2 })
    server.failNext({ status: 503 }, { status: 503 }, { status: 503 })
    const err = await e.embed(['down']).catch((x) => x)
    expect(err).toBeInstanceOf(EmbeddingError)
    expect(err.retryable).toBe(true)
    expect(err.message).toContain('failed after 3 attempts: HTTP 503: planned failure 503')
    // the next call asks again instead of replaying the failure
    expect(await e.embed(['down'])).toEqual([expectedVector('down')])
  })

  test('a 4xx is permanent: no retry, the provider message in the error', async () => {
    const e = embedder({}, 'wrong-key')
    const err = await e.embed(['x']).catch((x) => x)
    expect(err).toBeInstanceOf(EmbeddingError)
    expect(err.retryable).toBe(false)
    expect(err.message).toContain('HTTP 401: Incorrect API key provided')
    expect(server.requests).toHaveLength(1)
  })

  test('rejects bad configuration and non-string input with clear errors', async () => {
    expect(() => createEmbedder({ type: 'cohere' as 'openai', model: 'm', api_key: 'k' })).toThrow(
      "embeddings: type must be 'together' or 'openai', got \"cohere\"",
    )
    expect(() => createEmbedder({ type: 'together', model: '', api_key: 'k' })).toThrow('model is required')
    expect(() => createEmbedder({ type: 'together', model: 'm', api_key: '' })).toThrow('api_key is required')
    expect(() => createEmbedder({ type: 'openai', model: 'm', api_key: 'k', base_url: 'ftp://x' })).toThrow('base_url')
    expect(DEFAULT_BASE_URLS).toEqual({ together: 'https://api.together.xyz/v1', openai: 'https://api.openai.com/v1' })
    const err = await embedder().embed(['ok', null as unknown as string]).catch((x) => x)
    expect(err.message).toBe('embed: texts[1] is null, not a string')
    expect(await embedder().embed([])).toEqual([])
  })

  test('Retry-After in seconds, milliseconds and as an HTTP date', () => {
    expect(retryAfterMs(new Headers({ 'retry-after': '2' }))).toBe(2000)
    expect(retryAfterMs(new Headers({ 'retry-after-ms': '150', 'retry-after': '9' }))).toBe(150)
    const now = Date.parse('2025-01-01T00:00:00Z')
    expect(retryAfterMs(new Headers({ 'retry-after': 'Wed, 01 Jan 2025 00:00:03 GMT' }), now)).toBe(3000)
    expect(retryAfterMs(new Headers({}))).toBeUndefined()
  })
})

describe('LruCache', () => {
  test('evicts by entry count and refreshes on get', () => {
    const c = new LruCache<string, number>(2)
    c.set('a', 1)
    c.set('b', 2)
    expect(c.get('a')).toBe(1)
    c.set('c', 3)
    expect(c.get('b')).toBeUndefined()
    expect(c.get('a')).toBe(1)
    expect(c.size).toBe(2)
  })
})

function event(id: number, type: RowEvent['type'], row?: Record<string, unknown>): RowEvent {
  return { type, op: type, id, schema: 'public', table: 'products', new: row, lsn: '0/1', mapping: 'products' }
}
const upsert = (id: number, attributes: Record<string, unknown> = {}): TransformResult => ({
  ok: true,
  action: { type: 'upsert', id, attributes },
})

describe('declarative [mapping.embedding]', () => {
  test('joins the source columns, embeds a whole batch in one call, sets the vector of upserts only', async () => {
    const e = embedder()
    const events = [
      event(1, 'insert', { title: 'Red chair', body: 'Oak' }),
      event(2, 'delete'),
      event(3, 'update', { title: 'Blue lamp', body: null }),
      event(4, 'insert', { title: 'Skipped', body: 'x' }),
    ]
    const results: TransformResult[] = [
      upsert(1),
      { ok: true, action: { type: 'delete', id: 2 } },
      upsert(3),
      { ok: true, action: { type: 'skip' } },
    ]
    const out = await applyEmbedding(results, events, { source: ['title', 'body'] }, e)
    expect(out[0]).toEqual({
      ok: true,
      action: {
        type: 'upsert',
        id: 1,
        attributes: { [EMBED_HASH_ATTR]: hash('Red chair\n\nOak') },
        vector: expectedVector('Red chair\n\nOak'),
      },
    })
    expect(out[1]).toEqual(results[1])
    expect(out[2]).toEqual({
      ok: true,
      action: {
        type: 'upsert',
        id: 3,
        attributes: { [EMBED_HASH_ATTR]: hash('Blue lamp') },
        vector: expectedVector('Blue lamp'),
      },
    })
    expect(out[3]).toEqual(results[3])
    expect(server.requests).toHaveLength(1)
    expect(server.requests[0].input).toEqual(['Red chair\n\nOak', 'Blue lamp'])
  })

  test('another attribute name stores the vector as an attribute; missing or empty text fails that row only', async () => {
    const e = embedder()
    const events = [
      event(1, 'insert', { d: 'fine' }),
      event(2, 'insert', { other: 1 }),
      event(3, 'insert', { d: '  ' }),
    ]
    const out = await applyEmbedding([upsert(1, { a: 1 }), upsert(2), upsert(3)], events, {
      source: 'd',
      attribute: 'd_vec',
    }, e)
    expect(out[0]).toEqual({
      ok: true,
      action: {
        type: 'upsert',
        id: 1,
        attributes: {
          a: 1,
          d_vec: expectedVector('fine'),
          [EMBED_HASH_ATTR]: embedHash('test-model', 'fine', 'd_vec'),
        },
      },
    })
    expect(out[1]).toEqual({
      ok: false,
      error: 'id 2: embedding source column "d" is not in the row (unknown column or unchanged TOAST value)',
    })
    expect(out[2]).toEqual({ ok: false, error: 'id 3: embedding source "d" is empty' })
  })

  test('embeddings paid once: the cache first, then the stored hashes; only the texts left go to the provider', async () => {
    const e = embedder()
    await e.embed(['cached text'])
    const events = [
      event(1, 'insert', { d: 'cached text' }),
      event(2, 'insert', { d: 'stored text' }),
      event(3, 'insert', { d: 'new text' }),
      event(4, 'insert', { d: 'changed text' }),
    ]
    const asked: unknown[][] = []
    const stored = (ids: unknown[]) => {
      asked.push(ids)
      return Promise.resolve(new Map([['n2', hash('stored text')], ['n4', hash('old text')]]))
    }
    const out = await applyEmbedding([upsert(1), upsert(2), upsert(3), upsert(4)], events, { source: 'd' }, e, stored)
    // one lookup, of the documents the cache did not answer
    expect(asked).toEqual([[2, 3, 4]])
    expect(server.requests.map((r) => r.input)).toEqual([['cached text'], ['new text', 'changed text']])
    const action = (k: number) => (out[k] as { action: Record<string, unknown> }).action
    expect(action(0).vector).toEqual(expectedVector('cached text'))
    // the stored document has the vector of this text: written without one, marked to be patched
    expect(action(1)).toEqual({
      type: 'upsert',
      id: 2,
      attributes: { [EMBED_HASH_ATTR]: hash('stored text') },
      stored: { text: 'stored text', attribute: 'vector' },
    })
    expect(action(2).vector).toEqual(expectedVector('new text'))
    expect(action(3)).toMatchObject({
      vector: expectedVector('changed text'),
      attributes: { [EMBED_HASH_ATTR]: hash('changed text') },
    })
    // the stored hits are counted by the writer once the patches are written (test/embed-once.test.ts)
    expect(e.stats()).toMatchObject({ texts: 3, cacheHits: 1, storedHits: 0 })
    // a lookup that fails costs provider calls, not the rows
    const failing = () => Promise.reject(new Error('refused'))
    const again = await applyEmbedding([upsert(5)], [event(5, 'insert', { d: 'other' })], { source: 'd' }, e, failing)
    expect(again[0]).toMatchObject({ ok: true, action: { vector: expectedVector('other') } })
  })

  test('embeddings paid once: a stored hash of the same text embedded into another attribute is no match', async () => {
    // [mapping.embedding] attribute changed (vector -> emb) in a new version into the same namespace: the stored
    // document has the text's vector in `vector`, none in `emb`; a patch would keep that and leave `emb` unset
    const e = embedder()
    const stored = () => Promise.resolve(new Map([['n1', hash('same text')]]))
    const out = await applyEmbedding(
      [upsert(1)],
      [event(1, 'insert', { d: 'same text' })],
      {
        source: 'd',
        attribute: 'emb',
      },
      e,
      stored,
    )
    expect(out[0]).toMatchObject({ ok: true, action: { attributes: { emb: expectedVector('same text') } } })
    expect((out[0] as { action: Record<string, unknown> }).action.stored).toBeUndefined()
    expect(server.requests.map((r) => r.input)).toEqual([['same text']])
    // and back: a stored hash of the text embedded into `emb` is no match for `vector`
    const back = () => Promise.resolve(new Map([['n1', embedHash('test-model', 'same text', 'emb')]]))
    const again = await applyEmbedding([upsert(1)], [event(1, 'insert', { d: 'same text' })], { source: 'd' }, e, back)
    expect(again[0]).toMatchObject({ ok: true, action: { vector: expectedVector('same text') } })
    expect(embedHash('test-model', 'same text', 'emb')).not.toBe(hash('same text'))
    expect(embedHash('test-model', 'same text', 'vector')).toBe(hash('same text'))
  })

  test('embeddings paid once: a document that also writes its own vector is never patched (a patch cannot set one)', async () => {
    // `[mapping.embedding] attribute = "emb"` and a document vector of its own (a pgvector column named `vector`, or a
    // transform's): a patch keeps the stored vector, so the new one would be dropped and the old one kept
    const e = embedder()
    const stored = () => Promise.resolve(new Map([['n1', embedHash('test-model', 'same text', 'emb')]]))
    const own: TransformResult = { ok: true, action: { type: 'upsert', id: 1, attributes: {}, vector: [0.5, 0.5] } }
    const out = await applyEmbedding(
      [own],
      [event(1, 'insert', { d: 'same text' })],
      {
        source: 'd',
        attribute: 'emb',
      },
      e,
      stored,
    )
    const action = (out[0] as { action: Record<string, unknown> }).action
    expect(action.stored).toBeUndefined()
    expect(action).toMatchObject({ vector: [0.5, 0.5], attributes: { emb: expectedVector('same text') } })
  })

  test('a provider outage fails the rows as retryable', async () => {
    const e = embedder({ maxRetries: 0 })
    server.failNext({ status: 500 })
    const out = await applyEmbedding([upsert(1)], [event(1, 'insert', { d: 'x' })], { source: 'd' }, e)
    expect(out[0]).toMatchObject({ ok: false, retryable: true })
  })

  test('embeddingText renders non-string values', () => {
    expect(embeddingText({ n: 5, tags: ['a', 'b'], big: 12n }, { source: ['n', 'tags', 'big'] })).toBe(
      '5\n\n["a","b"]\n\n12',
    )
  })
})
