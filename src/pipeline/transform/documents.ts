// A row's documents as a transform returns them in row-documents mode (docs/ARCHITECTURE.md, "A row's documents":
// chunks; issue 25), checked and normalized. Ids are strings in that mode (one id type per namespace: chunk ids are
// `<row key>#<n>`), so a number is taken as its decimal text. Not wired yet: the writer still takes one action per row
// (`normalizeAction`), which this builds on, so every document is checked exactly as an upsert action is.
//
//   { type: 'upsert', documents: [{ id?, attributes | doc | document, vector? }, …] }   several documents
//   { op: 'upsert', documents: [...] }                                                    the original's spelling
//   { type: 'upsert', attributes, … }                                                    one document, as today
//   { type: 'delete' } / { type: 'skip' }                                                all of the row's documents
import { createHash } from 'node:crypto'
import type { Id, RowEvent } from '../../types.ts'
import { showId } from '../docid.ts'
import { normalizeAction, type NormalizedAction } from './action.ts'

/** Most documents one row may have: a chunked 50 MB text at 5,000 characters a chunk is 10,000. */
export const MAX_DOCUMENTS_PER_ROW = 10_000

const MAX_ID_BYTES = 64
const encoder = new TextEncoder()

export type RowDocument = Extract<NormalizedAction, { type: 'upsert' }>

export type RowDocumentsResult =
  | { ok: true; action: { type: 'documents'; documents: RowDocument[] } | { type: 'delete' } | { type: 'skip' } }
  | { ok: false; error: string }

/**
 * The id of a row's document number `n`: `<row key>#<n>`, or, when that is over turbopuffer's 64 bytes,
 * `h<first 40 hex digits of sha256(row key)>#<n>`. Always a string: one id type per namespace.
 */
export function chunkDocId(rowKey: string, n: number): string {
  const id = `${rowKey}#${n}`
  if (id.length * 3 <= MAX_ID_BYTES || encoder.encode(id).length <= MAX_ID_BYTES) return id
  return `h${createHash('sha256').update(rowKey).digest('hex').slice(0, 40)}#${n}`
}

/**
 * Validates what a transform returned for `event` in row-documents mode. `rowKey` is the row's key text (the
 * `_puffgres_row` of its documents). A single document keeps the row id, as text. Never throws.
 */
export function normalizeRowDocuments(
  raw: unknown,
  event: RowEvent,
  label: string,
  rowKey: string,
): RowDocumentsResult {
  const obj = raw as Record<string, unknown> | null
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj) || !('documents' in obj)) {
    const single = normalizeAction(raw, event, label)
    if (!single.ok) return single
    // a delete removes every document of the row, whatever id it names
    if (single.action.type !== 'upsert') return { ok: true, action: { type: single.action.type } }
    return { ok: true, action: { type: 'documents', documents: [{ ...single.action, id: String(single.action.id) }] } }
  }
  const fail = (detail: string): RowDocumentsResult => ({
    ok: false,
    error: `${label} returned invalid documents for id ${showId(event.id)}: ${detail}`,
  })
  const type = obj.type ?? obj.op
  if (type !== 'upsert') return fail(`documents go with type 'upsert', got ${JSON.stringify(type)}`)
  if (obj.type !== undefined && obj.op !== undefined && obj.op !== obj.type) {
    return fail(`op: ${JSON.stringify(obj.op)} differs from type 'upsert'`)
  }
  const extra = Object.keys(obj).find((k) => k !== 'type' && k !== 'op' && k !== 'documents')
  if (extra) return fail(`${extra}: not allowed beside documents (give it to each document)`)
  const list = obj.documents
  if (!Array.isArray(list)) return fail('documents: expected an array of documents')
  if (list.length > MAX_DOCUMENTS_PER_ROW) {
    return fail(`documents: ${list.length} documents, at most ${MAX_DOCUMENTS_PER_ROW} per row`)
  }
  const documents: RowDocument[] = []
  const seen = new Set<string>()
  for (let i = 0; i < list.length; i++) {
    const doc = list[i]
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
      return fail(`documents[${i}]: expected an object like { attributes: {...} }`)
    }
    const d = doc as Record<string, unknown>
    if (d.type !== undefined || d.op !== undefined) return fail(`documents[${i}]: a document has no type or op`)
    const id = (d.id ?? chunkDocId(rowKey, i)) as Id
    const r = normalizeAction({ ...d, type: 'upsert', id }, event, label)
    if (!r.ok) {
      const prefix = `${label} returned an invalid action for id ${showId(event.id)}: `
      return fail(`documents[${i}]: ${r.error.startsWith(prefix) ? r.error.slice(prefix.length) : r.error}`)
    }
    const action = { ...r.action as RowDocument, id: String((r.action as RowDocument).id) }
    if (seen.has(action.id)) return fail(`documents[${i}]: id ${showId(action.id)} is given twice`)
    seen.add(action.id)
    documents.push(action)
  }
  return { ok: true, action: { type: 'documents', documents } }
}
