// Fault injection (off by default) and request counters, driven by the handle's methods or /_admin endpoints.
import { ApiError } from './errors.ts'

/** which requests an injected failure may hit */
export type FaultScope = 'writes' | 'all'

export interface LocalServerStats {
  /** API requests received (admin endpoints not counted) */
  requests: number
  /** write requests received, including those answered with an error */
  writes: number
  /** writes applied and acknowledged with 200 */
  writesAcknowledged: number
  queries: number
  injectedFailures: number
  rowsUpserted: number
  rowsPatched: number
  rowsDeleted: number
  /** responses by HTTP status, e.g. { "200": 12, "429": 1 } */
  statuses: Record<string, number>
}

export function emptyStats(): LocalServerStats {
  return {
    requests: 0,
    writes: 0,
    writesAcknowledged: 0,
    queries: 0,
    injectedFailures: 0,
    rowsUpserted: 0,
    rowsPatched: 0,
    rowsDeleted: 0,
    statuses: {},
  }
}

export function checkFailRate(rate: unknown): number {
  if (typeof rate !== 'number' || !(rate >= 0 && rate <= 1)) {
    throw new Error(`invalid fail rate ${String(rate)}: expected a number from 0 to 1`)
  }
  return rate
}

export function checkLatency(ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new Error(`invalid latency ${String(ms)}: expected milliseconds >= 0`)
  }
  return ms
}

export class Faults {
  failRate = 0
  latencyMs = 0
  /** each request waits latencyMs ± jitterMs (local/latency.ts) */
  jitterMs = 0
  private pending = 0
  private status = 500
  private retryAfterMs: number | undefined
  private scope: FaultScope = 'writes'

  /** The next `count` requests in `scope` are answered with `status` (and a `retry-after-ms` header if given). */
  failNext(count: number, status = 500, retryAfterMs?: number, scope: FaultScope = 'writes'): void {
    if (!Number.isInteger(count) || count < 0) throw new Error(`invalid count ${count}: expected an integer >= 0`)
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new Error(`invalid status ${status}: expected an HTTP error status from 400 to 599`)
    }
    if (retryAfterMs !== undefined) checkLatency(retryAfterMs)
    if (scope !== 'writes' && scope !== 'all') throw new Error(`invalid scope ${scope}: expected "writes" or "all"`)
    this.pending = count
    this.status = status
    this.retryAfterMs = retryAfterMs
    this.scope = scope
  }

  /** The failure to answer this request with, if one is due. */
  take(isWrite: boolean): ApiError | undefined {
    if (this.pending > 0 && (isWrite || this.scope === 'all')) {
      this.pending--
      const headers: Record<string, string> = {}
      if (this.retryAfterMs !== undefined) headers['retry-after-ms'] = String(this.retryAfterMs)
      return new ApiError(this.status, `injected failure (local turbopuffer server, status ${this.status})`, headers)
    }
    if (isWrite && this.failRate > 0 && Math.random() < this.failRate) {
      return new ApiError(500, 'injected failure (local turbopuffer server, fail rate)')
    }
    return undefined
  }
}
