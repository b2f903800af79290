// JSON with exact integers: a JSON number is arbitrary precision, but JSON.parse rounds integers beyond 2^53 to a
// double (uint64 ids and int64 values would silently change). Such integers are read as bigints instead, and
// bigints are written back as bare JSON integers.

/**
 * An integer literal of 16+ digits where a JSON value starts and ends (after `:`, `,` or `[`; before `,`, `]` or `}`):
 * the only place an unsafe integer can be. Digits inside strings (hex versions, phone numbers) rarely look like that.
 */
const LONG_INTEGER = /[:,[]\s*-?\d{16,}\s*[,\]}]/

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
