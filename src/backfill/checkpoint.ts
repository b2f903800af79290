// A backfill's durable progress in `__puffgres_backfill` (one row per mapping and version): the last key whose
// page is written and re-checked, so that `--resume` continues after it. In `__puffgres_backfill_pages`, the key
// texts of every page that may be written but is not checkpointed yet (see backfill.ts). Also the lock that keeps
// two backfills of one mapping from running at once.
import type postgres from 'postgres'

export interface BackfillRecord {
  mapping: string
  version: number
  status: 'running' | 'done'
  /** the id column texts of the last row of the last checkpointed page; null before the first page */
  lastKey: string[] | null
  rowsDone: number
  docsWritten: number
  totalEstimate: number | null
  /** the snapshot LSN of the last checkpointed page */
  snapshotLsn: string | null
  startedAt: Date
  updatedAt: Date
  finishedAt: Date | null
}

interface Raw {
  mapping: string
  version: number
  status: string
  last_key: string[] | null
  rows_done: string
  docs_written: string
  total_estimate: string | null
  snapshot_lsn: string | null
  started_at: Date
  updated_at: Date
  finished_at: Date | null
}

function fromRaw(r: Raw): BackfillRecord {
  return {
    mapping: r.mapping,
    version: r.version,
    status: r.status === 'done' ? 'done' : 'running',
    lastKey: r.last_key,
    rowsDone: Number(r.rows_done),
    docsWritten: Number(r.docs_written),
    totalEstimate: r.total_estimate === null ? null : Number(r.total_estimate),
    snapshotLsn: r.snapshot_lsn,
    startedAt: r.started_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  }
}

export async function getBackfill(
  sql: postgres.Sql,
  mapping: string,
  version: number,
): Promise<BackfillRecord | undefined> {
  const [r] = await sql<Raw[]>`
    SELECT mapping, version, status, last_key, rows_done::text, docs_written::text, total_estimate::text,
           snapshot_lsn::text, started_at, updated_at, finished_at
    FROM __puffgres_backfill WHERE mapping = ${mapping} AND version = ${version}`
  return r && fromRaw(r)
}

/** Starts (or starts over) a backfill: progress cleared, status running. */
export async function startBackfill(
  sql: postgres.Sql,
  mapping: string,
  version: number,
  totalEstimate: number | undefined,
): Promise<BackfillRecord> {
  const [r] = await sql<Raw[]>`
    INSERT INTO __puffgres_backfill (mapping, version, status, total_estimate)
    VALUES (${mapping}, ${version}, 'running', ${totalEstimate ?? null})
    ON CONFLICT (mapping, version) DO UPDATE SET status = 'running', last_key = NULL, rows_done = 0,
      docs_written = 0, total_estimate = EXCLUDED.total_estimate, snapshot_lsn = NULL, started_at = now(),
      updated_at = now(), finished_at = NULL
    RETURNING mapping, version, status, last_key, rows_done::text, docs_written::text, total_estimate::text,
      snapshot_lsn::text, started_at, updated_at, finished_at`
  return fromRaw(r)
}

export interface PageProgress {
  lastKey: string[]
  rows: number
  docs: number
  snapshotLsn: string
  /** the journal id of the last page covered (recordPage); the journal is cleared up to it */
  pageId: string
}

/** Records that every row up to `lastKey` is written and re-checked, and forgets the keys of those pages. */
export async function saveCheckpoint(
  sql: postgres.Sql,
  mapping: string,
  version: number,
  p: PageProgress,
): Promise<void> {
  await sql`
    WITH done AS (
      DELETE FROM __puffgres_backfill_pages WHERE mapping = ${mapping} AND version = ${version} AND id <= ${p.pageId}
    )
    UPDATE __puffgres_backfill SET last_key = ${sql.json(p.lastKey)}, rows_done = rows_done + ${p.rows},
      docs_written = docs_written + ${p.docs}, snapshot_lsn = ${p.snapshotLsn}, updated_at = now()
    WHERE mapping = ${mapping} AND version = ${version}`
}

/** A page whose documents may be written but which is not checkpointed: its read LSN and key texts. */
export interface PageInFlight {
  id: string
  lsn: string
  /** keys[j][i]: id column j of row i */
  keys: string[][]
}

/**
 * Records a page's key texts before any of its documents is written; returns its journal id. `literals`: each id
 * column's texts as a text[] literal (textArrayLiteral), stored as the text of one text[][] (the re-check sends the
 * same literals; parsed only if a later run reads the page back).
 */
export async function recordPage(
  sql: postgres.Sql,
  mapping: string,
  version: number,
  lsn: string,
  literals: string[],
): Promise<string> {
  const [r] = await sql.unsafe<{ id: string }[]>(
    `INSERT INTO __puffgres_backfill_pages (mapping, version, lsn, keys) VALUES ($1, $2, $3, $4) RETURNING id::text`,
    [mapping, version, lsn, `{${literals.join(',')}}`],
  )
  return r.id
}

/** The pages an interrupted backfill of the mapping may have written without checkpointing them, oldest first. */
export async function pagesInFlight(sql: postgres.Sql, mapping: string, version: number): Promise<PageInFlight[]> {
  return await sql<PageInFlight[]>`
    SELECT id::text, lsn::text, keys::text[] AS keys FROM __puffgres_backfill_pages
    WHERE mapping = ${mapping} AND version = ${version} ORDER BY id`
}

/**
 * Forgets the pages other versions of the mapping left in the journal (a run of an older version that died): they
 * are re-checked against that version's table, transform and namespace, which are gone. Returns how many.
 */
export async function forgetOtherVersions(sql: postgres.Sql, mapping: string, version: number): Promise<number> {
  const rows = await sql`DELETE FROM __puffgres_backfill_pages WHERE mapping = ${mapping} AND version <> ${version}
    RETURNING 1`
  return rows.length
}

/** Forgets one page of the journal (its re-check is done). */
export async function forgetPage(sql: postgres.Sql, id: string): Promise<void> {
  await sql`DELETE FROM __puffgres_backfill_pages WHERE id = ${id}`
}

export async function finishBackfill(sql: postgres.Sql, mapping: string, version: number): Promise<void> {
  await sql`
    UPDATE __puffgres_backfill SET status = 'done', updated_at = now(), finished_at = now()
    WHERE mapping = ${mapping} AND version = ${version}`
}

/** Two-key advisory lock: a constant for puffgres backfills, and the mapping name's hash. */
const LOCK_CLASS = 0x70756666 // 'puff'

export type BackfillLock = { release(): Promise<void> }

/**
 * Takes the mapping's backfill lock on a dedicated session (PostgreSQL releases it when that session ends, so a
 * killed backfill never leaves it behind). Resolves to undefined, with the holder's backend pid, when it is taken.
 */
export async function lockBackfill(
  sql: postgres.Sql,
  mapping: string,
): Promise<{ lock: BackfillLock; heldBy?: undefined } | { lock?: undefined; heldBy: number | null }> {
  const conn = await sql.reserve()
  try {
    const [r] = await conn<{ ok: boolean }[]>`SELECT pg_try_advisory_lock(${LOCK_CLASS}, hashtext(${mapping})) AS ok`
    if (r.ok) {
      return {
        lock: {
          async release() {
            try {
              await conn`SELECT pg_advisory_unlock(${LOCK_CLASS}, hashtext(${mapping}))`
            } finally {
              conn.release()
            }
          },
        },
      }
    }
    const [h] = await conn<{ pid: number }[]>`
      SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND classid = ${LOCK_CLASS}::bigint::oid AND objid = (hashtext(${mapping})::bigint & 4294967295)::oid`
    conn.release()
    return { heldBy: h?.pid ?? null }
  } catch (e) {
    conn.release()
    throw e
  }
}
