// How ids travel in the SDK's JSON: a bigint (a uint64 id past 2^53) as a marked string, turned back into a bare JSON
// integer in the request body (client.ts).
import type { Id } from '../types.ts'

/** Marks bigints so that JSON can carry them; `restoreBigints` turns the marks into bare JSON integers. */
export const BIGINT_MARK = '\u0000bigint:'

/** In a JSON text: `"\u0000bigint:123"` → `123`. */
export function restoreBigints(json: string): string {
  return json.includes('\\u0000bigint:') ? json.replace(/"\\u0000bigint:(-?\d+)"/g, '$1') : json
}

/** An id as the SDK's JSON carries it: a bigint as a marked string, sent as a bare integer (client.ts). */
export function wireId(id: Id): string | number {
  return typeof id === 'bigint' ? BIGINT_MARK + id : id
}
