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

export class Namespace {
  readonly docs = new Map<string, Doc>()

  constructor(readonly name: string, public meta: NamespaceMeta) {}

  key(id: DocId): string {
    return idKey(id, this.meta.idType)
  }

  get(id: DocId): Doc | undefined {
    return this.docs.get(this.key(id))
  }

  put(doc: Doc): void {
    this.docs.set(this.key(doc.id), doc)
  }

  delete(id: DocId): void {
    this.docs.delete(this.key(id))
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
