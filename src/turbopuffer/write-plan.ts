// Turns versioned write ops into turbopuffer write requests: one op per id, local checks, size-bounded chunks, and
// the version conditions that keep an older version from overwriting a newer one (docs/ARCHITECTURE.md, invariant 2).
import { Buffer } from 'node:buffer'
import type { NamespaceWriteParams } from '@turbopuffer/turbopuffer'
import { type Id, idKey, ROW_ATTR, VERSION_ATTR, type WriteOp } from '../types.ts'
import { DOCUMENT_BYTES, VALUE_BYTES, valueBytes, vectorBytes } from './sizes.ts'
import type { WriteOptions } from './types.ts'
import { deleteCondition, deleteGroup, PATCH_CONDITION, rowsFilter, UPSERT_CONDITION } from './conditions.ts'
import { BIGINT_MARK, wireId } from './wire-ids.ts'

export interface Limits {
  /** rows (upserts + deletes) per request */
  maxRows: number
  /** approximate JSON bytes per request; a single larger op is sent alone */
  maxBytes: number
  /** transactions (commit LSNs) with deletes per request: each is one clause of the request's delete_condition */
  maxDeleteVersions: number
  /**
   * turbopuffer's largest request body (512 MiB): an op larger than that alone (a row's documents, which are
   * replaced in one request) is refused before sending instead of after uploading it
   */
  requestBytes: number
}

export const DEFAULT_LIMITS: Limits = {
  maxRows: 10_000,
  maxBytes: 64 * 1024 * 1024,
  maxDeleteVersions: 256,
  requestBytes: 512 * 1024 * 1024,
}

/** Why `p` cannot be sent in any request within `limits`, if it cannot. */
export function overRequestLimit(p: PreparedOp, limits: Limits): string | undefined {
  if (p.bytes + REQUEST_OVERHEAD_BYTES <= limits.requestBytes) return undefined
  const what = p.op.kind === 'row'
    ? `row ${showId(p.op.id)} (its ${p.op.documents.length} documents, replaced in one request)`
    : `document ${showId(p.op.id)}`
  return `${what} is about ${p.bytes} bytes, over turbopuffer's request limit of ${limits.requestBytes} bytes` +
    (p.op.kind === 'row' ? ': raise [mapping.chunking] size or make fewer, smaller documents' : '')
}

/** An op ready to send: the row it becomes (upserts) and its approximate share of the request body. */
export interface PreparedOp {
  op: WriteOp
  row?: Record<string, unknown>
  /** an upsert whose stored document keeps its vector (`op.stored`): sent as a patch, without a vector */
  patch?: boolean
  /** a row op's documents (row-documents mode) */
  rows?: Record<string, unknown>[]
  /** of a row op's documents, those sent as patches (`stored`: their vector kept), spared by the delete filter */
  patches?: Record<string, unknown>[]
  /**
   * the JSON of `row`, `rows` and `patches` as measured: a request body the sink sends itself is put together from
   * these (writeBodyParts), not serialized a second time
   */
  json?: string
  rowsJson?: string[]
  patchesJson?: string[]
  bytes: number
}

/** The documents an op upserts or deletes by id, as `Limits.maxRows` counts them (a row op: its documents, ≥ 1). */
function opRows(p: PreparedOp): number {
  return p.rows ? Math.max(1, p.rows.length + (p.patches?.length ?? 0)) : 1
}

/**
 * One op per id: turbopuffer answers 400 when one request names an id twice. The op with the highest version wins;
 * on a tie the later one.
 */
export function collapseOps(ops: WriteOp[]): WriteOp[] {
  const byId = new Map<string, WriteOp>()
  for (const op of ops) {
    const key = idKey(op.id)
    const seen = byId.get(key)
    if (!seen || seen.version <= op.version) {
      // delete first so the surviving op takes the position of the latest one (order does not matter otherwise)
      byId.delete(key)
      byId.set(key, op)
    }
  }
  return [...byId.values()]
}

/** Checks what turbopuffer would refuse anyway, and builds the row. Returns an error message for a bad op. */
export function prepareOp(op: WriteOp): PreparedOp | string {
  if (op.kind === 'row') return prepareRowOp(op)
  const idError = checkId(op.id)
  if (idError) return idError
  if (typeof op.version !== 'string' || op.version === '') return `op for id ${showId(op.id)}: no version`
  if (op.kind === 'delete') {
    // the id appears in `deletes` and again in the delete condition
    return { op, bytes: 2 * String(op.id).length + op.version.length + 50 }
  }
  if (op.kind !== 'upsert') {
    const bad = op as { id: unknown; kind: unknown }
    return `op for id ${showId(bad.id)}: unknown kind ${JSON.stringify(bad.kind)}`
  }
  // embeddings paid once: the stored document has the vector of this text; a patch keeps it (no vector sent)
  const patch = op.stored !== undefined
  const built = buildRow(op.id, op.attributes, patch ? undefined : op.vector, op.version)
  if (typeof built === 'string') return built
  const prepared: PreparedOp = { op, row: built.row, json: built.json, bytes: built.bytes }
  if (patch) prepared.patch = true
  return prepared
}

/** turbopuffer refuses a filterable string over 4 KiB: a row key longer than that cannot be filtered on. */
const MAX_ROW_KEY_BYTES = 4096

/** A row's documents (row-documents mode): each built as an upsert, carrying the row key and the version. */
function prepareRowOp(op: Extract<WriteOp, { kind: 'row' }>): PreparedOp | string {
  if (typeof op.id !== 'string' || op.id === '') return `row ${showId(op.id)}: the row key must be a non-empty string`
  const keyBytes = Buffer.byteLength(op.id)
  if (keyBytes > MAX_ROW_KEY_BYTES) {
    return `row "${op.id.slice(0, 40)}…": its key is ${keyBytes} bytes, over the ${MAX_ROW_KEY_BYTES} bytes ` +
      `turbopuffer can filter on (${ROW_ATTR}); a row with several documents needs a shorter key`
  }
  if (typeof op.version !== 'string' || op.version === '') return `op for row ${showId(op.id)}: no version`
  const rows: Record<string, unknown>[] = []
  const patches: Record<string, unknown>[] = []
  const rowsJson: string[] = []
  const patchesJson: string[] = []
  // the key appears in the delete filter
  let bytes = keyBytes + op.version.length + 50
  const seen = new Set<string>()
  for (const doc of op.documents) {
    if (typeof doc.id !== 'string') return `row ${showId(op.id)}: document id ${showId(doc.id)} is not a string`
    if (seen.has(doc.id)) return `row ${showId(op.id)}: document id ${showId(doc.id)} is given twice`
    seen.add(doc.id)
    const idError = checkId(doc.id)
    if (idError) return `row ${showId(op.id)}: ${idError}`
    const vector = doc.stored ? undefined : doc.vector
    const built = buildRow(doc.id, { ...doc.attributes, [ROW_ATTR]: op.id }, vector, op.version)
    if (typeof built === 'string') return `row ${showId(op.id)}: ${built}`
    // a patched document's id is also in the delete filter's NotIn
    if (doc.stored) {
      patches.push(built.row)
      patchesJson.push(built.json)
      bytes += built.bytes + doc.id.length + 3
    } else {
      rows.push(built.row)
      rowsJson.push(built.json)
      bytes += built.bytes
    }
  }
  return patches.length ? { op, rows, patches, rowsJson, patchesJson, bytes } : { op, rows, rowsJson, bytes }
}

/** One document as sent: its attributes, id, vector and version, checked; its JSON size. */
function buildRow(
  id: Id,
  attributes: Record<string, unknown> | undefined,
  vector: number[] | undefined,
  version: string,
): { row: Record<string, unknown>; json: string; bytes: number } | string {
  const row: Record<string, unknown> = {}
  // for-in, not Object.entries: no array per attribute per document (attributes are plain objects)
  for (const name in attributes) {
    const value = attributes[name]
    if (name === 'id') {
      if (value === id) continue
      return `attribute "id" (${JSON.stringify(value)}) differs from the document id ${showId(id)}`
    }
    if (name === VERSION_ATTR && value !== version) return `attribute "${VERSION_ATTR}" is reserved for puffgres`
    if (name.charCodeAt(0) === 36) return `attribute "${name}": names must not start with "$"`
    // a UTF-16 unit is at most 3 bytes of UTF-8: only a name over 42 units can be over 128 bytes
    if (name.length > 42 && Buffer.byteLength(name) > 128) {
      return `attribute "${name.slice(0, 40)}…": names are at most 128 bytes`
    }
    if (name === 'vector' && vector !== undefined) return 'attribute "vector" given twice (attributes and vector)'
    if (value !== undefined) row[name] = value
  }
  row.id = id
  if (vector !== undefined) row.vector = vector
  row[VERSION_ATTR] = version
  let json: string
  let out = row
  try {
    json = JSON.stringify(row)
  } catch {
    // an int8 beyond 2^53 arrives as a bigint: carried as a marked string, sent as a bare integer (client.ts)
    try {
      json = JSON.stringify(row, (_k, x) => typeof x === 'bigint' ? BIGINT_MARK + x : x)
      out = JSON.parse(json)
    } catch (e) {
      return `document ${showId(id)} cannot be encoded as JSON: ${(e as Error).message}`
    }
  }
  const bytes = Buffer.byteLength(json) + 1
  // Counted as turbopuffer counts it, a value is at most 4 times its JSON (`1,` counts 8 bytes), so a document whose
  // JSON is within a quarter of the value limit breaks no size limit: only larger ones are measured.
  if (bytes > VALUE_BYTES / 4) {
    const sizeError = checkSizes(id, row)
    if (sizeError) return sizeError
  }
  return { row: out, json, bytes }
}

/**
 * turbopuffer refuses an attribute value over 8 MiB and a document over 64 MiB (the local server's `value-size` and
 * `document-size` rules, measured the same way: turbopuffer/sizes.ts). Returns the error for such a document.
 */
function checkSizes(id: Id, row: Record<string, unknown>): string | undefined {
  let total = 0
  for (const [name, value] of Object.entries(row)) {
    if (name === 'id') continue
    if (name === 'vector') {
      total += vectorBytes(value)
      continue
    }
    const bytes = valueBytes(value)
    if (bytes > VALUE_BYTES) {
      return `attribute "${name}" of document ${showId(id)} is ${bytes} bytes, over turbopuffer's limit of ` +
        `${VALUE_BYTES} bytes (8 MiB) for one value: leave the column out of the mapping's columns, or shorten it ` +
        'in a transform'
    }
    total += bytes
  }
  if (total > DOCUMENT_BYTES) {
    return `document ${showId(id)} is ${total} bytes, over turbopuffer's limit of ${DOCUMENT_BYTES} bytes (64 MiB) ` +
      "for one document: leave some columns out of the mapping's columns, or shorten them in a transform"
  }
  return undefined
}

function checkId(id: unknown): string | undefined {
  if (typeof id === 'number') {
    if (Number.isSafeInteger(id) && id >= 0) return undefined
    return `id ${id}: numeric ids must be unsigned integers (beyond 2^53 as a bigint, to stay exact)`
  }
  if (typeof id === 'bigint') {
    if (id >= 0n && id < 1n << 64n) return undefined
    return `id ${id}: integer ids must be within 0…2^64−1`
  }
  if (typeof id === 'string') {
    if (id === '') return 'id "": ids must not be empty'
    if (Buffer.byteLength(id) > 64) return `id "${id.slice(0, 40)}…": string ids are at most 64 bytes`
    return undefined
  }
  return `id ${String(id)}: ids are strings or unsigned integers, not ${typeof id}`
}

/** Greedy split into requests within `limits`, keeping the ops' order. */
export function chunkOps(ops: PreparedOp[], limits: Omit<Limits, 'requestBytes'>): PreparedOp[][] {
  const chunks: PreparedOp[][] = []
  let chunk: PreparedOp[] = []
  let bytes = 0
  let rows = 0
  let versions = new Set<string>()
  for (const p of ops) {
    // a row op's filter clause counts as a delete clause: grouped by transaction the same way (writeBody)
    const group = p.op.kind === 'delete'
      ? deleteGroup(p.op.version)
      : p.op.kind === 'row'
      ? 'r' + deleteGroup(p.op.version)
      : undefined
    const newVersion = group !== undefined && !versions.has(group)
    const n = opRows(p)
    const full = rows + n > limits.maxRows || bytes + p.bytes > limits.maxBytes ||
      (newVersion && versions.size >= limits.maxDeleteVersions)
    if (chunk.length > 0 && full) {
      chunks.push(chunk)
      chunk = []
      bytes = 0
      rows = 0
      versions = new Set()
    }
    chunk.push(p)
    bytes += p.bytes
    rows += n
    if (group !== undefined) versions.add(group)
  }
  if (chunk.length > 0) chunks.push(chunk)
  return chunks
}

/**
 * The write request for one chunk. Without `documents`, the body leaves out `upsert_rows` and `patch_rows` (their
 * conditions stay): writeBodyParts puts them in from their JSON.
 */
export function writeBody(
  chunk: PreparedOp[],
  opts: WriteOptions,
  documents = true,
): Omit<NamespaceWriteParams, 'namespace'> {
  const rows: Record<string, unknown>[] = []
  const patches: Record<string, unknown>[] = []
  const deletes: Array<{ id: Id; version: string }> = []
  const replaced: Array<{ id: Id; version: string; spare?: Id[] }> = []
  for (const p of chunk) {
    if (p.op.kind === 'upsert') (p.patch ? patches : rows).push(p.row!)
    else if (p.op.kind === 'row') {
      replaced.push(p.patches ? { ...p.op, spare: p.patches.map((r) => r.id as Id) } : p.op)
      for (const r of p.rows!) rows.push(r)
      if (p.patches) patches.push(...p.patches)
    } else deletes.push(p.op)
  }
  const body: Omit<NamespaceWriteParams, 'namespace'> = {
    // the caller's schema first: the version attribute's type is not the caller's to change
    schema: { ...(opts.schema as NamespaceWriteParams['schema']), [VERSION_ATTR]: 'string' },
  }
  if (rows.length > 0) {
    if (documents) body.upsert_rows = rows as NamespaceWriteParams['upsert_rows']
    body.upsert_condition = UPSERT_CONDITION
  }
  if (patches.length > 0) {
    if (documents) body.patch_rows = patches as NamespaceWriteParams['patch_rows']
    body.patch_condition = PATCH_CONDITION
    // which patches applied: the others are redone as upserts with their vectors
    body.return_affected_ids = true
  }
  if (deletes.length > 0) {
    body.deletes = deletes.map((d) => wireId(d.id))
    body.delete_condition = deleteCondition(deletes)
  }
  if (replaced.length > 0) {
    // applied first, in the same request as the upserts: the row's documents older than its new version go
    body.delete_by_filter = rowsFilter(replaced)
    body.schema = { ...body.schema, [ROW_ATTR]: 'string' }
  }
  if (opts.distanceMetric) body.distance_metric = opts.distanceMetric
  return body
}

/**
 * The JSON of writeBody(chunk, opts) as the pieces it is made of, in order, its documents taken from the JSON
 * prepareOp measured them by: a document is serialized once (it was twice: to measure it, and in the body). The
 * request is encoded from the pieces into one buffer (keep-alive.ts), no text of the whole body built on the way (a
 * joined copy of a request's documents and another of the body, per request: garbage a tenant batch's many requests
 * made). Bigints stay marked (restoreBigints), each within one piece.
 */
export function writeBodyParts(chunk: PreparedOp[], opts: WriteOptions): string[] {
  const parts = ['{']
  const documents = (key: string, patches: boolean) => {
    let first = true
    const add = (json: string) => {
      parts.push(first ? `"${key}":[` : ',', json)
      first = false
    }
    for (const p of chunk) {
      if (p.op.kind === 'upsert') {
        if (!!p.patch === patches) add(p.json!)
      } else if (p.op.kind === 'row') {
        for (const r of (patches ? p.patchesJson : p.rowsJson) ?? []) add(r)
      }
    }
    if (!first) parts.push('],')
  }
  documents('upsert_rows', false)
  documents('patch_rows', true)
  // the body always has a schema: never `{}`
  parts.push(JSON.stringify(writeBody(chunk, opts, false)).slice(1))
  return parts
}

/** How many of a request's ops changed something, from the write response. */
export function countWritten(
  res: { rows_upserted?: number; rows_patched?: number; rows_deleted?: number; rows_affected?: number },
  sent: number,
): number {
  let n: number
  if (res.rows_upserted !== undefined || res.rows_deleted !== undefined) {
    n = (res.rows_upserted ?? 0) + (res.rows_patched ?? 0) + (res.rows_deleted ?? 0)
  } else n = res.rows_affected ?? sent
  return Math.max(0, Math.min(sent, n))
}

/** An id for a message (JSON.stringify throws on a bigint). */
function showId(id: unknown): string {
  const text = typeof id === 'bigint' ? id.toString() : JSON.stringify(id)
  // a row key may be 4 KiB: a message names it, it does not repeat it
  return text.length > 80 ? text.slice(0, 80) + '…' : text
}

/** what a request body holds besides its documents (schema, conditions), about */
const REQUEST_OVERHEAD_BYTES = 1024

/** A request's size, about: its documents, and 1 KiB for the rest of the body (schema, conditions). */
export function chunkBytes(chunk: PreparedOp[]): number {
  let n = REQUEST_OVERHEAD_BYTES
  for (const p of chunk) n += p.bytes
  return n
}
