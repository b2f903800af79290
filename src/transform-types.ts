// Types for puffgres transforms (written by `puffgres init`; editors find it through tsconfig.json paths).
// In puffgres's source this is src/transform-types.ts, whose text `puffgres init` writes as puffgres/puffgres.d.ts:
// declarations only, so that the text stays a valid declaration file.

/**
 * A document id: turbopuffer takes unsigned integers (a bigint beyond 2^53, sent exactly), UUIDs or strings.
 * Composite keys are joined into a string.
 */
export type Id = string | number | bigint

/** A row as decoded from PostgreSQL: column name → JS value. */
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
  /** `[mapping] documents = "many"` only: the row's documents, replacing all of its earlier ones */
  | {
    type: 'upsert'
    documents: Array<{
      /** defaults to `<row id>#<n>` */
      id?: Id
      attributes?: Record<string, unknown>
      doc?: Record<string, unknown>
      vector?: number[]
    }>
  }

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
