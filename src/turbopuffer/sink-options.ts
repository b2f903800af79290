// What a TurbopufferSink is built with, and the error of a request turbopuffer refused for good (sink.ts).
import type { Turbopuffer } from '@turbopuffer/turbopuffer'
import type { Logger } from '../types.ts'
import type { BackoffPolicy, RetryInfo } from './retry.ts'
import type { Limits } from './write-plan.ts'

export interface TurbopufferSinkOptions {
  log?: Logger
  /** gives up waiting and retrying (shutdown): pending calls reject with the signal's reason */
  signal?: AbortSignal
  limits?: Partial<Limits>
  backoff?: Partial<BackoffPolicy>
  /** requests in flight at once for one `write` call (its chunks hold disjoint ids, so order does not matter) */
  concurrency?: number
  /**
   * `write` calls (one namespace's share each) sent at once by this sink (default: write-request.ts
   * defaultWritesInFlight); the others wait before their documents are even turned into a request body
   */
  writesInFlight?: number
  /**
   * the most bytes a second written to one namespace (default 32 MB: turbopuffer's per-namespace limit; 0: no limit):
   * writes beyond it wait instead of drawing a 429
   */
  namespaceBytesPerSecond?: number
  /** per-request timeout, ms (a timeout is retried) */
  timeoutMs?: number
  /** a client to use instead of one built from the config (tests, custom fetch) */
  client?: Turbopuffer
  env?: Record<string, string | undefined>
  onRetry?(info: RetryInfo): void
  /** every HTTP request's duration, outcome and operation (latency metrics; run's shed counts writes only) */
  onRequest?(ms: number, ok: boolean, operation: RetryInfo['operation']): void
  /** a write waited `ms` for its namespace's byte budget (namespaceBytesPerSecond), for metrics */
  onPaced?(namespace: string, ms: number): void
}

/** A request turbopuffer refused in a way that retrying cannot change. */
export class TurbopufferRequestError extends Error {
  constructor(readonly status: number, message: string, readonly fatal: boolean) {
    super(message)
    this.name = 'TurbopufferRequestError'
  }
}
