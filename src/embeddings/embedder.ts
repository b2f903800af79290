// The embedder used by `ctx.embed` and by declarative `[mapping.embedding]`. Texts asked for by many rows in flight
// are merged into few HTTP requests: calls made within `flushDelayMs` share a queue that is sent in chunks of
// `maxBatchSize`. Vectors are cached by content hash, and a text already queued or in flight is not asked twice.
import { createHash } from 'node:crypto'
import type { Logger } from '../types.ts'
import { LruCache } from './lru.ts'
import {
  DEFAULT_BASE_URLS,
  EmbeddingError,
  type EmbeddingProviderConfig,
  type RequestCounters,
  requestEmbeddings,
  type RetryPolicy,
} from './provider.ts'

export { EmbeddingError, type EmbeddingProviderConfig }

export interface EmbedderStats {
  /** HTTP requests sent, retries included */
  requests: number
  /** requests that were retries */
  retries: number
  /** texts sent to the provider */
  texts: number
  /** texts answered from the cache or by a request already in flight */
  cacheHits: number
  /** tokens the provider reported using (0 when it does not report usage) */
  tokens: number
  /** texts not sent because the stored document already has their vector (embeddings paid once) */
  storedHits: number
}

/** Told of every request, text, token and skip as it happens: `puffgres run`'s metrics (stream/stream-monitor.ts). */
export interface EmbeddingObserver {
  requests(n: number): void
  texts(n: number): void
  tokens(n: number): void
  skipped(reason: 'cache' | 'stored', n: number): void
}

export interface Embedder {
  readonly model: string
  /** One vector per text, in order. Vectors may be shared between callers: do not mutate them. */
  embed(texts: string[]): Promise<number[][]>
  /** The vector of `text` when the cache has it (counted as a cache hit), without asking the provider. */
  cached(text: string): number[] | undefined
  /** Counts `n` texts not sent because their stored documents already have the vector (embeddings paid once). */
  storedHits(n: number): void
  stats(): EmbedderStats
}

export interface EmbedderOptions {
  /** inputs per HTTP request (default 128) */
  maxBatchSize?: number
  /** how long to wait for more texts before sending (default 2 ms) */
  flushDelayMs?: number
  /** cached vectors (default 10 000; 0 disables the cache) */
  cacheEntries?: number
  /** retries after the first attempt (default 8) */
  maxRetries?: number
  /** first backoff step (default 250 ms), doubled per retry up to `maxDelayMs` (default 20 s) */
  baseDelayMs?: number
  maxDelayMs?: number
  /** a longer Retry-After is cut to this (default 60 s) */
  maxRetryAfterMs?: number
  /** per HTTP request (default 60 s) */
  requestTimeoutMs?: number
  log?: Logger
  observer?: EmbeddingObserver
}

interface Waiter {
  key: string
  text: string
  resolve(v: number[]): void
  reject(e: unknown): void
}

/** Throws a one-line error naming the field when the provider config is unusable. */
export function validateProviderConfig(config: EmbeddingProviderConfig): void {
  if (!config || !(config.type in DEFAULT_BASE_URLS)) {
    throw new Error(`embeddings: type must be 'together' or 'openai', got ${JSON.stringify(config?.type)}`)
  }
  if (typeof config.model !== 'string' || config.model === '') throw new Error('embeddings: model is required')
  if (typeof config.api_key !== 'string' || (config.api_key === '' && !config.base_url)) {
    throw new Error(`embeddings: api_key is required for ${config.type} (is its environment variable set?)`)
  }
  if (config.base_url !== undefined) {
    let ok = false
    try {
      ok = ['http:', 'https:'].includes(new URL(config.base_url).protocol)
    } catch { /* reported below */ }
    if (!ok) throw new Error(`embeddings: base_url is not an http(s) URL: ${config.base_url}`)
  }
}

export function createEmbedder(config: EmbeddingProviderConfig, opts: EmbedderOptions = {}): Embedder {
  validateProviderConfig(config)
  const maxBatchSize = opts.maxBatchSize ?? config.batch_size ?? 128
  if (!(maxBatchSize >= 1)) throw new Error(`embeddings: batch size must be >= 1, got ${maxBatchSize}`)
  const flushDelayMs = opts.flushDelayMs ?? 2
  const policy: RetryPolicy = {
    maxRetries: opts.maxRetries ?? 8,
    baseDelayMs: opts.baseDelayMs ?? 250,
    maxDelayMs: opts.maxDelayMs ?? 20_000,
    maxRetryAfterMs: opts.maxRetryAfterMs ?? 60_000,
    requestTimeoutMs: opts.requestTimeoutMs ?? 60_000,
  }
  const cache = new LruCache<string, number[]>(opts.cacheEntries ?? 10_000)
  const counters: RequestCounters & { texts: number; cacheHits: number; tokens: number; storedHits: number } = {
    requests: 0,
    retries: 0,
    texts: 0,
    cacheHits: 0,
    tokens: 0,
    storedHits: 0,
  }
  const observer = opts.observer
  const cacheHit = () => {
    counters.cacheHits++
    observer?.skipped('cache', 1)
  }
  const inFlight = new Map<string, Promise<number[]>>()
  let queue: Waiter[] = []
  let timer: ReturnType<typeof setTimeout> | undefined

  const keyOf = (text: string) => createHash('sha256').update(config.model).update('\0').update(text).digest('base64')

  function send(chunk: Waiter[]): void {
    counters.texts += chunk.length
    observer?.texts(chunk.length)
    // this request's own counters (others run at the same time), added up as it ends
    const mine: RequestCounters = { requests: 0, retries: 0, tokens: 0 }
    const settled = () => {
      counters.requests += mine.requests
      counters.retries += mine.retries
      counters.tokens += mine.tokens!
      observer?.requests(mine.requests)
      if (mine.tokens) observer?.tokens(mine.tokens)
    }
    requestEmbeddings(config, chunk.map((w) => w.text), policy, mine, opts.log).finally(settled).then(
      (vectors) => {
        for (let i = 0; i < chunk.length; i++) {
          cache.set(chunk[i].key, vectors[i])
          inFlight.delete(chunk[i].key)
          chunk[i].resolve(vectors[i])
        }
      },
      (err) => {
        for (const w of chunk) {
          inFlight.delete(w.key)
          w.reject(err)
        }
      },
    )
  }

  function flush(): void {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    const q = queue
    queue = []
    for (let i = 0; i < q.length; i += maxBatchSize) send(q.slice(i, i + maxBatchSize))
  }

  function enqueue(key: string, text: string): Promise<number[]> {
    const p = new Promise<number[]>((resolve, reject) => queue.push({ key, text, resolve, reject }))
    inFlight.set(key, p)
    if (queue.length >= maxBatchSize) {
      // a full request is ready: send it now, keep the rest waiting for company
      const full = queue.splice(0, maxBatchSize)
      send(full)
    }
    if (queue.length > 0 && timer === undefined) timer = setTimeout(flush, flushDelayMs)
    return p
  }

  return {
    model: config.model,
    embed(texts: string[]): Promise<number[][]> {
      if (!Array.isArray(texts)) return Promise.reject(new TypeError('embed: expected a string or an array of strings'))
      for (let i = 0; i < texts.length; i++) {
        const text = texts[i]
        if (typeof text !== 'string') {
          return Promise.reject(
            new TypeError(`embed: texts[${i}] is ${text === null ? 'null' : typeof text}, not a string`),
          )
        }
      }
      const out = new Array<number[] | Promise<number[]>>(texts.length)
      let waiting = false
      for (let i = 0; i < texts.length; i++) {
        const text = texts[i]
        const key = keyOf(text)
        const hit = cache.get(key) ?? inFlight.get(key)
        if (hit) cacheHit()
        const v = hit ?? enqueue(key, text)
        out[i] = v
        if (v instanceof Promise) waiting = true
      }
      return waiting ? Promise.all(out) : Promise.resolve(out as number[][])
    },
    cached(text: string): number[] | undefined {
      const v = cache.get(keyOf(text))
      if (v) cacheHit()
      return v
    },
    storedHits(n: number): void {
      counters.storedHits += n
      observer?.skipped('stored', n)
    },
    stats: () => ({ ...counters }),
  }
}

/**
 * The `EMBED_HASH_ATTR` of a text: hex sha256 of `model + "\n" + text`, its first 32 digits. A vector stored in
 * another attribute than `vector` (`[mapping.embedding] attribute`) hashes that name and a NUL byte first: a document
 * whose vector of the same text is in another attribute (the attribute changed in a new mapping version into the same
 * namespace) is no match, as a patch would keep the vector where it was and leave the new attribute unset.
 */
export function embedHash(model: string, text: string, attribute = 'vector'): string {
  const h = createHash('sha256')
  if (attribute !== 'vector') h.update(attribute).update('\0')
  return h.update(model).update('\n').update(text).digest('hex').slice(0, 32)
}

export function isRetryableEmbeddingError(err: unknown): boolean {
  return err instanceof EmbeddingError && err.retryable
}
