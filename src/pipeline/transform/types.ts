// The contract every transform runner meets (module, `bin:` process, identity), apart from the runners
// themselves so that runner.ts and process.ts both depend on it and not on each other.
import type { ChunkingConfig } from '../../config/row-documents.ts'
import type { EmbeddingSpec } from './declarative-embedding.ts'
import type { Embedder } from '../../embeddings/embedder.ts'
import type { Logger, RowEvent } from '../../types.ts'
import type { TransformResult } from './action.ts'
import type { StoredHashes } from './embed-once.ts'

export interface TransformRunner {
  /** how errors name the transform, e.g. `transform transforms/x.ts` */
  readonly label: string
  /** One result per event, same order. Never rejects for a bad row; see each runner for fatal conditions. */
  run(events: RowEvent[], opts?: RunOptions): Promise<TransformResult[]>
  close(): Promise<void>
}

/** Per call of `run`: what the writer knows of where the batch goes. */
export interface RunOptions {
  /** the stored embedding hashes of the batch's documents (embeddings paid once, embed-once.ts) */
  storedHashes?: StoredHashes
}

export interface TransformRunnerOptions {
  /** the mapping's name (ctx.mapping, log fields) */
  mapping: string
  /** serves ctx.embed and declarative embeddings */
  embedder?: Embedder
  log: Logger
  /** per event: a module's per-event call, or a `bin:` process's answer to one line (default 30 s) */
  timeoutMs?: number
  /** per call of a batch-form module (default 120 s) */
  batchTimeoutMs?: number
  /** ctx.env, and the environment of a `bin:` process (default: process.env) */
  env?: Record<string, string | undefined>
  /** identity runner only: the columns copied to attributes (default: every column of the row) */
  columns?: string[]
  /** `[mapping.embedding]`: applied to the upserts after the transform (with chunking: to each chunk) */
  embedding?: EmbeddingSpec
  /** `[mapping] documents = "many"`: the transform may return several documents a row (documents.ts) */
  documents?: 'many'
  /** `[mapping.chunking]`: each upsert becomes the row's chunk documents (chunk-documents.ts) */
  chunking?: ChunkingConfig
  /** `bin:` only: consecutive deaths without one answer before run() rejects (default 5) */
  maxConsecutiveFailures?: number
}
