// Types shared by the parts of the pipeline. The ones a transform author sees live in transform-types.ts, whose text
// `puffgres init` writes for editors; they are re-exported here and from `src/mod.ts` (`import type { RowEvent, Action }
// from 'puffgres'`). A Row's values are decoded as `postgres/values.ts` says.
import type { Id } from './transform-types.ts'
export type * from './transform-types.ts'

/** One id as a map key (`s…` for strings, `n…` for uint ids, whether a number or a bigint holds them). */
export function idKey(id: Id): string {
  return typeof id === 'string' ? `s${id}` : `n${id}`
}

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
