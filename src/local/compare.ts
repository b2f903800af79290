// Value ordering and equality shared by filters, ranking and id paging.

/** Orders strings by Unicode code point, which is the order of their UTF-8 bytes (as turbopuffer compares them). */
export function compareStrings(a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x === y) continue
    // JS strings are UTF-16: a surrogate (a code point above U+FFFF) must sort after every BMP character.
    const xs = x >= 0xd800 && x <= 0xdfff
    const ys = y >= 0xd800 && y <= 0xdfff
    if (xs !== ys) return xs ? 1 : -1
    return x - y
  }
  return a.length - b.length
}

/** Compares two scalars of the same kind; NaN when they cannot be ordered (different kinds, null). */
export function compareScalars(a: unknown, b: unknown): number {
  // integers beyond 2^53 are bigints (json.ts); JavaScript compares a number with a bigint exactly
  const numeric = (x: unknown) => typeof x === 'number' || typeof x === 'bigint'
  if (numeric(a) && numeric(b)) return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0
  if (typeof a === 'string' && typeof b === 'string') return compareStrings(a, b)
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b)
  return NaN
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]))
  }
  return false
}
