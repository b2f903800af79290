// turbopuffer takes about 32 MB/s of writes per namespace and answers 429 beyond it (turbopuffer-api.md). A 429
// costs a round trip and halves the writers' concurrency (concurrency.ts AdaptiveLimit); pacing the bytes sent to
// each namespace keeps a large backfill or a burst of wide rows under the limit instead of bouncing off it.

/** The default budget: turbopuffer's published per-namespace write limit. */
export const DEFAULT_NAMESPACE_BYTES_PER_SECOND = 32 * 1000 * 1000

/**
 * A token bucket per namespace, in bytes. It holds at most one second of budget (the burst); a send may take it
 * below zero, and the next send waits until the debt is paid back, so concurrent writers queue up in order of
 * asking. `bytesPerSecond` 0 or less: no limit.
 */
export class WriteBudget {
  readonly #buckets = new Map<string, { tokens: number; at: number }>()
  /** the bucket count above which idle buckets are dropped (doubles with the live ones, so dropping stays O(1) a call) */
  #sweepAt = 1024

  constructor(readonly bytesPerSecond: number, private readonly now: () => number = () => performance.now()) {}

  /** Reserves `bytes` for `namespace`; returns how long (ms) to wait before sending them (0: at once). */
  reserve(namespace: string, bytes: number): number {
    const rate = this.bytesPerSecond
    if (!(rate > 0)) return 0
    const b = this.#refill(namespace, rate)
    // a request larger than the burst waits for a full bucket, not for more than the bucket can hold
    const need = Math.min(bytes, rate)
    const wait = b.tokens >= need ? 0 : Math.ceil(((need - b.tokens) * 1000) / rate)
    b.tokens -= bytes
    return wait
  }

  /**
   * The service's side (the local server): takes `bytes` now if the budget holds them (or a full second of it, for
   * a request larger than that), less a tenth of a second of tolerance for requests that arrive closer together than
   * they were sent, and returns 0; else takes nothing and returns the ms until it would.
   */
  admit(namespace: string, bytes: number): number {
    const rate = this.bytesPerSecond
    if (!(rate > 0)) return 0
    const b = this.#refill(namespace, rate)
    const need = Math.min(bytes, rate) - rate / 10
    if (b.tokens < need) return Math.ceil(((need - b.tokens) * 1000) / rate)
    b.tokens -= bytes
    return 0
  }

  /** the namespaces with a bucket (tests: it must not grow with every namespace ever written) */
  get size(): number {
    return this.#buckets.size
  }

  #refill(namespace: string, rate: number): { tokens: number; at: number } {
    const t = this.now()
    let b = this.#buckets.get(namespace)
    if (!b) {
      if (this.#buckets.size >= this.#sweepAt) this.#dropIdle(t, rate)
      this.#buckets.set(namespace, b = { tokens: rate, at: t })
    }
    b.tokens = Math.min(rate, b.tokens + ((t - b.at) * rate) / 1000)
    b.at = t
    return b
  }

  /**
   * A namespace per tenant writes to thousands of namespaces: a bucket that has refilled to a full second is the same
   * as none (a new one starts full), so it goes. The next sweep waits until the live buckets have doubled.
   */
  #dropIdle(t: number, rate: number): void {
    for (const [name, b] of this.#buckets) {
      if (b.tokens + ((t - b.at) * rate) / 1000 >= rate) this.#buckets.delete(name)
    }
    this.#sweepAt = Math.max(1024, this.#buckets.size * 2)
  }
}
