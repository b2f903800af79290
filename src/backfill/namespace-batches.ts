// Backfill of a tenant mapping (`[target] namespace = "docs_{workspace_id}"`): the rows of one page go to many
// namespaces (docs/ARCHITECTURE.md, "Writers that race the stream"). They gather in a bounded pool of open namespace
// batches; a batch is written when it reaches the batch size, when the pool needs its place (the largest open batch
// goes first, so a tenant with many rows still gets full batches) or when the page ends. Writes to different
// namespaces run in parallel, at most `limit.current` at once (each namespace paced by its own write budget in the
// sink). Memory is bounded by the pool (`maxOpen` batches, `maxRows` rows in them, plus the batches being written),
// never by the number of tenants.
import { type AdaptiveLimit, Landings } from '../concurrency.ts'

export interface NamespaceBatchesOptions<T> {
  /** items per batch: one write */
  batchSize: number
  /** open batches at most (namespaces gathering rows at once) */
  maxOpen: number
  /** items in open batches at most */
  maxRows: number
  /** batches written at once */
  limit: AdaptiveLimit
  /** writes one namespace's batch (through the one write path) */
  write(namespace: string, items: T[]): Promise<void>
}

/** The pool's high-water marks (tests check the bound; the benchmark reports them). */
export interface PoolPeaks {
  open: number
  rows: number
  inFlight: number
}

export class NamespaceBatches<T> {
  readonly #open = new Map<string, T[]>()
  #rows = 0
  /** writes in flight */
  #inFlight = 0
  readonly #landings = new Landings()
  #failure: { e: unknown } | undefined
  readonly peaks: PoolPeaks = { open: 0, rows: 0, inFlight: 0 }

  constructor(private readonly opts: NamespaceBatchesOptions<T>) {
    for (const k of ['batchSize', 'maxOpen', 'maxRows'] as const) {
      if (!Number.isInteger(opts[k]) || opts[k] < 1) throw new Error(`namespace batches: ${k} must be >= 1`)
    }
  }

  /** Adds one item to its namespace's batch; waits while the pool is full and every write slot is taken. */
  async add(namespace: string, item: T): Promise<void> {
    this.#check()
    let batch = this.#open.get(namespace)
    if (!batch) {
      while (this.#open.size >= this.opts.maxOpen) await this.#write(this.#largest())
      this.#open.set(namespace, batch = [])
      this.peaks.open = Math.max(this.peaks.open, this.#open.size)
    }
    batch.push(item)
    this.#rows++
    this.peaks.rows = Math.max(this.peaks.rows, this.#rows)
    if (batch.length >= this.opts.batchSize) await this.#write(namespace)
    while (this.#rows > this.opts.maxRows) await this.#write(this.#largest())
  }

  /** Writes every open batch and waits until all writes have landed; rethrows the first failed write. */
  async drain(): Promise<void> {
    for (const ns of [...this.#open.keys()]) {
      this.#check()
      await this.#write(ns)
    }
    while (this.#inFlight) await this.#landings.next()
    this.#check()
  }

  /** Waits for the writes in flight without starting any (after a failure elsewhere). */
  async settle(): Promise<void> {
    while (this.#inFlight) await this.#landings.next()
  }

  #check(): void {
    if (this.#failure) throw this.#failure.e
  }

  #largest(): string {
    let best = ''
    let size = -1
    for (const [ns, items] of this.#open) {
      if (items.length > size) [best, size] = [ns, items.length]
    }
    return best
  }

  /** Takes a namespace's open batch out of the pool and starts its write once a write slot is free. */
  async #write(namespace: string): Promise<void> {
    const items = this.#open.get(namespace)
    if (!items) return
    this.#open.delete(namespace)
    this.#rows -= items.length
    while (this.#inFlight >= Math.max(1, this.opts.limit.current)) await this.#landings.next()
    this.#check()
    const full = this.#inFlight + 1 >= this.opts.limit.current
    const token = this.opts.limit.begin()
    this.opts.write(namespace, items).then(() => this.opts.limit.landed(token, full)).catch((e) => {
      this.#failure ??= { e }
    }).finally(() => {
      this.#inFlight--
      this.#landings.landed()
    })
    this.#inFlight++
    this.peaks.inFlight = Math.max(this.peaks.inFlight, this.#inFlight)
  }
}
