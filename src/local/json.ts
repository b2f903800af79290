// JSON with exact integers: a JSON number is arbitrary precision, but JSON.parse rounds integers beyond 2^53 to a
// double (uint64 ids and int64 values would silently change). Such integers are read as bigints instead, and
// bigints are written back as bare JSON integers.

/** A run of 16+ digits that is not part of a fraction or exponent: the only place an unsafe integer can hide. */
const LONG_INTEGER = /(?<![\d.])\d{16,}(?![\d.eE])/

type Reviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown

const exactIntegers: Reviver = (_key, value, context) => {
  if (typeof value !== 'number' || Number.isSafeInteger(value)) return value
  const source = context?.source
  return source !== undefined && /^-?\d+$/.test(source) ? BigInt(source) : value
}

/** JSON.parse, except that integers beyond ±(2^53−1) become bigints (exact). */
export function parseJson(text: string): unknown {
  // the reviver costs a call per value: skip it when no integer literal is long enough to need it
  if (!LONG_INTEGER.test(text)) return JSON.parse(text)
  return JSON.parse(text, exactIntegers as (this: unknown, key: string, value: unknown) => unknown)
}

const rawJson = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON

/** JSON.stringify that writes bigints as bare integers. */
export function toJson(value: unknown): string {
  try {
    return JSON.stringify(value)
  } catch (e) {
    if (!(e instanceof TypeError)) throw e
    // almost never needed, so the replacer is only paid for when a bigint is there
    return JSON.stringify(value, (_k, x) => (typeof x === 'bigint' ? rawJson(x.toString()) : x))
  }
}
