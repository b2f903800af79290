// A row's key: its id columns' texts as PostgreSQL printed them and its document id, derived once where the row is
// decoded (the stream's change events, backfill's and verify's COPY pages, a page's re-check, a dead letter's stored
// key) and carried from there by intents, dead letters and re-reads. Every path names one row with one key, so a row
// has one document id and one dead-letter entry whichever path met it (docs/ARCHITECTURE.md, invariant 12).
import type { Mapping } from '../config/load.ts'
import { decodeColumn, OID } from '../postgres/values.ts'
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
   * the id columns the texts are of: a dead letter keeps them (`key_columns`), so that a retry under a later version
   * of the mapping whose id columns changed does not read another column's texts as its own
   */
  readonly columns: readonly string[]
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
  return { texts, columns: m.idColumns, printed: true, id, values }
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
  let undecodable = false
  m.idColumns.forEach((name, j) => {
    const c = columns.find((col) => col.name === name)
    if (!c) return
    try {
      decodeColumn(ids, name, texts[j], c.typeOid, c.typeName)
    } catch {
      // a text PostgreSQL takes and the decoder cannot (a timestamptz outside a JS Date): no document id, as the
      // stream gives such a row none (its dead letter is filed under the texts, keyIdText)
      undecodable = true
    }
  })
  const id = undecodable ? undefined : docId(ids, m.idColumns, m.idType === 'string')
  return { texts, columns: m.idColumns, printed: true, id, values: values ?? ids }
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
  return { texts, columns: m.idColumns, printed: false, id: docId(values, m.idColumns, m.idType === 'string'), values }
}

/** A row key whose row has a document id. */
export type DocumentKey = RowKey & { readonly id: Id }

/** The key of a document known only by its id (one judged extra): its id columns read back from the id. */
export function documentKey(m: KeyRules, id: Id): DocumentKey {
  const values = idColumnsOf(id, m.idColumns)
  return { texts: m.idColumns.map((c) => valueText(values[c])), columns: m.idColumns, printed: false, id, values }
}

/**
 * The key a dead letter's event stored: `key_texts` (the stream's and, now, every path's), or `key` (the id
 * columns' texts by name, as backfill filed them before it kept `key_texts`), or else the decoded values of the row
 * the event carried (entries older versions filed). Undefined when the event carries no row. `filedAs`: the
 * document id the entry is filed under (its `doc_id`), which finds the row where decoded values cannot (below).
 */
export function storedKey(
  m: KeyRules,
  columns: readonly ColumnType[],
  event: unknown,
  filedAs?: string | null,
): RowKey | undefined {
  const e = event as { key_texts?: unknown; key_columns?: unknown; key?: unknown; new?: unknown; old?: unknown } | null
  const row = [e?.new, e?.old, e?.key].find((r) => r && typeof r === 'object' && !Array.isArray(r)) as Row | undefined
  if (!row) return undefined
  const texts = e?.key_texts
  if (Array.isArray(texts)) {
    // texts that do not fit the id columns (the mapping's id changed since; entries filed before `key_columns` was
    // kept tell it only by their number): the decoded values are all there is
    const named = e?.key_columns
    const same = !Array.isArray(named) ||
      (named.length === m.idColumns.length && named.every((c, j) => c === m.idColumns[j]))
    const fit = same && texts.length === m.idColumns.length && texts.every((t) => typeof t === 'string')
    return fit ? textKey(m, columns, texts as string[], row) : valuesKey(m, columns, row, filedAs)
  }
  const key = e?.key
  if (key && typeof key === 'object' && !Array.isArray(key)) {
    // texts, not decoded values: a retry must decode them as the stream would
    const byName = m.idColumns.map((c) => (key as Record<string, unknown>)[c])
    if (byName.every((t) => typeof t === 'string')) return textKey(m, columns, byName as string[], row)
  }
  return valuesKey(m, columns, row, filedAs)
}

/**
 * The key of an entry known by its decoded values only (an older stream's). First the values' texts, when they
 * decode as the stream decodes them to the very values stored: a bigint beyond 2^53 is stored as its decimal
 * string, whose id would otherwise be a string (turbopuffer refuses a string id among integer ids). A timestamp id
 * was decoded to milliseconds: its values neither find the row (PostgreSQL keeps microseconds) nor name its
 * document, which the entry is filed under with all of its microseconds; so when the entry's document id, read back
 * as id column texts, decodes to the values the event carried, those texts are the key (a document id a transform
 * named decodes to other values, or to none, and is not taken). Else the values as they are. The texts are not
 * PostgreSQL's own (`printed` false): a dead letter does not keep them as `key_texts`.
 */
function valuesKey(m: KeyRules, columns: readonly ColumnType[], row: Row, filedAs?: string | null): RowKey {
  /** a key from texts, when they decode to the very values the event carried (as the queue stores them) */
  const decodesTo = (k: RowKey) =>
    k.id !== undefined && m.idColumns.every((c) => storedForm(k.values[c]) === JSON.stringify(row[c] ?? null))
  const byValues = valueKey(m, row)
  const decoded = textKey(m, columns, byValues.texts)
  if (decodesTo(decoded)) return { ...decoded, printed: false, values: row }
  if (!filedAs || byValues.id === undefined || String(byValues.id) === filedAs) return byValues
  const parts = idColumnsOf(filedAs, m.idColumns)
  const texts = m.idColumns.map((c) => {
    const part = parts[c]
    if (part === null || part === undefined) return null
    // a timestamp id part (timestampIdText: ISO 8601 in UTC) as PostgreSQL prints it, which the decoder reads
    const iso = /^(\d{4,}-\d\d-\d\d)T(\d\d:\d\d:\d\d(?:\.\d+)?)Z$/.exec(String(part))
    const type = columns.find((col) => col.name === c)?.typeOid
    if (iso && type === OID.timestamptz) return `${iso[1]} ${iso[2]}+00`
    if (iso && type === OID.timestamp) return `${iso[1]} ${iso[2]}`
    return String(part)
  })
  const byDocument = textKey(m, columns, texts)
  return String(byDocument.id) === filedAs && decodesTo(byDocument)
    ? { ...byDocument, printed: false, values: row }
    : byValues
}

/** A decoded value as the dead-letter queue stores it (JSON, a bigint as its decimal string). */
function storedForm(v: unknown): string {
  return JSON.stringify(v ?? null, (_k, x) => typeof x === 'bigint' ? x.toString() : x)
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
