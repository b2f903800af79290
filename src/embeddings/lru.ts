// A cache bounded by entry count that evicts the least recently used entry. A Map iterates in insertion order, so
// re-inserting on every hit keeps the oldest entry first.
export class LruCache<K, V> {
  readonly #map = new Map<K, V>()

  constructor(readonly capacity: number) {
    if (!(capacity >= 0)) throw new Error(`cache capacity must be >= 0, got ${capacity}`)
  }

  get size(): number {
    return this.#map.size
  }

  get(key: K): V | undefined {
    const value = this.#map.get(key)
    if (value !== undefined) {
      this.#map.delete(key)
      this.#map.set(key, value)
    }
    return value
  }

  set(key: K, value: V): void {
    if (this.capacity === 0) return
    this.#map.delete(key)
    this.#map.set(key, value)
    if (this.#map.size > this.capacity) this.#map.delete(this.#map.keys().next().value as K)
  }
}
