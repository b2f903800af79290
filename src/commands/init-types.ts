// The declaration file `init` writes so that `import type { RowEvent, Action } from 'puffgres'` type-checks in a
// user's editor without installing anything. test/init.test.ts type-checks the scaffold against it.
export const TYPES_FILE =
  `// Types for puffgres transforms (written by \`puffgres init\`; editors find it through tsconfig.json paths).
export type Id = string | number
export type Row = Record<string, unknown>
export interface RowEvent {
  type: 'insert' | 'update' | 'delete'
  /** same as type (the original puffgres's name) */
  op: 'insert' | 'update' | 'delete'
  id: Id
  schema: string
  table: string
  new?: Row
  old?: Row
  /** commit LSN, e.g. "16/B374D848" (backfill: the snapshot LSN) */
  lsn: string
  mapping: string
}
export type DistanceMetric = 'cosine_distance' | 'euclidean_squared'
export type Action =
  | {
    type: 'upsert'
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
export interface TransformContext {
  mapping: string
  embed(text: string): Promise<number[]>
  embed(texts: string[]): Promise<number[][]>
  log: Logger
  env: Record<string, string | undefined>
}
export type Transform = (event: RowEvent, ctx: TransformContext) => Action | Promise<Action>
export type BatchTransform = (events: RowEvent[], ctx: TransformContext) => Action[] | Promise<Action[]>
`
