// A fixed-size ring of samples, oldest first: the status page's last hour. Its memory is bounded by the capacity
// whatever the uptime (docs/ARCHITECTURE.md, invariant 4).
export class SampleRing<T> {
  readonly #items: (T | undefined)[]
  #next = 0
  #size = 0

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`ring capacity must be a positive integer`)
    this.#items = new Array(capacity)
  }

  get size(): number {
    return this.#size
  }

  /** Adds a sample; once full, the oldest is dropped. */
  push(item: T): void {
    this.#items[this.#next] = item
    this.#next = (this.#next + 1) % this.capacity
    if (this.#size < this.capacity) this.#size++
  }

  /** The samples, oldest first. */
  toArray(): T[] {
    const out: T[] = []
    const start = (this.#next - this.#size + this.capacity) % this.capacity
    for (let i = 0; i < this.#size; i++) out.push(this.#items[(start + i) % this.capacity] as T)
    return out
  }

  last(): T | undefined {
    return this.#size ? this.#items[(this.#next - 1 + this.capacity) % this.capacity] : undefined
  }
}
