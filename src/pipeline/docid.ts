// The turbopuffer document id of a row, from the mapping's id column(s).
import type { Id, Row } from '../types.ts'

/**
 * One column: a non-negative integer becomes a number id (turbopuffer's uint) when JSON can hold it exactly;
 * anything else (uuid, text, negative or > 2^53 integers) a string id. Several columns: their text joined with `:`,
 * with `\` and `:` inside a value escaped, so different keys never give the same id. Undefined when a column is
 * missing or NULL (the caller dead-letters the row).
 */
export function docId(row: Row, idColumns: readonly string[]): Id | undefined {
  if (idColumns.length === 1) return single(row[idColumns[0]])
  const parts: string[] = []
  for (const c of idColumns) {
    const v = row[c]
    if (v === null || v === undefined) return undefined
    parts.push(String(v).replaceAll('\\', '\\\\').replaceAll(':', '\\:'))
  }
  return parts.join(':')
}

function single(v: unknown): Id | undefined {
  if (v === null || v === undefined) return undefined
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : String(v)
  if (typeof v === 'bigint') return v.toString()
  return String(v)
}

/** The same id as a string, for logs, DLQ rows and maps. */
export function idKey(id: Id): string {
  return typeof id === 'number' ? `n${id}` : `s${id}`
}
