// Reads current rows of a source table by id, decoded exactly as the stream decodes them (text format + values.ts).
// The stream uses it when an update left TOASTed columns "unchanged" (pgoutput does not send them).
import type postgres from 'postgres'
import type { Row } from '../types.ts'
import { ident, qualified } from './connect.ts'
import { decodeColumn } from './values.ts'

const decoder = new TextDecoder()

export interface ColumnType {
  name: string
  typeOid: number
  typeName?: string
}

/**
 * Keys per statement. A batch of the stream can hold more keys than one statement takes: at most 65,535 parameters,
 * and PostgreSQL runs out of stack planning `(a, b) IN (...)` with about 10,000 tuples.
 */
const KEYS_PER_QUERY = 1000

/**
 * The rows with these keys, their columns decoded; `keys` are id-column values, one array per row. The columns are
 * read as their types' output functions print them (raw text results), as pgoutput sends them to the stream and COPY
 * to backfill and verify (`::text` prints inet and bool otherwise).
 */
export async function readRowsByKey(
  sql: postgres.Sql,
  source: { schema: string; table: string },
  columns: readonly ColumnType[],
  keyColumns: readonly string[],
  /** each id column's type as a cast names it (format_type, typmod included) */
  keyTypes: readonly string[],
  keys: unknown[][],
): Promise<Row[]> {
  if (!keys.length) return []
  if (keys.length > KEYS_PER_QUERY) {
    const out: Row[] = []
    for (let i = 0; i < keys.length; i += KEYS_PER_QUERY) {
      const chunk = keys.slice(i, i + KEYS_PER_QUERY)
      for (const r of await readRowsByKey(sql, source, columns, keyColumns, keyTypes, chunk)) out.push(r)
    }
    return out
  }
  const select = columns.map((c) => ident(c.name)).join(', ')
  const keyList = keyColumns.map(ident).join(', ')
  const table = qualified(source.schema, source.table)
  // Each key text is sent as text and cast to its column's type here: PostgreSQL reads it exactly as it printed it.
  // A parameter of the column's own type would go through postgres.js's serializer for that type, which does not
  // take PostgreSQL's text (a timestamp passes through a JS Date and loses its microseconds: the row is not found).
  const params: unknown[] = []
  const tuples = keys.map((k) =>
    '(' + k.map((v, j) => {
      params.push(v === null || v === undefined ? null : String(v))
      return `$${params.length}::text::${keyTypes[j]}`
    }).join(', ') + ')'
  )
  const rows = await sql.unsafe(
    `SELECT ${select} FROM ${table} WHERE (${keyList}) IN (${tuples.join(', ')})`,
    params as postgres.ParameterOrJSON<never>[],
  ).raw()
  return rows.map((values: (Uint8Array | null)[]) => {
    const row: Row = {}
    columns.forEach((c, i) => {
      const v = values[i]
      decodeColumn(row, c.name, v === null ? null : decoder.decode(v), c.typeOid, c.typeName)
    })
    return row
  })
}
