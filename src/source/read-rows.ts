// Reads current rows of a source table by id, decoded exactly as the stream decodes them (text format + values.ts).
// The stream uses it when an update left TOASTed columns "unchanged" (pgoutput does not send them).
import type postgres from 'postgres'
import type { Row } from '../types.ts'
import { ident, qualified } from '../postgres/connect.ts'
import { isSqlAscii, reserveRawBytes } from '../postgres/sql-ascii.ts'
import { decodeColumn } from '../postgres/values.ts'

// fatal: a SQL_ASCII database sends whatever bytes a row holds (sql-ascii.ts); a value that is not UTF-8 must fail
// its row, not become U+FFFD silently
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Why a row read here lacks some of its columns: the values that could not be decoded (see undecodable). */
const UNDECODABLE = new WeakMap<Row, string>()

/**
 * Why a row readRowsByKey returned could not be decoded whole (`column "at": …`), if it could not: its other columns
 * are there, the failed ones are left out. The caller decides whose row that breaks (a dead letter, not a failed batch).
 */
export function undecodable(row: Row): string | undefined {
  return UNDECODABLE.get(row)
}

function decodeText(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes)
  } catch {
    throw new Error(`the value is not valid UTF-8 (${bytes.length} bytes; a SQL_ASCII database?)`)
  }
}

/** A column as the catalog or a Relation message describes it. */
export interface ColumnType {
  name: string
  typeOid: number
  /** the (base) type's name for non-builtin types, as pgoutput's Type message gives it */
  typeName?: string
  /** `atttypmod` (-1: none): varchar(n)/char(n) lengths decide whether a string attribute is filterable */
  typmod?: number
}

/**
 * Whether readRowsByKey failed because a key text is no value of its id column's type (a data exception, SQLSTATE
 * class 22: `n77` for an integer, a number out of range): such a key names no row of the table. Key texts are the
 * only values PostgreSQL itself converts there (the rows are decoded here).
 */
export function keyTextRefused(e: unknown): boolean {
  return String((e as { code?: unknown } | null)?.code ?? '').startsWith('22')
}

/**
 * Keys per statement. A batch of the stream can hold more keys than one statement takes: at most 65,535 parameters,
 * and PostgreSQL runs out of stack planning `(a, b) IN (...)` with about 10,000 tuples.
 */
const KEYS_PER_QUERY = 1000

/**
 * The rows with these keys, their columns decoded; `keys` are id-column values, one array per row. A value that
 * cannot be decoded is left out of its row, and the row is marked (undecodable): it does not fail the others. The columns are
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
  keys: readonly (readonly unknown[])[],
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
  const query = `SELECT ${select} FROM ${table} WHERE (${keyList}) IN (${tuples.join(', ')})`
  // not prepared: the text differs with the number of keys (up to a thousand tuples), and postgres.js would keep a
  // named statement of each on every connection (a tenant backfill's re-check: ~25 MB more peak RSS, measured)
  const select_ = (conn: postgres.Sql) =>
    conn.unsafe(query, params as postgres.ParameterOrJSON<never>[], { prepare: false }).raw()
  // in a SQL_ASCII database, on a session that reads the bytes as they are (decodeText fails a bad value alone)
  const rows = await (await isSqlAscii(sql) ? reserveRawBytes(sql, select_) : select_(sql))
  return rows.map((values: (Uint8Array | null)[]) => {
    const row: Row = {}
    let errors: string[] | undefined
    columns.forEach((c, i) => {
      const v = values[i]
      try {
        decodeColumn(row, c.name, v === null ? null : decodeText(v), c.typeOid, c.typeName)
      } catch (e) {
        ;(errors ??= []).push(`column "${c.name}": ${(e as Error).message}`)
      }
    })
    if (errors) UNDECODABLE.set(row, `cannot decode ${errors.join('; ')}`)
    return row
  })
}
