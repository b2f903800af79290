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
  | {
    kind: 'upsert'
    id: Id
    attributes: Record<string, unknown>
    vector?: number[]
    version: string
    /** embeddings paid once: written by a versioned patch that keeps the stored vector (see `StoredEmbedding`) */
    stored?: StoredEmbedding
  }
  | { kind: 'delete'; id: Id; version: string }
  | RowWriteOp

/**
 * Row-documents mode (chunks): all of a row's documents at once. `id` is the row key (`ROW_ATTR` of its documents);
 * the sink deletes the row's documents older than `version` by filter and upserts `documents` in the same request
 * (docs/ARCHITECTURE.md, "A row's documents"; invariant 11). No documents: the row's documents are removed.
 */
export interface RowWriteOp {
  kind: 'row'
  id: string
  version: string
  documents: Array<{ id: string; attributes: Record<string, unknown>; vector?: number[]; stored?: StoredEmbedding }>
}

/**
 * Embeddings paid once (docs/ARCHITECTURE.md, "Embeddings paid once"): the stored document already carries the vector
 * of this text (its `EMBED_HASH_ATTR` equals the new one), so it is written without a vector, by `patch_rows` guarded
 * by its version. A patch that does not apply (the document went away) is redone as an upsert with the vector of
 * `text`, set on `attribute` (`vector`, or the attribute `[mapping.embedding] attribute` names).
 */
export interface StoredEmbedding {
  text: string
  attribute: string
}

/**
 * hex sha256 of `model + "\n" + text`, first 32 digits: the text a document's vector was embedded from (a vector in
 * another attribute than `vector`: that name and a NUL byte first; `embedHash`).
 */
export const EMBED_HASH_ATTR = '_puffgres_embed_hash'

/** The attribute naming a document's row in row-documents mode (filterable: the replacement filters on it). */
export const ROW_ATTR = '_puffgres_row'
/** A chunk document's number, 0… */
export const CHUNK_ATTR = '_puffgres_chunk'

/** Where a write op came from, so that a permanent failure can be put in the dead-letter queue. */
export interface OpOrigin {
  mapping: string
  /** commit LSN (or snapshot LSN) as text */
  lsn: string
  event?: unknown
}
