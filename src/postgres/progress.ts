// Per-mapping progress of the stream, for `puffgres status` (the stream's real checkpoint is the slot's confirmed
// flush LSN; this table only reports).
import type postgres from 'postgres'
import { formatLsn } from './lsn.ts'

export interface MappingProgress {
  mapping: string
  upserted: number
  deleted: number
  lsn: bigint
}

export async function recordProgress(sql: postgres.Sql, progress: MappingProgress[]): Promise<void> {
  for (const p of progress) {
    await sql`
      INSERT INTO __puffgres_checkpoints (mapping, last_lsn, last_applied_at, docs_upserted, docs_deleted)
      VALUES (${p.mapping}, ${formatLsn(p.lsn)}, now(), ${p.upserted}, ${p.deleted})
      ON CONFLICT (mapping) DO UPDATE SET
        last_lsn = GREATEST(__puffgres_checkpoints.last_lsn, EXCLUDED.last_lsn),
        last_applied_at = now(),
        docs_upserted = __puffgres_checkpoints.docs_upserted + EXCLUDED.docs_upserted,
        docs_deleted = __puffgres_checkpoints.docs_deleted + EXCLUDED.docs_deleted`
  }
}

/** The last LSN the stream or a backfill recorded in the state tables (as text), or undefined when none. */
export async function recordedProgress(sql: postgres.Sql): Promise<string | undefined> {
  const [r] = await sql<{ lsn: string | null }[]>`
    SELECT greatest(
      (SELECT max(last_lsn) FROM __puffgres_checkpoints),
      (SELECT max(snapshot_lsn) FROM __puffgres_backfill)
    )::text AS lsn`
  return r?.lsn ?? undefined
}
