// Reads current rows of a source table by id, decoded exactly as the stream decodes them (text format + values.ts).
// The stream uses it when an update left TOASTed columns "unchanged" (pgoutput does not send them).
import type postgres from 'postgres'
import type { Row } from '../types.ts'
import { ident, qualified } from './connect.ts'
import { decodeValue } from './values.ts'

const decoder = new TextDecoder()

export interface ColumnType {
  name: string
  typeOid: number
  typeName?: string
}

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
  keys: unknown[][],
): Promise<Row[]> {
  if (!keys.length) return []
  const select = columns.map((c) => ident(c.name)).join(', ')
  const keyList = keyColumns.map(ident).join(', ')
  const params: unknown[] = []
  const tuples = keys.map((k) =>
    '(' + k.map((v) => {
      // sent as untyped text: PostgreSQL reads it as the key column's type (exact, and the index is used)
      params.push(v === null || v === undefined ? null : String(v))
      return `$${params.length}`
    }).join(', ') + ')'
  )
  const rows = await sql.unsafe(
    `SELECT ${select} FROM ${qualified(source.schema, source.table)} WHERE (${keyList}) IN (${tuples.join(', ')})`,
    params as postgres.ParameterOrJSON<never>[],
  ).raw()
  return rows.map((values: (Uint8Array | null)[]) => {
    const row: Row = {}
    columns.forEach((c, i) => {
      const v = values[i]
      row[c.name] = decodeValue(v === null ? null : decoder.decode(v), c.typeOid, c.typeName)
    })
    return row
  })
}
