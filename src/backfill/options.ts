// The options and results of a backfill run (backfill.ts), apart so that its stages (copy.ts) share them.
import type postgres from 'postgres'
import type { Sink } from '../turbopuffer/types.ts'
import type { Logger } from '../types.ts'
import type { BackfillRecord } from './checkpoint.ts'
import type { PoolPeaks } from './namespace-batches.ts'

export interface BackfillOptions {
  /** the mapping's name */
  mapping: string
  /** rows per batch: one transform call and one write (default 1000) */
  batchSize?: number
  /** continue an unfinished backfill from its last checkpoint */
  resume?: boolean
  /** start over even when a backfill is unfinished */
  restart?: boolean
  /** the replication slot created first (default: [stream] slot) */
  slot?: string
  /** create the slot even though it is gone after puffgres had written (a gap: see postgres/slot-guard.ts) */
  createSlot?: boolean
  /** write nothing (benchmarks) */
  discard?: boolean
  /** a sink to use instead of the configured one (tests, benchmarks) */
  sink?: Sink
  log?: Logger
  /** where the progress goes: a bar drawn with `write` when `tty`, log lines otherwise; false: none */
  progress?: { tty: boolean; write(s: string): void } | false
  /** what the user is told (start, resume, restart); the CLI prints it */
  say?: (line: string) => void
  /** stops after the page being written is checkpointed */
  signal?: AbortSignal
  /** a tenant mapping: the pool of open namespace batches (tenant-page-writer.ts; tests and benchmarks) */
  tenantPool?: { maxOpen?: number; maxRows?: number }
  /** after each checkpoint (tests) */
  onCheckpoint?: (p: { lastKey: string[]; rowsDone: number }) => void
}

export interface BackfillStats {
  mapping: string
  /** rows read by this run */
  rows: number
  /** rows of the whole backfill, earlier runs of a resumed one included */
  rowsDone: number
  docsWritten: number
  /** re-checked rows that had gone (or left the predicate) and were deleted */
  deleted: number
  /** writes turned down because the namespace already held a newer version */
  skipped: number
  deadLettered: number
  /** member rows with a NULL id column, which cannot be documents */
  nullIds: number
  ms: number
  resumed: boolean
  /** a tenant mapping: the high-water marks of its pool of open namespace batches */
  pool?: PoolPeaks
}

export type BackfillResult =
  | ({ outcome: 'done' } & BackfillStats)
  | ({ outcome: 'stopped' } & BackfillStats)
  /** nothing done: an unfinished backfill exists and neither --resume nor --restart was given */
  | { outcome: 'unfinished'; record: BackfillRecord; lastKey: string }
  /** nothing done: --resume, but the backfill finished */
  | { outcome: 'finished-before'; record: BackfillRecord }
  /** nothing done: another backfill of the mapping holds the lock */
  | { outcome: 'busy'; heldBy: number | null }

/** What a backfill run works with once its options are checked. */
export interface BackfillCtx {
  sql: postgres.Sql
  log: Logger
  say: (line: string) => void
  batchSize: number
}
