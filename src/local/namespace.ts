// One namespace's state in memory: documents by id plus the metadata that a write can change.
import type { DistanceMetric } from '../types.ts'
import { compareIds, type DocId, idKey, type IdType } from './ids.ts'
import type { Schema } from './schema.ts'

/** A stored document: `id`, optional `vector` (numbers), then attributes; null attributes are not stored. */
export type Doc = { id: DocId; vector?: number[]; [attr: string]: unknown }

export interface NamespaceMeta {
  createdAt: string
  updatedAt: string
  /** attribute types, without `id` and `vector` */
  schema: Schema
  idType?: IdType
  dims?: number
  distanceMetric?: DistanceMetric
}

export function newMeta(now = new Date().toISOString()): NamespaceMeta {
  return { createdAt: now, updatedAt: now, schema: {} }
}

/**
 * The metadata for a write to change: the schema's entries are replaced, never changed in place, so a copy of the
 * schema object is enough (structuredClone of the whole was a tenth of the local server's time per small write).
 */
export function cloneMeta(meta: NamespaceMeta): NamespaceMeta {
  return { ...meta, schema: { ...meta.schema } }
}

export class Namespace {
  readonly docs = new Map<string, Doc>()
  /**
   * attribute → string value → keys of the documents holding it, for the attributes a filter looked up by equality
   * (src/local/candidates.ts): built on first use, then kept up to date by put and delete
   */
  private readonly eqIndexes = new Map<string, Map<string, Set<string>>>()

  constructor(readonly name: string, public meta: NamespaceMeta) {}

  /** The keys of the documents whose attribute `attr` is the string `value`. */
  keysWhere(attr: string, value: string): ReadonlySet<string> {
    let index = this.eqIndexes.get(attr)
    if (!index) {
      index = new Map()
      this.eqIndexes.set(attr, index)
      for (const [key, doc] of this.docs) indexOne(index, attr, key, doc, true)
    }
    return index.get(value) ?? EMPTY
  }

  key(id: DocId): string {
    return idKey(id, this.meta.idType)
  }

  get(id: DocId): Doc | undefined {
    return this.docs.get(this.key(id))
  }

  put(doc: Doc): void {
    const key = this.key(doc.id)
    if (this.eqIndexes.size > 0) this.reindex(key, this.docs.get(key), doc)
    this.docs.set(key, doc)
  }

  delete(id: DocId): void {
    const key = this.key(id)
    if (this.eqIndexes.size > 0) this.reindex(key, this.docs.get(key), undefined)
    this.docs.delete(key)
  }

  private reindex(key: string, old: Doc | undefined, doc: Doc | undefined): void {
    for (const [attr, index] of this.eqIndexes) {
      if (old) indexOne(index, attr, key, old, false)
      if (doc) indexOne(index, attr, key, doc, true)
    }
  }

  /** every document, ordered by id */
  sorted(): Doc[] {
    return [...this.docs.values()].sort((a, b) => compareIds(a.id, b.id))
  }

  /** the schema as the API shows it, `id` and `vector` included */
  describeSchema(): Record<string, Record<string, unknown>> {
    const out: Record<string, Record<string, unknown>> = {}
    if (this.meta.idType) out.id = { type: this.meta.idType, filterable: true }
    if (this.meta.dims !== undefined) {
      out.vector = {
        type: `[${this.meta.dims}]f32`,
        ann: this.meta.distanceMetric ? { distance_metric: this.meta.distanceMetric } : true,
      }
    }
    for (const [name, cfg] of Object.entries(this.meta.schema)) {
      out[name] = { ...cfg, filterable: cfg.filterable ?? !cfg.full_text_search }
    }
    return out
  }
}

const EMPTY: ReadonlySet<string> = new Set()

function indexOne(index: Map<string, Set<string>>, attr: string, key: string, doc: Doc, add: boolean): void {
  const v = doc[attr]
  if (typeof v !== 'string') return
  let keys = index.get(v)
  if (add) {
    if (!keys) index.set(v, keys = new Set())
    keys.add(key)
  } else if (keys) {
    keys.delete(key)
    if (keys.size === 0) index.delete(v)
  }
}
