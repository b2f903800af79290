// Bounded concurrency for independent async work (sink requests, backfill page writes).

/**
 * Runs `fn` over `items` with at most `limit` in flight; after the first error no new item starts, and the call
 * rejects with that error once the items in flight have settled.
 */
export async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  let failed = false
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++]
      try {
        await fn(item)
      } catch (err) {
        failed = true
        throw err
      }
    }
  }
  const settled = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker))
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (rejected) throw rejected.reason
}

/**
 * Promise.all that settles only once every promise has: rejects with the first rejection after the others settled.
 * For the writes of one batch: the batch is not over (and a new connection's writes may not start) while one of its
 * namespaces' writes still runs (docs/ARCHITECTURE.md, data flow 7).
 */
export async function allSettled<T>(promises: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises)
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (rejected) throw rejected.reason
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value)
}

/**
 * Waiting for the next of several writes in flight to land: `next()` resolves at the next `landed()`, every waiter
 * at once (each checks again what it waits for). Not Promise.race over the writes: each call adds a reaction to every
 * write in flight (hundreds), kept until that write settles (a backfill's pool raced once per row: 1.6 s of a
 * 1,000,000-row profile, and garbage for each collection to mark).
 */
export class Landings {
  #waiting: (() => void)[] = []

  next(): Promise<void> {
    return new Promise((resolve) => this.#waiting.push(resolve))
  }

  landed(): void {
    const waiting = this.#waiting
    this.#waiting = []
    for (const resolve of waiting) resolve()
  }
}

/**
 * At most `size` holders at once; the others wait their turn, first come first served. Unlike a limit on the work
 * started, the holder decides what it does before holding a slot (nothing) and after (everything).
 */
export class Slots {
  #free: number
  #waiting: Array<() => void> = []
  #head = 0

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`slots: expected a positive integer, got ${size}`)
    this.#free = size
  }

  /** holders waiting for a slot now */
  get waiting(): number {
    return this.#waiting.length - this.#head
  }

  /** Resolves once a slot is held, with the function that gives it back (once; later calls do nothing). */
  take(): Promise<() => void> {
    if (this.#free > 0) {
      this.#free--
      return Promise.resolve(this.#giveBack())
    }
    return new Promise((resolve) => this.#waiting.push(() => resolve(this.#giveBack())))
  }

  #giveBack(): () => void {
    let given = false
    return () => {
      if (given) return
      given = true
      if (this.#head < this.#waiting.length) {
        const next = this.#waiting[this.#head++]
        // the queue's front is dropped now and then, not shifted per slot
        if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
          this.#waiting = this.#waiting.slice(this.#head)
          this.#head = 0
        }
        next()
      } else this.#free++
    }
  }
}

export interface AdaptiveLimitOptions {
  /** requests allowed in flight at first (default 8) */
  initial?: number
  /** never fewer (default 1) */
  min?: number
  /** never more (default 32) */
  max?: number
  /** pushbacks closer together than this count once: one 429 storm halves the limit once (default 1000 ms) */
  cooldownMs?: number
}

/**
 * How many writes may be in flight at once, found by AIMD (as TCP does): +1 per round of writes that all landed
 * while the limit was in use, halved when the service pushes back (429). Shared by the stream, backfill and the sink
 * (which reports the pushback), so one namespace's 429s slow every writer of this process down.
 */
export class AdaptiveLimit {
  #window: number
  #lastDecrease = -Infinity
  #decreases = 0
  readonly min: number
  readonly max: number
  readonly #cooldownMs: number

  constructor(opts: AdaptiveLimitOptions = {}) {
    this.min = opts.min ?? 1
    this.max = opts.max ?? 32
    this.#cooldownMs = opts.cooldownMs ?? 1000
    if (!Number.isInteger(this.min) || this.min < 1 || !Number.isInteger(this.max) || this.max < this.min) {
      throw new Error(`adaptive limit: expected 1 <= min <= max, got min ${this.min}, max ${this.max}`)
    }
    this.#window = Math.min(this.max, Math.max(this.min, opts.initial ?? 8))
  }

  /** writes allowed in flight now */
  get current(): number {
    return Math.floor(this.#window)
  }

  /** A token for a write starting now; pass it to `landed` (a write that began before a pushback grows nothing). */
  begin(): number {
    return this.#decreases
  }

  /** A write begun with `token` landed without pushback; `full`: the limit was in use when it started. */
  landed(token: number, full: boolean): void {
    if (!full || token !== this.#decreases) return
    this.#window = Math.min(this.max, this.#window + 1 / this.current)
  }

  /** The service pushed back (429 or similar): halve, at most once per cooldown. */
  pushback(now = Date.now()): void {
    if (now - this.#lastDecrease < this.#cooldownMs) return
    this.#lastDecrease = now
    this.#decreases++
    this.#window = Math.max(this.min, this.#window / 2)
  }
}

/**
 * forEachLimited with an AdaptiveLimit: a new item starts while fewer than `limit.current` are in flight, so the
 * limit read at each start follows the service's pushback. Rejects with the first error, like forEachLimited.
 */
export function forEachAdaptive<T>(items: T[], limit: AdaptiveLimit, fn: (item: T) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let next = 0
    let running = 0
    let error: { e: unknown } | undefined
    const pump = () => {
      while (!error && next < items.length && running < limit.current) {
        const item = items[next++]
        running++
        const full = running >= limit.current
        const token = limit.begin()
        fn(item).then(() => limit.landed(token, full), (e) => error ??= { e }).finally(() => {
          running--
          if (running === 0 && (error || next >= items.length)) {
            if (error) reject(error.e)
            else resolve()
          } else pump()
        })
      }
      if (!running && next >= items.length) resolve()
    }
    pump()
  })
}
