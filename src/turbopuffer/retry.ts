// Which turbopuffer failures are worth retrying, and how long to wait before the next attempt.
import { APIConnectionError, APIError, APIUserAbortError } from '@turbopuffer/turbopuffer'
import { abortError as abortWith, backoffDelay as backoff, sleep as wait } from '../retry.ts'

export interface BackoffPolicy {
  /** first delay's upper bound, ms */
  baseMs: number
  /** largest delay's upper bound, ms */
  capMs: number
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 250, capMs: 30_000 }

/** A server-requested wait longer than this is taken as a mistake and replaced by our own backoff. */
const MAX_RETRY_AFTER_MS = 10 * 60_000

/** Exponential backoff with full jitter: uniform in [0, min(cap, base·2^attempt)]. `attempt` counts from 0. */
export function backoffDelay(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random = Math.random): number {
  return backoff(attempt, { baseMs: policy.baseMs, maxMs: policy.capMs, jitter: 'full' }, random)
}

/** The wait a response asks for, from `retry-after-ms` or `retry-after` (seconds or an HTTP date). */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | undefined {
  if (!headers) return undefined
  const ms = headers.get('retry-after-ms')
  if (ms) {
    const n = Number(ms)
    if (Number.isFinite(n) && n >= 0 && n <= MAX_RETRY_AFTER_MS) return n
  }
  const after = headers.get('retry-after')
  if (after) {
    const seconds = Number(after)
    const wait = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(after) - now
    if (Number.isFinite(wait) && wait >= 0 && wait <= MAX_RETRY_AFTER_MS) return wait
  }
  return undefined
}

export type Failure =
  /** network error, timeout, 408, 409, 429, 5xx: wait and send the same request again */
  | { kind: 'transient'; status?: number; message: string; retryAfterMs?: number }
  /** turbopuffer refused the request's content (400, 413, 422, …): retrying the same rows cannot help */
  | { kind: 'permanent'; status: number; message: string }
  /** refused for a reason no row causes (401, 403): stop, do not dead-letter the rows */
  | { kind: 'fatal'; status: number; message: string }
  | { kind: 'aborted'; message: string }

export function classifyError(err: unknown, signal?: AbortSignal): Failure {
  if (signal?.aborted || err instanceof APIUserAbortError) return { kind: 'aborted', message: 'aborted' }
  // checked before APIError: a connection error is an APIError without a status
  if (err instanceof APIConnectionError) return { kind: 'transient', message: errorMessage(err) }
  if (err instanceof APIError && typeof err.status === 'number') {
    const status = err.status
    const message = errorMessage(err)
    const hint = err.headers?.get('x-should-retry')
    if (hint === 'true' || status === 408 || status === 409 || status === 429 || status >= 500) {
      return { kind: 'transient', status, message, retryAfterMs: retryAfterMs(err.headers) }
    }
    if (status === 401 || status === 403) return { kind: 'fatal', status, message }
    return { kind: 'permanent', status, message }
  }
  // anything else (a TypeError from fetch on some runtimes, a reset socket) is treated as a network problem
  return { kind: 'transient', message: errorMessage(err) }
}

/** One line: turbopuffer's `{"status":"error","error":"…"}` message when there is one. */
export function errorMessage(err: unknown): string {
  if (err instanceof APIError) {
    const body = err.error as { error?: unknown; message?: unknown } | undefined
    const text = typeof body?.error === 'string' ? body.error : typeof body?.message === 'string' ? body.message : ''
    const cause = (err as { cause?: unknown }).cause
    if (text) return err.status ? `${err.status} ${text}` : text
    if (!err.status && cause instanceof Error) return `${err.message}: ${cause.message}`
    return err.message.split('\n')[0]
  }
  if (err instanceof Error) return err.message.split('\n')[0]
  return String(err)
}

/** The error a sink call rejects with once its AbortSignal fires. */
export function abortError(signal?: AbortSignal): Error {
  return abortWith(signal, 'turbopuffer sink: aborted')
}

/** Waits `ms`, or rejects as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return wait(ms, signal, 'turbopuffer sink: aborted')
}

/** A retry of a sink call, for logs and metrics (the sink's onRetry). */
export interface RetryInfo {
  namespace: string
  operation: 'write' | 'query' | 'delete_by_filter' | 'delete_namespace' | 'list_namespaces'
  /** 1 for the first retry */
  attempt: number
  delayMs: number
  status?: number
  error: string
}
