// The turbopuffer document id of a row, from the mapping's id column(s).
import type { Id, Row } from '../types.ts'
import { sourceText, timestampIdText } from '../postgres/values.ts'

const MAX_UINT64 = (1n << 64n) - 1n

/**
 * One integer column (smallint, integer, bigint, oid): a turbopuffer uint id, exact over 0…2^64−1 (a number up to
 * 2^53, a bigint beyond, both sent as bare JSON integers), so one namespace never mixes id types. A negative
 * integer, or a non-integer number, has no id (the row is dead-lettered: see idProblem). Any other column: a string
 * id. Several columns: their text joined with `:`, with `\` and `:` inside a value escaped, so different keys never
 * give the same id. Timestamps take part with their microseconds. `stringIds` (`[target] id_type = "string"`):
 * every id is a string, integers included. Undefined when a column is missing or NULL, or the id is not valid.
 */
export function docId(row: Row, idColumns: readonly string[], stringIds = false): Id | undefined {
  if (idColumns.length === 1) return single(row, idColumns[0], stringIds)
  const parts: string[] = []
  for (const c of idColumns) {
    const v = row[c]
    if (v === null || v === undefined) return undefined
    parts.push(partText(row, c, v).replaceAll('\\', '\\\\').replaceAll(':', '\\:'))
  }
  return parts.join(':')
}

function partText(row: Row, c: string, v: unknown): string {
  const source = sourceText(row, c)
  // a timestamp column's kept text (json keeps its text too, but a json id is its decoded value's text as before)
  if (source !== undefined && source[0] !== '"' && typeof v === 'string' && /^\d{4,}-\d\d-\d\dT/.test(v)) {
    return timestampIdText(source, /[+-]\d\d(:\d\d)?(:\d\d)?( BC)?$/.test(source))
  }
  return String(v)
}

function single(row: Row, c: string, stringIds: boolean): Id | undefined {
  const v = row[c]
  if (v === null || v === undefined) return undefined
  if (typeof v === 'number') {
    if (stringIds) return String(v)
    return Number.isInteger(v) && v >= 0 ? v : undefined
  }
  if (typeof v === 'bigint') {
    if (stringIds) return v.toString()
    return v >= 0n && v <= MAX_UINT64 ? v : undefined
  }
  return partText(row, c, v)
}

/**
 * The id columns' values a document id names (docId's inverse, as far as text goes): the value itself for one id
 * column, each part's text for several. What a delete event carries of a row known only by its document.
 */
export function idColumnsOf(id: Id, idColumns: readonly string[]): Row {
  if (idColumns.length === 1) return { [idColumns[0]]: id }
  const parts: string[] = []
  let part = ''
  const text = String(id)
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]
    if (ch === '\\' && i + 1 < text.length) part += text[++i]
    else if (ch === ':') {
      parts.push(part)
      part = ''
    } else part += ch
  }
  parts.push(part)
  return Object.fromEntries(idColumns.map((c, j) => [c, parts[j] ?? null]))
}

/** Why a row has no id: names the column, the value and the fix. */
export function idProblem(row: Row, idColumns: readonly string[]): string {
  const missing = idColumns.filter((c) => row[c] === null || row[c] === undefined)
  if (missing.length) return `id column(s) ${missing.join(', ')} have no value`
  const c = idColumns[0]
  const v = row[c]
  return `id column "${c}" is ${String(v)}: turbopuffer's integer ids are unsigned (0…2^64−1); ` +
    `for negative ids set \`id_type = "string"\` under [target] in a new mapping version (a new namespace), ` +
    `then backfill`
}

export { idKey } from '../types.ts'

/** An id for a message: JSON for numbers and strings (JSON.stringify throws on a bigint). */
export function showId(id: unknown): string {
  return typeof id === 'bigint' ? id.toString() : JSON.stringify(id)
}
