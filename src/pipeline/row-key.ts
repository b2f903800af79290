// A row's key: its id columns' texts as PostgreSQL printed them and its document id, derived once where the row is
// decoded (the stream's change events, backfill's and verify's COPY pages, a page's re-check, a dead letter's stored
// key) and carried from there by intents, dead letters and re-reads. Every path names one row with one key, so a row
// has one document id and one dead-letter entry whichever path met it (docs/ARCHITECTURE.md, invariant 12).
import type { Mapping } from '../config/load.ts'
import { decodeColumn } from '../postgres/values.ts'
import type { ColumnType } from '../source/mod.ts'
import type { Id, Row } from '../types.ts'
import { docId, idColumnsOf } from './docid.ts'

/** What a row key needs of a mapping: its id columns and its id type. */
export type KeyRules = Pick<Mapping, 'idColumns' | 'idType'>

/** One row's key. */
export interface RowKey {
  /**
   * the id columns' texts (in the mapping's order, null for NULL) that find the row again by key: as PostgreSQL
   * printed them (`printed`), else read back from decoded values
   */
  readonly texts: readonly (string | null)[]
  /**
   * the texts are PostgreSQL's own: they find the row exactly (a decoded timestamp has lost its microseconds) and a
   * dead letter keeps them (`key_texts`). False for a key known only by decoded values (see valueKey, documentKey).
   */
  readonly printed: boolean
  /** the document id (docid.ts docId); undefined: the row has none (a NULL part, a negative integer, undecodable) */
  readonly id: Id | undefined
  /** the row's last known values, at least its id columns decoded: what a delete event names once the row is gone */
  readonly values: Row
}

/**
 * The key of a decoded row and its id columns' texts as PostgreSQL printed them (the stream's change, a COPY page's
 * row). `id`: the document id when the caller has derived it already (the same docId of `values`).
 */
export function rowKey(
  m: KeyRules,
  values: Row,
  texts: readonly (string | null)[],
  id: Id | undefined = docId(values, m.idColumns, m.idType === 'string'),
): RowKey {
  return { texts, printed: true, id, values }
}

/**
 * The key of id column texts alone, decoded as the stream and backfill decode them (a page's row that cannot be
 * decoded, a written page's re-check, a dead letter's `key_texts`). `values`: the row's last known values, when
 * more than its id columns are known (a dead letter's event).
 */
export function textKey(
  m: KeyRules,
  columns: readonly ColumnType[],
  texts: readonly (string | null)[],
  values?: Row,
): RowKey {
  const ids: Row = {}
  m.idColumns.forEach((name, j) => {
    const c = columns.find((col) => col.name === name)
    if (c) decodeColumn(ids, name, texts[j], c.typeOid, c.typeName)
  })
  return { texts, printed: true, id: docId(ids, m.idColumns, m.idType === 'string'), values: values ?? ids }
}

/** A key value as PostgreSQL reads it back from text (JSON-safe forms: numbers, bigint strings, ISO times). */
function valueText(v: unknown): string | null {
  if (v === null || v === undefined) return null
  if (v instanceof Date) return v.toISOString()
  return typeof v === 'string' ? v : String(v)
}

/** The key of a row known only by decoded values (a dead letter filed before key texts were kept). */
export function valueKey(m: KeyRules, values: Row): RowKey {
  const texts = m.idColumns.map((c) => valueText(values[c]))
  return { texts, printed: false, id: docId(values, m.idColumns, m.idType === 'string'), values }
}

/** A row key whose row has a document id. */
export type DocumentKey = RowKey & { readonly id: Id }

/** The key of a document known only by its id (one judged extra): its id columns read back from the id. */
export function documentKey(m: KeyRules, id: Id): DocumentKey {
  const values = idColumnsOf(id, m.idColumns)
  return { texts: m.idColumns.map((c) => valueText(values[c])), printed: false, id, values }
}

/**
 * The key a dead letter's event stored: `key_texts` (the stream's and, now, every path's), or `key` (the id
 * columns' texts by name, as backfill filed them before it kept `key_texts`), or else the decoded values of the row
 * the event carried (entries older versions filed). Undefined when the event carries no row.
 */
export function storedKey(m: KeyRules, columns: readonly ColumnType[], event: unknown): RowKey | undefined {
  const e = event as { key_texts?: unknown; key?: unknown; new?: unknown; old?: unknown } | null
  const row = [e?.new, e?.old, e?.key].find((r) => r && typeof r === 'object' && !Array.isArray(r)) as Row | undefined
  if (!row) return undefined
  const texts = e?.key_texts
  if (Array.isArray(texts)) {
    // texts that do not fit the id columns (the mapping's id changed since): the decoded values are all there is
    const fit = texts.length === m.idColumns.length && texts.every((t) => typeof t === 'string')
    return fit ? textKey(m, columns, texts as string[], row) : valueKey(m, row)
  }
  const key = e?.key
  if (key && typeof key === 'object' && !Array.isArray(key)) {
    // texts, not decoded values: a retry must decode them as the stream would
    const byName = m.idColumns.map((c) => (key as Record<string, unknown>)[c])
    if (byName.every((t) => typeof t === 'string')) return textKey(m, columns, byName as string[], row)
  }
  return valueKey(m, row)
}

/**
 * The document id text a dead letter is filed under: the id, or, for a row without a turbopuffer id (a negative
 * integer), its texts joined with `:` and escaped as docId escapes a composite key, so that the entry of one row is
 * one entry whichever path filed it. Undefined when a part is NULL.
 */
export function keyIdText(key: Pick<RowKey, 'texts' | 'id'>): string | undefined {
  if (key.id !== undefined) return String(key.id)
  const texts = key.texts
  if (texts.some((t) => t === null)) return undefined
  if (texts.length === 1) return texts[0]!
  return texts.map((t) => t!.replaceAll('\\', '\\\\').replaceAll(':', '\\:')).join(':')
}
