// Issue 21: a long-lived AbortSignal (run's shutdown signal) must not collect a listener per request or per wait.
// The turbopuffer SDK adds an 'abort' listener (closing over the request's own AbortController) to the signal it is
// given and never removes it; handed the shutdown signal, every request stayed reachable for as long as `run` ran
// (~0.9 KB a change). Here the signal given to the real sink (against the local server, over real HTTP) and to the
// stream engine counts its live listeners: after hundreds of requests or waits there must be none left over.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import process from 'node:process'
import { withLinkedSignal } from '../src/abort.ts'
import { loadConfig } from '../src/config/load.ts'
import { EmbeddingError, requestEmbeddings } from '../src/embeddings/provider.ts'
import { startLocalServer } from '../src/local/server.ts'
import { serveHttp } from '../src/runtime.ts'
import { runStream } from '../src/stream/mod.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import { usePipeline } from './harness/pipeline.ts'
import { quietLogger } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'
import { up } from './harness/write-ops.ts'

/** An AbortController whose signal counts the 'abort' listeners added to it and not yet removed. */
function countingController() {
  const ctl = new AbortController()
  const signal = ctl.signal
  const live = new Set<unknown>()
  let added = 0
  const add = signal.addEventListener.bind(signal)
  const remove = signal.removeEventListener.bind(signal)
  // listeners run once, at abort, and are dropped by then ({ once: true }) or never run again
  add('abort', () => live.clear())
  signal.addEventListener = ((type: string, l: EventListenerOrEventListenerObject, o?: AddEventListenerOptions) => {
    if (type === 'abort') live.add(l), added++
    add(type, l, o)
  }) as typeof signal.addEventListener
  signal.removeEventListener = ((type: string, l: EventListenerOrEventListenerObject, o?: EventListenerOptions) => {
    if (type === 'abort') live.delete(l)
    remove(type, l, o)
  }) as typeof signal.removeEventListener
  return { ctl, signal, live: () => live.size, added: () => added }
}

describe('the sink leaves no listener on its shutdown signal', () => {
  let server: Awaited<ReturnType<typeof startLocalServer>>
  beforeAll(async () => {
    server = await startLocalServer({ apiKey: 'test-key' })
  })
  afterAll(async () => {
    await server.stop()
  })

  test('after 300 writes, queries, schema reads and deletes, and retries of a 503', async () => {
    const shutdown = countingController()
    const sink = new TurbopufferSink({ api_key: 'test-key', base_url: server.url }, {
      signal: shutdown.signal,
      backoff: { baseMs: 1, capMs: 5 },
    })
    const ns = `signal-listeners-${process.pid}`
    for (let i = 0; i < 300; i++) {
      const r = await sink.write(ns, [up(i % 50, `v${String(i).padStart(4, '0')}`, { body: 'x'.repeat(100) })])
      expect(r.failed).toEqual([])
    }
    let listed = 0
    for await (const _ of sink.listDocuments(ns, { pageSize: 10 })) listed++
    expect(listed).toBe(50)
    expect(Object.keys(await sink.attributeTypes(ns))).toContain('body')
    // failures retried: each attempt is a request of its own
    server.failNext(20, 503)
    for (let i = 0; i < 20; i++) await sink.write(ns, [up(1000 + i, 'v9999', { body: 'y' })])
    expect(sink.stats().retries).toBeGreaterThanOrEqual(20)
    await sink.deleteAllBefore(ns, 'v0100')
    await sink.deleteNamespace(ns)

    const requests = sink.stats().requests
    expect(requests).toBeGreaterThan(300)
    // on the code before the fix: one listener per request (~330); now the one that fans out to the requests in
    // flight (src/abort.ts), whatever their number
    expect(shutdown.live()).toBeLessThanOrEqual(1)
    // the requests were linked to the shutdown signal by that one listener (not a sink that ignores the signal: the
    // next test aborts a request); each wait between retries adds one of its own and takes it off again
    expect(shutdown.added()).toBeGreaterThanOrEqual(1)
    expect(shutdown.added()).toBeLessThanOrEqual(1 + sink.stats().retries)
  })

  test('the shutdown signal still aborts a request in flight', async () => {
    const slow = await startLocalServer({ apiKey: 'test-key', latencyMs: 3_000 })
    try {
      const shutdown = countingController()
      const sink = new TurbopufferSink({ api_key: 'test-key', base_url: slow.url }, { signal: shutdown.signal })
      const started = performance.now()
      const write = sink.write(`signal-abort-${process.pid}`, [up(1, 'v1', { body: 'x' })])
      setTimeout(() => shutdown.ctl.abort(new Error('shutting down')), 100)
      await expect(write).rejects.toThrow('shutting down')
      expect(performance.now() - started).toBeLessThan(1_500)
      expect(shutdown.live()).toBe(0)
    } finally {
      await slow.stop()
    }
  })

  test('withLinkedSignal: the work sees its parent abort with the parent reason; a settled one is unlinked', async () => {
    const parent = countingController()
    for (let i = 0; i < 100; i++) await withLinkedSignal(parent.signal, async (s) => expect(s!.aborted).toBe(false))
    // one listener on the parent for all of them, not one per piece of work
    expect(parent.added()).toBe(1)
    const seen = withLinkedSignal(
      parent.signal,
      (s) => new Promise<unknown>((resolve) => s!.addEventListener('abort', () => resolve(s!.reason), { once: true })),
    )
    parent.ctl.abort(new Error('stop'))
    expect(((await seen) as Error).message).toBe('stop')
    expect(await withLinkedSignal(parent.signal, async (s) => s!.aborted)).toBe(true)
    expect(await withLinkedSignal(undefined, async (s) => s)).toBeUndefined()
  })
})

describe('a hot standby leaves no listener on its run signal', () => {
  const pipe = usePipeline({ name: 'standby_listeners', sql: 'CREATE TABLE items (id int PRIMARY KEY, name text)' })

  test('waiting 200 times for a slot in use adds no listener for good', async () => {
    await pipe.startStream()
    const stop = countingController()
    const logs: string[] = []
    const standby = runStream(loadConfig(pipe.project.config, process.env), {
      slot: 'puffgres',
      createSlot: true,
      standbyRetryMs: 5,
      pollIntervalMs: 50,
      batchSize: 1000,
      signal: stop.signal,
      log: quietLogger(logs),
    })
    standby.catch(() => {})
    try {
      await waitFor('the standby to wait', () => logs.some((l) => l.includes('waiting as a hot standby')), 20_000)
      // each look for the slot is a query and a replication connection: a few ms each
      await waitFor('200 waits', () => stop.added() >= 200, 60_000)
      // the engine's own listener while it streams is the only one allowed (none while it waits)
      expect(stop.live()).toBeLessThanOrEqual(1)
    } finally {
      stop.ctl.abort()
      await standby
    }
    expect(stop.live()).toBe(0)
  }, 90_000)
})

describe('embedding requests time out without AbortSignal.timeout', () => {
  test('a provider slower than requestTimeoutMs: each attempt times out, the error says so', async () => {
    const slow = await serveHttp({
      port: 0,
      hostname: '127.0.0.1',
      fetch: () => new Promise<Response>((r) => setTimeout(() => r(Response.json({ data: [] })), 1_000)),
    })
    try {
      const counters = { requests: 0, retries: 0 }
      const started = performance.now()
      const err = await requestEmbeddings(
        { type: 'openai', model: 'm', api_key: 'k', base_url: `http://127.0.0.1:${slow.port}/v1` },
        ['a'],
        { maxRetries: 1, baseDelayMs: 1, maxDelayMs: 1, maxRetryAfterMs: 1, requestTimeoutMs: 150 },
        counters,
      ).catch((e) => e)
      expect(err).toBeInstanceOf(EmbeddingError)
      expect(err.message).toContain('failed after 2 attempts: no answer within 150 ms')
      expect(err.retryable).toBe(true)
      expect(counters.requests).toBe(2)
      expect(performance.now() - started).toBeLessThan(900)
    } finally {
      await slow.stop()
    }
  })
})
