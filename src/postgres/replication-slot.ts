// The slot commands of the replication connection: IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT and the checks of an
// existing slot (logical, pgoutput, this database). ReplicationStream exposes them as methods over its walsender
// connection (postgres/replication.ts); the errors callers catch (slot in use, slot missing) live here too.
import type postgres from 'postgres'
import { parseLsn } from './lsn.ts'

export interface SystemIdentity {
  systemId: string
  timeline: number
  /** the server's current WAL flush position */
  xlogPos: bigint
  dbName: string
}

/** START_REPLICATION failed because another connection streams from the slot (SQLSTATE 55006). */
export class SlotInUseError extends Error {
  readonly code = '55006'
  constructor(readonly slot: string, readonly activePid: number | undefined, options?: { cause?: unknown }) {
    super(
      `replication slot "${slot}" is in use${activePid ? ` by process ${activePid}` : ''} (another puffgres run?)`,
      options,
    )
    this.name = 'SlotInUseError'
  }
}

/** The slot does not exist and creating it was not allowed. */
export class SlotMissingError extends Error {
  constructor(readonly slot: string) {
    super(`replication slot "${slot}" does not exist (run with --create-slot or create it)`)
    this.name = 'SlotMissingError'
  }
}

const SLOT_NAME = /^[a-z0-9_]{1,63}$/

export function checkSlotName(slot: string) {
  if (!SLOT_NAME.test(slot)) {
    throw new Error(`invalid replication slot name ${JSON.stringify(slot)} (lower-case letters, digits, _; ≤ 63)`)
  }
}

export function quoteLiteral(s: string): string {
  return "'" + s.replaceAll("'", "''") + "'"
}

/** IDENTIFY_SYSTEM: cluster id, timeline, current WAL position, database. */
export async function identifySystem(sql: postgres.Sql): Promise<SystemIdentity> {
  const [r] = await sql.unsafe('IDENTIFY_SYSTEM')
  return {
    systemId: String(r.systemid),
    timeline: Number(r.timeline),
    xlogPos: parseLsn(r.xlogpos),
    dbName: r.dbname,
  }
}

/**
 * Makes sure the logical slot exists in this database with the pgoutput plugin. When it is missing it is created
 * if `create`, else SlotMissingError. `created` says whether this call created it.
 */
export async function ensureSlot(
  sql: postgres.Sql,
  slot: string,
  opts: { create: boolean },
): Promise<{ created: boolean }> {
  const existing = await findSlot(sql, slot)
  if (existing) return { created: false }
  if (!opts.create) throw new SlotMissingError(slot)
  return { created: (await createSlot(sql, slot)).created }
}

/**
 * Creates the slot unless it exists. Returns the LSN from which the slot will stream: the consistent point when
 * created here (everything committed after it will be streamed), else the slot's confirmed flush LSN.
 */
export async function createSlot(sql: postgres.Sql, slot: string): Promise<{ created: boolean; lsn: bigint }> {
  checkSlotName(slot)
  try {
    const [r] = await sql.unsafe(`CREATE_REPLICATION_SLOT ${slot} LOGICAL pgoutput NOEXPORT_SNAPSHOT`)
    return { created: true, lsn: parseLsn(r.consistent_point) }
  } catch (e) {
    if ((e as { code?: string }).code !== '42710') throw e
  }
  const existing = await findSlot(sql, slot)
  if (!existing) throw new Error(`replication slot "${slot}" exists but could not be read`)
  return { created: false, lsn: existing.confirmedFlush }
}

/** A slot's row in pg_replication_slots, as findSlot reads it. */
export interface SlotInfo {
  confirmedFlush: bigint
  restartLsn: bigint
  activePid: number | undefined
}

/** The slot's row in pg_replication_slots, checked to be a pgoutput slot of this database; undefined if none. */
export async function findSlot(sql: postgres.Sql, slot: string): Promise<SlotInfo | undefined> {
  checkSlotName(slot)
  const [r] = await sql.unsafe(
    `SELECT slot_type, plugin, database, current_database() AS current, active_pid,
            confirmed_flush_lsn::text AS confirmed_flush, restart_lsn::text AS restart
     FROM pg_replication_slots WHERE slot_name = ${quoteLiteral(slot)}`,
  )
  if (!r) return undefined
  if (r.slot_type !== 'logical') throw new Error(`replication slot "${slot}" is a ${r.slot_type} slot, not logical`)
  if (r.database !== r.current) {
    throw new Error(`replication slot "${slot}" belongs to database "${r.database}", not "${r.current}"`)
  }
  if (r.plugin !== 'pgoutput') {
    throw new Error(`replication slot "${slot}" uses the output plugin "${r.plugin}", not pgoutput`)
  }
  return {
    confirmedFlush: r.confirmed_flush ? parseLsn(r.confirmed_flush) : 0n,
    restartLsn: r.restart ? parseLsn(r.restart) : 0n,
    activePid: r.active_pid == null ? undefined : Number(r.active_pid),
  }
}
