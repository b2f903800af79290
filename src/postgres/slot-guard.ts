// Before `run` (re)connects: a slot that can no longer give what it promised stops the stream with what happened and
// what to do, instead of retrying forever or silently starting over (docs/ARCHITECTURE.md invariants 1 and 7).
// - invalidated (wal_status = 'lost', max_slot_wal_keep_size): PostgreSQL removed WAL the slot still needed.
// - gone although puffgres had streamed or backfilled (dropped while puffgres was stopped, or lost in a failover:
//   PostgreSQL before 17 does not carry logical slots over, 17+ only failover slots synced to the standby, see
//   [stream] failover_slot): a new slot starts now, and whatever was committed in between would never reach the
//   namespaces. It is created again only when asked (`--create-slot true`), by `run` and by `backfill` alike (a
//   backfill covers one mapping; the gap is in all of them).
import type postgres from 'postgres'
import { recordedProgress } from './progress.ts'
import type { Logger } from '../types.ts'

/** What `run` (and `backfill`) does with a missing slot: create it (true), refuse (false), or create it only if nothing was ever streamed. */
export type CreateSlot = boolean | 'if-new'

/** `run` or `backfill` turned the failover flag of an existing slot on ([stream] failover_slot, PostgreSQL 17+). */
export function logFailoverEnabled(log: Logger, slot: string) {
  log.info('enabled failover on the replication slot: a standby with sync_replication_slots = on keeps a copy', {
    slot,
  })
}

/** The slot cannot be used as it is: a configuration-class error (`run` exits 1). */
export class SlotGoneError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'SlotGoneError'
  }
}

const recovery = (slot: string) =>
  `create it again with \`puffgres run --create-slot true\` (or \`puffgres backfill <mapping> --create-slot true\`), ` +
  `then run \`puffgres backfill <mapping>\` (or \`puffgres verify --repair\`) for each mapping to bring the ` +
  `namespaces back in sync (slot "${slot}")`

/**
 * Throws SlotGoneError for an invalidated slot, and for a missing one that had progress unless `create` is true
 * (then it only warns). A missing slot without progress is left to ReplicationStream.ensureSlot.
 */
export async function checkSlot(
  sql: postgres.Sql,
  slot: string,
  create: CreateSlot,
  log: Logger,
  command: 'run' | 'backfill' = 'run',
): Promise<void> {
  // slot names are cluster-wide: look in every database, so that a namesake elsewhere is named, not taken for "gone"
  const [s] = await sql<
    {
      wal_status: string | null
      confirmed: string | null
      slot_type: string
      plugin: string | null
      database: string | null
      here: string
    }[]
  >`
    SELECT wal_status, confirmed_flush_lsn::text AS confirmed, slot_type, plugin, database, current_database() AS here
    FROM pg_replication_slots WHERE slot_name = ${slot}`
  if (s && (s.slot_type !== 'logical' || s.database !== s.here || s.plugin !== 'pgoutput')) {
    // retrying cannot help, and creating one is impossible while the name is taken: a configuration error
    const what = s.slot_type !== 'logical'
      ? `is a ${s.slot_type} slot`
      : s.database !== s.here
      ? `belongs to database "${s.database}", not "${s.here}"`
      : `uses the output plugin "${s.plugin}", not pgoutput`
    throw new SlotGoneError(
      `replication slot "${slot}" ${what}: slot names are shared by the whole PostgreSQL cluster; give this ` +
        `database's puffgres a slot name of its own ([stream] slot in puffgres.toml, or --slot)`,
    )
  }
  if (s?.wal_status === 'lost') {
    throw new SlotGoneError(
      `replication slot "${slot}" was invalidated (wal_status = lost): PostgreSQL removed WAL it still needed ` +
        `(max_slot_wal_keep_size), so changes committed after ${s.confirmed ?? 'its last confirmed position'} ` +
        `cannot be streamed. Drop it (SELECT pg_drop_replication_slot('${slot}')), then ${recovery(slot)}`,
    )
  }
  if (s || create === false) return
  const progress = await recordedProgress(sql)
  if (!progress) return
  if (create === true) {
    log.warn(
      'creating the replication slot again although puffgres streamed before: changes committed while it was ' +
        'missing are not in the namespaces; run `puffgres backfill` (or `puffgres verify --repair`) for each mapping' +
        (command === 'backfill' ? ' (this backfill covers one)' : ''),
      { slot, last_recorded: progress },
    )
    return
  }
  throw new SlotGoneError(
    `replication slot "${slot}" does not exist, but puffgres had written changes up to ${progress} through a ` +
      `slot (dropped while puffgres was stopped, lost in a failover, or named differently — backfill and run must ` +
      `use the same slot): what was committed since is not in the namespaces. ` +
      `Nothing was done; ${recovery(slot)}`,
  )
}

/**
 * The publication a failed stream names as missing (`publication "x" does not exist`), if that is why it failed.
 * Looks through `cause` (the replication stream wraps errors).
 */
export function missingPublication(err: unknown): string | undefined {
  for (let e = err as { message?: unknown; cause?: unknown } | undefined, i = 0; e && i < 4; e = e.cause as any, i++) {
    const m = /publication "([^"]+)" does not exist/.exec(String(e.message ?? ''))
    if (m) return m[1]
  }
  return undefined
}

/**
 * Why a slot cannot stream its publication, and the fix, as one line. PostgreSQL decodes a slot's WAL with the
 * catalog of its time: WAL written before the publication was created (a slot made first, by `backfill --slot`, or a
 * publication dropped and created again) fails on every attempt. Retrying cannot help; skipping that WAL would lose
 * its changes, so the slot starts again after the publication and the mappings are backfilled.
 */
export async function stuckSlotError(
  sql: postgres.Sql,
  slot: string,
  publication: string,
  mappings: readonly string[],
): Promise<SlotGoneError> {
  const [exists] = await sql`SELECT 1 FROM pg_publication WHERE pubname = ${publication}`.catch(() => [undefined])
  const backfills = mappings.map((m) => `puffgres backfill ${m} --slot ${slot} --create-slot`).join('; ')
  const restart = `SELECT pg_drop_replication_slot('${slot}'), then ${backfills || 'backfill each mapping'}, then ` +
    'start run again'
  return new SlotGoneError(
    exists
      ? `slot "${slot}" cannot stream publication "${publication}": the slot's WAL starts before the publication ` +
        'was created (or dropped and created again), and PostgreSQL reads it with the catalog of its time; fix: ' +
        restart
      : `slot "${slot}" streams publication "${publication}", which does not exist: run \`puffgres migrate\` (or ` +
        "`run --mapping`, which creates its own); the slot's WAL then starts before it: " + restart,
  )
}

const PEEK_CHANGES = 10_000

/**
 * Whether the slot can decode its WAL with `publication` (doctor): peeks at its next changes (at most PEEK_CHANGES:
 * a stuck run confirmed everything before the place it fails at, so that place comes soon). Undefined when the slot
 * is in use or the look fails for another reason; the error's publication when it is stuck.
 */
export async function peekStuck(sql: postgres.Sql, slot: string, publication: string): Promise<string | undefined> {
  try {
    await sql`SELECT 1 FROM pg_logical_slot_peek_binary_changes(${slot}, NULL, ${PEEK_CHANGES}, 'proto_version', '1',
      'publication_names', ${publication})`
    return undefined
  } catch (e) {
    return missingPublication(e)
  }
}
