// One embeddings request to an OpenAI-compatible API (OpenAI, Together), retried on 429, 5xx and network errors
// with capped exponential backoff and jitter, honouring Retry-After.
import { fetchWithin } from '../abort.ts'
import type { Logger } from '../types.ts'
import { backoffDelay, sleep } from '../retry.ts'

export interface EmbeddingProviderConfig {
  type: 'together' | 'openai'
  model: string
  api_key: string
  /** defaults to the provider's public API */
  base_url?: string
  /** inputs per request; `EmbedderOptions.maxBatchSize` wins over it (default 128) */
  batch_size?: number
}

export const DEFAULT_BASE_URLS: Record<EmbeddingProviderConfig['type'], string> = {
  together: 'https://api.together.xyz/v1',
  openai: 'https://api.openai.com/v1',
}

/** `retryable` is true when the provider was unavailable (retries exhausted), false when it refused the input. */
export class EmbeddingError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message)
    this.name = 'EmbeddingError'
  }
}

export interface RetryPolicy {
  /** retries after the first attempt */
  maxRetries: number
  baseDelayMs: number
  maxDelayMs: number
  /** a Retry-After longer than this is cut to it */
  maxRetryAfterMs: number
  requestTimeoutMs: number
}

export interface RequestCounters {
  requests: number
  retries: number
  /** tokens the provider reports it used (`usage.total_tokens`, else `usage.prompt_tokens`), when it reports them */
  tokens?: number
}

/** The tokens an answer's `usage` reports (OpenAI and Together: `total_tokens`, `prompt_tokens`); 0 when absent. */
function usageTokens(json: unknown): number {
  const usage = (json as { usage?: { total_tokens?: unknown; prompt_tokens?: unknown } })?.usage
  const n = usage?.total_tokens ?? usage?.prompt_tokens
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : 0
}

const RETRYABLE_STATUS = new Set([408, 409, 425, 429, 500, 502, 503, 504])

function backoffMs(attempt: number, p: RetryPolicy): number {
  return backoffDelay(attempt, { baseMs: p.baseDelayMs, maxMs: p.maxDelayMs, jitter: 'equal' })
}

/** Retry-After in ms from `retry-after-ms`, or `retry-after` as seconds or an HTTP date; undefined when absent. */
export function retryAfterMs(headers: Headers, now = Date.now()): number | undefined {
  const ms = Number(headers.get('retry-after-ms') ?? NaN)
  if (Number.isFinite(ms) && ms >= 0) return ms
  const v = headers.get('retry-after')
  if (!v) return undefined
  const secs = Number(v)
  if (Number.isFinite(secs) && secs >= 0) return secs * 1000
  const date = Date.parse(v)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

function providerMessage(body: string): string {
  try {
    const j = JSON.parse(body)
    const m = j?.error?.message ?? j?.error ?? j?.message
    if (typeof m === 'string') return m
  } catch { /* not JSON: use the text */ }
  return body.slice(0, 300).replace(/\s+/g, ' ').trim()
}

function parseVectors(json: unknown, count: number): number[][] {
  const data = (json as { data?: unknown })?.data
  if (!Array.isArray(data)) throw new Error('response has no "data" array')
  if (data.length !== count) throw new Error(`response has ${data.length} embeddings for ${count} inputs`)
  const out = new Array<number[]>(count)
  for (let i = 0; i < data.length; i++) {
    const item = data[i] as { embedding?: unknown; index?: unknown }
    const index = typeof item?.index === 'number' ? item.index : i
    if (!Number.isInteger(index) || index < 0 || index >= count || out[index]) {
      throw new Error(`response data[${i}].index ${JSON.stringify(item?.index)} is out of range or repeated`)
    }
    const v = item.embedding
    if (!Array.isArray(v) || v.length === 0 || typeof v[0] !== 'number') {
      throw new Error(`response data[${i}].embedding is not an array of numbers (encoding_format must be float)`)
    }
    out[index] = v as number[]
  }
  return out
}

/** POSTs `{ model, input }` to `{base}/embeddings`; resolves with one vector per input, in input order. */
export async function requestEmbeddings(
  config: EmbeddingProviderConfig,
  input: string[],
  policy: RetryPolicy,
  counters: RequestCounters,
  log?: Logger,
): Promise<number[][]> {
  const base = (config.base_url ?? DEFAULT_BASE_URLS[config.type]).replace(/\/+$/, '')
  const url = `${base}/embeddings`
  const body = JSON.stringify({ model: config.model, input })
  const what = `embeddings (${config.type}, ${config.model})`
  let last = ''
  for (let attempt = 0;; attempt++) {
    if (attempt > 0) counters.retries++
    counters.requests++
    let delay: number | undefined
    try {
      // the timeout is cleared as soon as the answer is read (src/abort.ts): no signal or timer outlives the request
      const answer = await fetchWithin(
        url,
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${config.api_key}`,
          },
          body,
        },
        policy.requestTimeoutMs,
        async (res): Promise<{ vectors: number[][] } | { res: Response; text: string }> => {
          if (!res.ok) return { res, text: await res.text().catch(() => '') }
          let json: unknown
          try {
            json = await res.json()
          } catch (err) {
            throw new EmbeddingError(`${what}: ${url} answered with invalid JSON: ${(err as Error).message}`, false)
          }
          try {
            const vectors = parseVectors(json, input.length)
            counters.tokens = (counters.tokens ?? 0) + usageTokens(json)
            return { vectors }
          } catch (err) {
            throw new EmbeddingError(`${what}: ${url}: ${(err as Error).message}`, false)
          }
        },
      )
      if ('vectors' in answer) return answer.vectors
      const { res, text } = answer
      last = `HTTP ${res.status}: ${providerMessage(text)}`
      if (!RETRYABLE_STATUS.has(res.status)) {
        throw new EmbeddingError(`${what} refused by ${url}: ${last}`, false)
      }
      const after = retryAfterMs(res.headers)
      if (after !== undefined) delay = Math.min(after, policy.maxRetryAfterMs)
    } catch (err) {
      if (err instanceof EmbeddingError) throw err
      // fetch rejects on network errors and on our timeout
      last = (err as Error)?.name === 'TimeoutError'
        ? `no answer within ${policy.requestTimeoutMs} ms`
        : `network error: ${(err as Error)?.message ?? err}`
    }
    if (attempt >= policy.maxRetries) {
      throw new EmbeddingError(`${what} failed after ${attempt + 1} attempts: ${last}`, true)
    }
    delay ??= backoffMs(attempt, policy)
    log?.warn('embedding request failed, retrying', { error: last, attempt: attempt + 1, delay_ms: Math.round(delay) })
    await sleep(delay)
  }
}
