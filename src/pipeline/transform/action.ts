// Validates what a transform returned and turns it into one canonical action. Every transform (TypeScript module,
// `bin:` process, identity) goes through `normalizeAction`, so the sink only ever sees well-formed actions.
import { z } from 'zod'
import { type DistanceMetric, type Id, type RowEvent, type StoredEmbedding, VERSION_ATTR } from '../../types.ts'
import { showId } from '../docid.ts'

export type NormalizedAction =
  | {
    type: 'upsert'
    id: Id
    attributes: Record<string, unknown>
    vector?: number[]
    distance_metric?: DistanceMetric
    /** set by the embedding step when the stored document already has the vector (embed-once.ts) */
    stored?: StoredEmbedding
  }
  | { type: 'delete'; id: Id }
  | { type: 'skip' }

/**
 * Row-documents mode (chunks): all of the row's documents, ids as strings (docs/ARCHITECTURE.md, "A row's
 * documents"). Made by the chunking step (transform/chunk-documents.ts), never directly by a transform's answer.
 */
export interface RowDocumentsAction {
  type: 'documents'
  documents: Array<
    { type: 'upsert'; id: string; attributes: Record<string, unknown>; vector?: number[]; stored?: StoredEmbedding }
  >
}

/**
 * The outcome of transforming one event. `retryable` marks failures caused by an unavailable dependency (the
 * embedding provider after its retries), which the caller should retry rather than dead-letter.
 */
export type TransformResult =
  | { ok: true; action: NormalizedAction | RowDocumentsAction }
  | { ok: false; error: string; retryable?: boolean }

const MAX_ID_BYTES = 64
const MAX_ATTR_NAME_BYTES = 128
const encoder = new TextEncoder()

const ID_RULE = `expected a non-negative integer or a non-empty string of at most ${MAX_ID_BYTES} bytes`
const idSchema = z.union([z.string(), z.number(), z.bigint()], { error: ID_RULE }).superRefine((id, ctx) => {
  const ok = typeof id === 'string'
    ? id !== '' && encoder.encode(id).length <= MAX_ID_BYTES
    : id >= 0 && (typeof id === 'bigint' ? id < 1n << 64n : Number.isSafeInteger(id))
  if (!ok) {
    const big = typeof id === 'number' && id > Number.MAX_SAFE_INTEGER
    ctx.addIssue({
      code: 'custom',
      message: `${ID_RULE}${big ? ' (integers above 2^53 lose precision as a number: use a bigint)' : ''}, got ${
        typeof id === 'string' ? JSON.stringify(id.slice(0, 80)) : String(id)
      }`,
    })
  }
})

const attributesSchema = z.record(z.string(), z.unknown())

// The original puffgres spelled attributes `doc`; some of its templates used `document`.
export const upsertSchema = z.strictObject({
  type: z.literal('upsert'),
  op: z.literal('upsert').optional(),
  id: idSchema.optional(),
  attributes: attributesSchema.optional(),
  doc: attributesSchema.optional(),
  document: attributesSchema.optional(),
  vector: z.array(z.number().finite()).min(1).optional(),
  distance_metric: z.enum(['cosine_distance', 'euclidean_squared']).optional(),
})
export const deleteSchema = z.strictObject({
  type: z.literal('delete'),
  op: z.literal('delete').optional(),
  id: idSchema.optional(),
})
const skipSchema = z.strictObject({ type: z.literal('skip'), op: z.literal('skip').optional() })

const UPSERT_KEYS = new Set(['type', 'op', 'id', 'attributes', 'doc', 'document', 'vector', 'distance_metric'])
const DELETE_KEYS = new Set(['type', 'op', 'id'])

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object') return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

function plainIdOk(id: unknown): boolean {
  if (typeof id === 'number') return Number.isSafeInteger(id) && id >= 0
  // 21 UTF-16 units are at most 63 UTF-8 bytes
  return typeof id === 'string' && id !== '' && (id.length <= 21 || encoder.encode(id).length <= MAX_ID_BYTES)
}

/**
 * The common well-formed actions, checked by hand: zod costs microseconds per action, which adds up at stream
 * rates. Accepts a subset of what the schemas accept; anything else (errors, bigint ids) goes through zod.
 */
export function plainShapeOk(obj: Record<string, unknown>, type: unknown): boolean {
  const keys = type === 'upsert' ? UPSERT_KEYS : DELETE_KEYS
  for (const k in obj) if (!keys.has(k)) return false
  if (obj.op !== undefined && obj.op !== type) return false
  if (obj.id !== undefined && !plainIdOk(obj.id)) return false
  if (type === 'delete') return true
  for (const k of ['attributes', 'doc', 'document']) if (obj[k] !== undefined && !isPlainObject(obj[k])) return false
  const v = obj.vector
  if (v !== undefined) {
    if (!Array.isArray(v) || v.length === 0) return false
    for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'number' || !Number.isFinite(v[i])) return false
  }
  const m = obj.distance_metric
  return m === undefined || m === 'cosine_distance' || m === 'euclidean_squared'
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'string' ? JSON.stringify(value) : typeof value
}

function formatIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => (i.path.length ? i.path.join('.') + ': ' : '') + i.message)
    .join('; ')
}

/** Why an attribute value cannot be stored, or undefined when it can. Walks arrays; `undefined` never gets here. */
function badValue(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'bigint':
      return undefined
    case 'number':
      // JSON would silently turn these into null
      return Number.isFinite(value) ? undefined : `${value} is not a finite number`
    case 'function':
    case 'symbol':
      return `a ${typeof value} cannot be stored`
    case 'undefined':
      return 'undefined inside an array cannot be stored'
  }
  if (value === null || value instanceof Date || value instanceof Uint8Array) return undefined
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = badValue(value[i])
      if (bad) return `[${i}]: ${bad}`
    }
  }
  return undefined
}

function normalizeId(id: Id | bigint): Id {
  // a bigint within 2^53 is the same uint id as the number
  return typeof id === 'bigint' && id <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(id) : id
}

function sameId(a: unknown, b: Id): boolean {
  return a === b || String(a) === String(b)
}

/**
 * Checks attribute names and values and copies them (the transform may have handed us the row object itself).
 * `id` equal to the document id is dropped (the original puffgres put it in `doc`); `vector` in the attributes is
 * the original's way of setting the vector, so it is moved there.
 */
function normalizeAttributes(
  attrs: Record<string, unknown>,
  field: string,
  id: Id,
): { attributes: Record<string, unknown>; vector?: unknown } | string {
  const out: Record<string, unknown> = {}
  let vector: unknown
  for (const name in attrs) {
    if (!Object.hasOwn(attrs, name)) continue
    const value = attrs[name]
    if (value === undefined) continue
    if (name === 'id') {
      if (sameId(value, id)) continue
      return `${field}.id: ${describe(value)} differs from the document id ${showId(id)}; set the action's id`
    }
    if (name === 'vector') {
      vector = value
      continue
    }
    if (name === '') return `${field}: attribute names cannot be empty`
    if (name.charCodeAt(0) === 36 /* $ */) return `${field}.${name}: attribute names cannot start with '$'`
    if (name === VERSION_ATTR) return `${field}.${name}: reserved for puffgres's row versions`
    if (name.length * 3 > MAX_ATTR_NAME_BYTES && encoder.encode(name).length > MAX_ATTR_NAME_BYTES) {
      return `${field}.${name.slice(0, 40)}…: attribute names are limited to ${MAX_ATTR_NAME_BYTES} bytes`
    }
    const bad = badValue(value)
    if (bad) return `${field}.${name}${bad.startsWith('[') ? '' : ': '}${bad}`
    // turbopuffer arrays hold no nulls: a PostgreSQL array's NULL elements are left out whichever path built the
    // value (the identity transform does the same; a transform often hands event.new's arrays on as they are)
    out[name] = Array.isArray(value) && value.includes(null) ? value.filter((x) => x !== null) : value
  }
  return { attributes: out, vector }
}

function invalid(label: string, event: RowEvent, detail: string): TransformResult {
  return { ok: false, error: `${label} returned an invalid action for id ${showId(event.id)}: ${detail}` }
}

/**
 * Validates one action returned for `event`. `label` names the transform in errors, e.g.
 * `transform transforms/x.ts`. Never throws.
 */
export function normalizeAction(raw: unknown, event: RowEvent, label: string): TransformResult {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return invalid(
      label,
      event,
      `expected an action object like { type: 'upsert' | 'delete' | 'skip' }, got ${describe(raw)}`,
    )
  }
  const obj = raw as Record<string, unknown>
  // `op` is accepted for `type` (the original puffgres's event field name, which transforms tend to echo)
  const type = obj.type ?? obj.op
  const input = obj.type === undefined ? { ...obj, type } : obj
  if (type === 'skip') {
    const r = skipSchema.safeParse(input)
    return r.success ? { ok: true, action: { type: 'skip' } } : invalid(label, event, formatIssues(r.error))
  }
  if (type === 'delete') {
    let id = obj.id as Id | bigint | undefined
    if (!plainShapeOk(obj, type)) {
      const r = deleteSchema.safeParse(input)
      if (!r.success) return invalid(label, event, formatIssues(r.error))
      id = r.data.id
    }
    return { ok: true, action: { type: 'delete', id: id === undefined ? event.id : normalizeId(id) } }
  }
  if (type !== 'upsert') {
    return invalid(label, event, `type: expected 'upsert', 'delete' or 'skip', got ${describe(type)}`)
  }
  let a = obj as z.infer<typeof upsertSchema>
  if (!plainShapeOk(obj, type)) {
    const r = upsertSchema.safeParse(input)
    if (!r.success) return invalid(label, event, formatIssues(r.error))
    a = r.data
  }
  const spellings = [a.attributes && 'attributes', a.doc && 'doc', a.document && 'document'].filter(Boolean)
  if (spellings.length > 1) return invalid(label, event, `${spellings.join(' and ')}: give only one of them`)
  const field = (spellings[0] || 'attributes') as string
  const id = a.id === undefined ? event.id : normalizeId(a.id)
  const attrs = normalizeAttributes(a.attributes ?? a.doc ?? a.document ?? {}, field, id)
  if (typeof attrs === 'string') return invalid(label, event, attrs)
  let vector = a.vector
  if (attrs.vector !== undefined && attrs.vector !== null) {
    if (vector) return invalid(label, event, `${field}.vector: the vector is given twice (also as vector)`)
    const v = z.array(z.number().finite()).min(1).safeParse(attrs.vector)
    if (!v.success) return invalid(label, event, `${field}.vector: ${formatIssues(v.error)}`)
    vector = v.data
  }
  const action: NormalizedAction = { type: 'upsert', id, attributes: attrs.attributes }
  if (vector) action.vector = vector
  if (a.distance_metric) action.distance_metric = a.distance_metric
  return { ok: true, action }
}

/**
 * `normalizeAction({ type: 'upsert', attributes }, event, label)` for attributes the caller built itself and no
 * one else holds (the identity transform), without copying them when every name and value is plainly storable; the
 * rest (a `vector` or `id` column, reserved or long names, unstorable values) takes normalizeAction's path.
 */
export function normalizeOwnedAttributes(
  attributes: Record<string, unknown>,
  event: RowEvent,
  label: string,
): TransformResult {
  for (const name in attributes) {
    const value = attributes[name]
    if (
      value === undefined || name === 'id' || name === 'vector' || name === '' || name.charCodeAt(0) === 36 ||
      name === VERSION_ATTR || name.length * 3 > MAX_ATTR_NAME_BYTES ||
      (typeof value === 'object' && value !== null
        ? badValue(value)
        : typeof value === 'number'
        ? !Number.isFinite(value)
        : typeof value !== 'string' && typeof value !== 'boolean' && typeof value !== 'bigint')
    ) return normalizeAction({ type: 'upsert', attributes }, event, label)
  }
  return { ok: true, action: { type: 'upsert', id: event.id, attributes } }
}

/** The error text of anything thrown, one line. */
export function errorMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err)
  const line = msg.split('\n', 1)[0]
  return line.length > 500 ? line.slice(0, 500) + '…' : line
}
