// Types shared by the parts of the pipeline. The ones a transform author sees are re-exported from `src/mod.ts`
// (`import type { RowEvent, Action } from 'puffgres'`).

/**
 * A document id: turbopuffer takes unsigned integers (a bigint beyond 2^53, sent exactly), UUIDs or strings.
 * Composite keys are joined into a string.
 */
export type Id = string | number | bigint

/** One id as a map key (`s…` for strings, `n…` for uint ids, whether a number or a bigint holds them). */
export function idKey(id: Id): string {
  return typeof id === 'string' ? `s${id}` : `n${id}`
}

/** A row as decoded from PostgreSQL: column name → JS value (see `postgres/values.ts` for the type mapping). */
export type Row = Record<string, unknown>

/** What a transform receives for one change. */
export interface RowEvent {
  type: 'insert' | 'update' | 'delete'
  /** same as `type`; the original (Rust) puffgres called it `op` */
  op: 'insert' | 'update' | 'delete'
  /** the document id extracted from the row by the mapping's `id` */
  id: Id
  schema: string
  table: string
  /** the row after the change (insert, update) */
  new?: Row
  /** the row before the change, as far as REPLICA IDENTITY provides it (delete, update) */
  old?: Row
  /** LSN of the change's commit, as PostgreSQL prints it (`16/B374D848`); for backfilled rows the snapshot LSN */
  lsn: string
  /** the mapping's name */
  mapping: string
}

export type DistanceMetric = 'cosine_distance' | 'euclidean_squared'

/** What a transform returns. `doc` is accepted for `attributes` (the original puffgres's spelling). */
export type Action =
  | {
    type: 'upsert'
    /** defaults to the event's id */
    id?: Id
    attributes?: Record<string, unknown>
    doc?: Record<string, unknown>
    vector?: number[]
    distance_metric?: DistanceMetric
  }
  | { type: 'delete'; id?: Id }
  | { type: 'skip' }

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
}

/** The second argument of a transform. */
export interface TransformContext {
  mapping: string
  /** embeds one text (→ one vector) or many (→ one vector each) with the configured provider */
  embed(text: string): Promise<number[]>
  embed(texts: string[]): Promise<number[][]>
  log: Logger
  env: Record<string, string | undefined>
}

export type Transform = (event: RowEvent, ctx: TransformContext) => Action | Promise<Action>
export type BatchTransform = (events: RowEvent[], ctx: TransformContext) => Action[] | Promise<Action[]>

/**
 * The version every document carries (docs/ARCHITECTURE.md, invariant 2), in the reserved attribute `VERSION_ATTR`.
 * Encoded as a fixed-width lowercase hex string so that string order is version order and no 64-bit LSN is
 * rounded by a JSON number: 16 hex digits of the commit LSN (backfill: the snapshot LSN), then 8 hex digits of the
 * change's position inside its transaction (backfill: 0), so two changes of one id in one transaction stay ordered.
 */
export const VERSION_ATTR = '_puffgres_version'

export function encodeVersion(lsn: bigint, seq = 0): string {
  return lsn.toString(16).padStart(16, '0') + seq.toString(16).padStart(8, '0')
}

/** One write to one document of a namespace, versioned. The sink makes each conditional on `version`. */
export type WriteOp =
  | { kind: 'upsert'; id: Id; attributes: Record<string, unknown>; vector?: number[]; version: string }
  | { kind: 'delete'; id: Id; version: string }

/** Where a write op came from, so that a permanent failure can be put in the dead-letter queue. */
export interface OpOrigin {
  mapping: string
  /** commit LSN (or snapshot LSN) as text */
  lsn: string
  event?: unknown
}
