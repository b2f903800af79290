// Plans a write request against a namespace without changing it: validates everything first, so a request is
// applied entirely or not at all, and returns the resulting documents for the store to persist, then apply.
import type { DistanceMetric } from '../types.ts'
import { ApiError, badRequest, show } from './errors.ts'
import { compileFilter, type Predicate } from './filter.ts'
import { checkId, type DocId, idKey } from './ids.ts'
import { cloneMeta, type Doc, type Namespace, type NamespaceMeta, newMeta } from './namespace.ts'
import { LIMITS, violation } from './rules.ts'
import { checkAttrName, checkValue, inferType, parseAttrSchema, vectorDims } from './schema.ts'
import { checkDims, DISTANCE_METRICS, parseVector } from './vectors.ts'
import { vectorBytes } from '../turbopuffer/sizes.ts'
import { candidateKeys } from './candidates.ts'
import { allowPartial, BY_FILTER_LIMITS, type ByFilterLimits, patchByFilterParts, selectMatches } from './by-filter.ts'

const WRITE_KEYS = new Set([
  'upsert_rows',
  'upsert_columns',
  'patch_rows',
  'patch_columns',
  'deletes',
  'delete_by_filter',
  'delete_by_filter_allow_partial',
  'patch_by_filter',
  'patch_by_filter_allow_partial',
  'upsert_condition',
  'patch_condition',
  'delete_condition',
  'distance_metric',
  'schema',
  'return_affected_ids',
  'copy_from_namespace',
  'branch_from_namespace',
  'disable_backpressure',
  'encryption',
  'sharding',
])

export interface WritePlan {
  meta: NamespaceMeta
  /** documents as they are after the write */
  put: Doc[]
  deleted: DocId[]
  response: Record<string, unknown>
}

type Attrs = Record<string, unknown>

/**
 * `ns` is undefined when the namespace does not exist yet (a write creates it); `lookup` finds the source of
 * copy_from_namespace / branch_from_namespace.
 */
export function planWrite(
  ns: Namespace | undefined,
  body: Record<string, unknown>,
  bodyBytes: number,
  lookup: (name: string) => Namespace | undefined,
  limits: ByFilterLimits = BY_FILTER_LIMITS,
): WritePlan {
  for (const k of Object.keys(body)) {
    if (!WRITE_KEYS.has(k)) throw badRequest(`invalid write: unknown field ${show(k)}`)
  }
  if (body.copy_from_namespace !== undefined || body.branch_from_namespace !== undefined) {
    return planCopy(ns, body, lookup)
  }
  const meta: NamespaceMeta = ns ? cloneMeta(ns.meta) : newMeta()
  const existing = (id: DocId): Doc | undefined => ns?.docs.get(idKey(id, meta.idType))

  if (body.distance_metric !== undefined) setMetric(meta, body.distance_metric)
  if (body.schema !== undefined) applySchema(meta, body.schema)

  const upserts = rowsOf(body, 'upsert_rows', 'upsert_columns')
  const patches = rowsOf(body, 'patch_rows', 'patch_columns')
  const deletes = body.deletes === undefined ? [] : body.deletes
  if (!Array.isArray(deletes)) throw badRequest('invalid write: "deletes" must be a list of ids')

  // Fix the id type before computing any key, then reject an id targeted twice.
  const seen = new Set<string>()
  for (const id of [...upserts.map((r) => r.id), ...patches.map((r) => r.id), ...deletes]) {
    const t = checkId(id, meta.idType)
    meta.idType ??= t
    const key = idKey(id as DocId, meta.idType)
    if (seen.has(key)) {
      throw violation('duplicate-id', `invalid write: duplicate id ${showId(id)} in one request`)
    }
    seen.add(key)
  }

  for (const row of upserts) prepareAttrs(meta, row.attrs, () => `document ${showId(row.id)}`)
  for (const row of patches) {
    if (row.attrs.vector !== undefined) {
      throw violation(
        'patch-vector',
        `invalid patch of document ${showId(row.id)}: a vector cannot be patched; upsert the whole document`,
      )
    }
    prepareAttrs(meta, row.attrs, () => `document ${showId(row.id)}`)
  }

  const condition = (name: string): Predicate | undefined =>
    body[name] === undefined ? undefined : compileFilter(body[name], meta.schema, meta.idType)
  const upsertCond = condition('upsert_condition')
  const patchCond = condition('patch_condition')
  const deleteCond = condition('delete_condition')

  // The request's own changes, layered over the namespace: key → new document, or null for deleted.
  const staged = new Map<string, Doc | null>()
  const current = (id: DocId): Doc | undefined => {
    const key = idKey(id, meta.idType)
    return staged.has(key) ? staged.get(key) ?? undefined : existing(id)
  }
  const allCurrent = (): Doc[] => {
    const out = [...staged.values()].filter((d): d is Doc => d !== null)
    for (const [key, doc] of ns?.docs ?? []) if (!staged.has(key)) out.push(doc)
    return out
  }
  // The documents a by-filter operation matches, as the request has left them so far (these run before any upsert,
  // so every staged document is one of the namespace's): through an equality lookup when the filter allows one.
  const matching = (filter: unknown, pred: Predicate): Doc[] => {
    const keys = ns && candidateKeys(filter, ns, meta.schema)
    if (!keys) return allCurrent().filter((doc) => pred(doc, null))
    const out: Doc[] = []
    for (const key of keys) {
      const doc = staged.has(key) ? staged.get(key) : ns!.docs.get(key)
      if (doc && pred(doc, null)) out.push(doc)
    }
    return out
  }
  const upsertedIds: DocId[] = []
  const patchedIds: DocId[] = []
  const deletedIds: DocId[] = []

  // Order inside one request, as turbopuffer documents it: delete_by_filter, patch_by_filter, then the rest. The
  // *_condition fields guard only the per-id operations (src/local/by-filter.ts).
  let remaining: boolean | undefined
  if (body.delete_by_filter !== undefined) {
    const partial = allowPartial(body, 'delete_by_filter')
    const pred = compileFilter(body.delete_by_filter, meta.schema, meta.idType)
    const matched = matching(body.delete_by_filter, pred)
    const sel = selectMatches('delete_by_filter', matched, limits.deleteRows, partial)
    for (const doc of sel.docs) {
      staged.set(idKey(doc.id, meta.idType), null)
      deletedIds.push(doc.id)
    }
    remaining = sel.remaining
  }
  if (body.patch_by_filter !== undefined) {
    const partial = allowPartial(body, 'patch_by_filter')
    const { filters, patch } = patchByFilterParts(body.patch_by_filter)
    prepareAttrs(meta, patch, () => 'patch_by_filter')
    const pred = compileFilter(filters, meta.schema, meta.idType)
    const matched = matching(filters, pred)
    const sel = selectMatches('patch_by_filter', matched, limits.patchRows, partial)
    for (const doc of sel.docs) {
      staged.set(idKey(doc.id, meta.idType), merge(doc, patch))
      patchedIds.push(doc.id)
    }
    remaining = remaining || sel.remaining
  }
  for (const { id, attrs } of upserts) {
    const next = merge({ id }, attrs)
    const old = current(id)
    // An upsert applies when its condition passes or when the document does not exist.
    if (old && upsertCond && !upsertCond(old, next)) continue
    staged.set(idKey(id, meta.idType), next)
    upsertedIds.push(id)
  }
  for (const { id, attrs } of patches) {
    const old = current(id)
    if (!old) continue
    const next = merge(old, attrs)
    if (patchCond && !patchCond(old, next)) continue
    staged.set(idKey(id, meta.idType), next)
    patchedIds.push(id)
  }
  for (const id of deletes as DocId[]) {
    const old = current(id)
    if (!old) continue
    if (deleteCond && !deleteCond(old, null)) continue
    staged.set(idKey(id, meta.idType), null)
    deletedIds.push(id)
  }

  meta.updatedAt = new Date().toISOString()
  const put: Doc[] = []
  const deleted: DocId[] = []
  for (const [key, doc] of staged) {
    if (doc) put.push(doc)
    else if (ns?.docs.has(key)) deleted.push(ns.docs.get(key)!.id)
  }
  const response: Record<string, unknown> = {
    status: 'OK',
    message: 'OK',
    rows_affected: upsertedIds.length + patchedIds.length + deletedIds.length,
    rows_upserted: upsertedIds.length,
    rows_patched: patchedIds.length,
    rows_deleted: deletedIds.length,
    billing: { billable_logical_bytes_written: bodyBytes },
  }
  if (remaining !== undefined) response.rows_remaining = remaining
  if (body.return_affected_ids === true) {
    response.upserted_ids = upsertedIds
    response.patched_ids = patchedIds
    response.deleted_ids = deletedIds
  }
  return { meta, put, deleted, response }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Applies attributes over a document; null removes an attribute. */
function merge(base: Doc, attrs: Attrs): Doc {
  const out: Doc = { ...base }
  for (const k in attrs) { // no entries array per document (attrs is parsed JSON: own properties only)
    const v = attrs[k]
    if (v === null || v === undefined) delete out[k]
    else out[k] = v
  }
  return out
}

function setMetric(meta: NamespaceMeta, metric: unknown) {
  if (!DISTANCE_METRICS.includes(metric as DistanceMetric)) {
    throw badRequest(`invalid distance_metric ${show(metric)}: expected ${DISTANCE_METRICS.join(' or ')}`)
  }
  if (meta.distanceMetric && meta.distanceMetric !== metric) {
    throw badRequest(`invalid distance_metric ${show(metric)}: the namespace already uses ${meta.distanceMetric}`)
  }
  meta.distanceMetric = metric as DistanceMetric
}

/** Merges a `schema` object into the namespace's: new attributes get their type, existing ones keep it. */
export function applySchema(meta: NamespaceMeta, schema: unknown) {
  if (!isObject(schema)) throw badRequest('invalid schema: expected an object of attribute → type')
  for (const [name, spec] of Object.entries(schema)) {
    if (name === 'id') {
      const type = typeof spec === 'string' ? spec : (spec as { type?: unknown })?.type
      if (type !== 'uint' && type !== 'string' && type !== 'uuid') {
        throw badRequest(`invalid schema for "id": type must be uint, string or uuid, got ${show(type)}`)
      }
      if (meta.idType && meta.idType !== type) {
        throw violation(
          'id-type-mixed',
          `mixing id types is not supported: the namespace has ${meta.idType} ids, the schema says ${type}`,
        )
      }
      meta.idType = type
      continue
    }
    const cfg = parseAttrSchema(name, spec)
    if (name === 'vector') {
      const dims = vectorDims(cfg.type)!
      checkDims(dims, 'schema for "vector"')
      if (meta.dims !== undefined && meta.dims !== dims) {
        throw violation('vector-dimensions', `invalid schema for "vector": the namespace has ${meta.dims} dimensions`)
      }
      meta.dims = dims
      const ann = cfg.ann as { distance_metric?: unknown } | undefined
      if (isObject(ann) && ann.distance_metric !== undefined) setMetric(meta, ann.distance_metric)
      continue
    }
    checkAttrName(name)
    const old = Object.hasOwn(meta.schema, name) ? meta.schema[name] : undefined
    if (old && old.type !== cfg.type) {
      throw violation(
        'schema-type-change',
        `invalid schema for ${show(name)}: cannot change type ${old.type} to ${cfg.type}`,
      )
    }
    meta.schema[name] = { ...old, ...cfg }
  }
  checkAttributeCount(meta)
}

interface RowOp {
  id: DocId
  attrs: Attrs
}

function rowsOf(body: Record<string, unknown>, rowsKey: string, columnsKey: string): RowOp[] {
  const out: RowOp[] = []
  const rows = body[rowsKey]
  if (rows !== undefined) {
    if (!Array.isArray(rows)) throw badRequest(`invalid write: "${rowsKey}" must be a list of rows`)
    for (const row of rows) {
      if (!isObject(row)) throw badRequest(`invalid write: each of "${rowsKey}" must be an object, got ${show(row)}`)
      if (!('id' in row)) throw badRequest(`invalid write: a row of "${rowsKey}" has no "id"`)
      const { id, ...attrs } = row
      out.push({ id: id as DocId, attrs })
    }
  }
  const cols = body[columnsKey]
  if (cols !== undefined) {
    if (!isObject(cols) || !Array.isArray(cols.id)) {
      throw badRequest(`invalid write: "${columnsKey}" must be an object of equal-length lists including "id"`)
    }
    const n = cols.id.length
    for (const [name, values] of Object.entries(cols)) {
      if (!Array.isArray(values) || values.length !== n) {
        throw badRequest(`invalid write: "${columnsKey}.${name}" must be a list of ${n} values like "id"`)
      }
    }
    for (let i = 0; i < n; i++) {
      const attrs: Attrs = {}
      for (const [name, values] of Object.entries(cols)) if (name !== 'id') attrs[name] = (values as unknown[])[i]
      out.push({ id: cols.id[i] as DocId, attrs })
    }
  }
  return out
}

/**
 * Validates attribute values in place (vectors are decoded), inferring the types of attributes not seen before.
 * `what` names the document in a message ("document 7"; made only for one). A patch is measured by the values it
 * carries: the stored document it lands on is not read for size.
 */
function prepareAttrs(meta: NamespaceMeta, attrs: Attrs, what: () => string) {
  let bytes = 0
  for (const name in attrs) {
    const value = attrs[name]
    if (name === 'vector') {
      if (value === null || value === undefined) continue
      const v = parseVector(value)
      if (meta.dims !== undefined && meta.dims !== v.length) {
        throw violation('vector-dimensions', `invalid vector: ${v.length} dimensions, the namespace has ${meta.dims}`)
      }
      if (!meta.distanceMetric) throw badRequest('invalid write: distance_metric is required when writing vectors')
      meta.dims = v.length
      attrs.vector = v
      bytes += vectorBytes(v)
      continue
    }
    checkAttrName(name)
    if (value === undefined || value === null) continue
    if (!Object.hasOwn(meta.schema, name)) {
      // the first value of an undeclared attribute pins its type for good
      const type = inferType(name, value)
      if (type === undefined) continue
      meta.schema[name] = { type }
    }
    bytes += checkValue(name, meta.schema[name], value)
  }
  if (bytes > LIMITS.documentBytes) {
    throw violation('document-size', `invalid ${what()}: ${bytes} bytes, the limit is ${LIMITS.documentBytes}`)
  }
  checkAttributeCount(meta)
}

function planCopy(
  ns: Namespace | undefined,
  body: Record<string, unknown>,
  lookup: (name: string) => Namespace | undefined,
): WritePlan {
  const key = body.copy_from_namespace !== undefined ? 'copy_from_namespace' : 'branch_from_namespace'
  const others = Object.keys(body).filter((k) => k !== key)
  if (others.length > 0) throw badRequest(`invalid write: ${key} cannot be combined with ${others.join(', ')}`)
  const spec = body[key]
  const source = typeof spec === 'string' ? spec : (spec as { source_namespace?: unknown })?.source_namespace
  if (typeof source !== 'string') throw badRequest(`invalid ${key}: expected a namespace name`)
  if (isObject(spec) && (spec.source_api_key !== undefined || spec.source_region !== undefined)) {
    throw badRequest(`invalid ${key}: other regions and organisations do not exist on the local server`)
  }
  const src = lookup(source)
  if (!src) throw new ApiError(404, `namespace '${source}' was not found`)
  if (ns && ns.docs.size > 0) throw badRequest(`invalid ${key}: the destination namespace must be empty`)
  const now = new Date().toISOString()
  const meta = { ...structuredClone(src.meta), createdAt: ns?.meta.createdAt ?? now, updatedAt: now }
  const put = [...src.docs.values()]
  return {
    meta,
    put,
    deleted: [],
    response: {
      status: 'OK',
      message: 'OK',
      rows_affected: put.length,
      rows_upserted: put.length,
      rows_patched: 0,
      rows_deleted: 0,
      billing: { billable_logical_bytes_written: 0 },
    },
  }
}

function checkAttributeCount(meta: NamespaceMeta) {
  const n = Object.keys(meta.schema).length
  if (n > LIMITS.attributesPerNamespace) {
    throw violation(
      'attribute-count',
      `too many attributes: ${n}, at most ${LIMITS.attributesPerNamespace} per namespace`,
    )
  }
}

function showId(id: unknown): string {
  return typeof id === 'bigint' ? String(id) : show(id)
}
