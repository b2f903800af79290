// The dead-letter queue: rows a transform rejected or turbopuffer refused for good, with the error, kept in
// __puffgres_dlq until a retry succeeds or someone clears them.
import type postgres from 'postgres'
import { formatLsn } from './lsn.ts'

export interface DeadLetter {
  mapping: string
  docId?: string
  lsn: bigint
  event: unknown
  error: string
  /** not logged row by row: the stream said it once for the table (a replica identity without the id) */
  quiet?: true
}

export interface DlqEntry {
  id: string
  mapping: string
  doc_id: string | null
  lsn: string | null
  event: unknown
  error: string
  attempts: number
  first_failed_at: Date
  last_failed_at: Date
}

function jsonSafe(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v ?? null, (_k, x) => typeof x === 'bigint' ? x.toString() : x))
}

/**
 * Records failures. A row already in the queue for the same mapping and document is updated (attempts + 1, the
 * newest event and error) rather than duplicated, so a replayed stream does not pile up copies.
 */
export async function addDeadLetters(sql: postgres.Sql, letters: DeadLetter[]): Promise<void> {
  for (const l of letters) {
    const event = jsonSafe(l.event) as postgres.JSONValue
    const updated = l.docId === undefined ? [] : await sql`
      UPDATE __puffgres_dlq SET attempts = attempts + 1, last_failed_at = now(), error = ${l.error},
        event = ${sql.json(event)}, lsn = ${formatLsn(l.lsn)}
      WHERE mapping = ${l.mapping} AND doc_id = ${l.docId} RETURNING id`
    if (updated.length) continue
    await sql`
      INSERT INTO __puffgres_dlq (mapping, doc_id, lsn, event, error)
      VALUES (${l.mapping}, ${l.docId ?? null}, ${formatLsn(l.lsn)}, ${sql.json(event)}, ${l.error})`
  }
}

export async function listDeadLetters(
  sql: postgres.Sql,
  opts: { mapping?: string; limit?: number } = {},
): Promise<DlqEntry[]> {
  return await sql<DlqEntry[]>`
    SELECT id::text, mapping, doc_id, lsn::text, event, error, attempts, first_failed_at, last_failed_at
    FROM __puffgres_dlq
    WHERE ${opts.mapping === undefined ? sql`true` : sql`mapping = ${opts.mapping}`}
    ORDER BY id LIMIT ${opts.limit ?? 100}`
}

export async function countDeadLetters(sql: postgres.Sql): Promise<Map<string, number>> {
  const rows = await sql<{ mapping: string; n: number }[]>`
    SELECT mapping, count(*)::int AS n FROM __puffgres_dlq GROUP BY mapping`
  return new Map(rows.map((r) => [r.mapping, r.n]))
}

export async function getDeadLetter(sql: postgres.Sql, id: string): Promise<DlqEntry | undefined> {
  const [row] = await sql<DlqEntry[]>`
    SELECT id::text, mapping, doc_id, lsn::text, event, error, attempts, first_failed_at, last_failed_at
    FROM __puffgres_dlq WHERE id = ${id}::bigint`
  return row
}

/**
 * Removes entries: one by id, all of a mapping, or every entry. Returns how many were removed. `unchanged`: only if
 * the entry still is as it was read (`dlq retry`): the stream may have filed a newer failure of the same row on it
 * while the retry wrote (addDeadLetters updates the row's entry), which the retry's success does not cover.
 */
export async function deleteDeadLetters(
  sql: postgres.Sql,
  which: { id: string; unchanged?: Pick<DlqEntry, 'attempts'> } | { mapping: string } | { all: true },
): Promise<number> {
  const where = 'id' in which
    ? which.unchanged
      // every failure filed on an entry counts one more attempt (addDeadLetters, recordRetryFailure)
      ? sql`id = ${which.id}::bigint AND attempts = ${which.unchanged.attempts}`
      : sql`id = ${which.id}::bigint`
    : 'mapping' in which
    ? sql`mapping = ${which.mapping}`
    : sql`true`
  const rows = await sql`DELETE FROM __puffgres_dlq WHERE ${where} RETURNING id`
  return rows.length
}

/** A retry failed again: one more attempt, the new error and time. */
export async function recordRetryFailure(sql: postgres.Sql, id: string, error: string): Promise<void> {
  await sql`
    UPDATE __puffgres_dlq SET attempts = attempts + 1, last_failed_at = now(), error = ${error}
    WHERE id = ${id}::bigint`
}
