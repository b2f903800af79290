// Intents that bring documents to their rows' *current* state (DLQ retry, verify --repair). They carry version
// encodeVersion(L) for an L = stableLsn() taken before the rows are read: every commit the read does not see is
// streamed with a higher version, so a retried or repaired write never beats a newer streamed change
// (ARCHITECTURE.md invariant 2).
import type postgres from 'postgres'
import type { Intent } from '../pipeline/changes.ts'
import { docId, idKey } from '../pipeline/docid.ts'
import type { RouteRuntime } from '../pipeline/writer.ts'
import { formatLsn } from '../postgres/lsn.ts'
import { type ColumnType, readRowsByKey } from '../postgres/read-rows.ts'
import { encodeVersion, type Row } from '../types.ts'
import { decodeColumn } from '../postgres/values.ts'

export interface RowRef {
  /** the last known values of (at least) the row's id columns: they find the row, and name it once it is gone */
  known: Row
  /**
   * the id columns as PostgreSQL printed them, when known: they find the row exactly (a decoded timestamp has lost
   * its microseconds, so `known` alone cannot find a row keyed by one)
   */
  keyTexts?: string[]
}

/**
 * Reads each referenced row as it is now and returns one intent per reference (same order): an upsert when the row
 * exists and is a member, else a delete of its id. `undefined` for a reference without a usable id.
 */
export async function currentStateIntents(
  sql: postgres.Sql,
  route: RouteRuntime,
  columns: readonly ColumnType[],
  refs: readonly RowRef[],
  lsn: bigint,
): Promise<(Intent | undefined)[]> {
  const m = route.mapping
  // from the key texts when known: decoded from them, a timestamp key part keeps its microseconds, as in the id the
  // stream and backfill gave the document (and the re-read rows below give)
  const ids = refs.map((r) =>
    docId(r.keyTexts ? keyRow(columns, m.idColumns, r.keyTexts) : r.known, m.idColumns, m.idType === 'string')
  )
  const keys = refs.flatMap((r, i) =>
    ids[i] === undefined ? [] : [r.keyTexts ?? m.idColumns.map((c) => keyText(r.known[c]))]
  )
  const source = { schema: m.schema, table: m.table }
  const rows = await readRowsByKey(sql, source, columns, m.idColumns, route.keyTypes, keys)
  const found = new Map(rows.map((r) => [idKey(docId(r, m.idColumns, m.idType === 'string')!), r]))
  const version = encodeVersion(lsn, 0)
  const lsnText = formatLsn(lsn)
  const base = { schema: m.schema, table: m.table, mapping: m.name, lsn: lsnText }
  return refs.map((_r, i): Intent | undefined => {
    const id = ids[i]
    if (id === undefined) return undefined
    const row = found.get(idKey(id))
    if (row && (!route.isMember || route.isMember(row))) {
      return { route, id, kind: 'upsert', version, lsn, event: { type: 'insert', op: 'insert', id, ...base, new: row } }
    }
    const old = row ?? refs[i].known
    return { route, id, kind: 'delete', version, lsn, event: { type: 'delete', op: 'delete', id, ...base, old } }
  })
}

/** A key value as PostgreSQL reads it back from text (JSON-safe forms: numbers, bigint strings, ISO times). */
function keyText(v: unknown): string {
  if (v instanceof Date) return v.toISOString()
  return typeof v === 'string' ? v : String(v)
}

/** The id columns of a row, decoded from their texts as PostgreSQL printed them. */
function keyRow(columns: readonly ColumnType[], idColumns: readonly string[], texts: readonly string[]): Row {
  const row: Row = {}
  idColumns.forEach((name, j) => {
    const c = columns.find((col) => col.name === name)
    if (c) decodeColumn(row, name, texts[j], c.typeOid, c.typeName)
  })
  return row
}
