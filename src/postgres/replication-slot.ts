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
 * PostgreSQL 17+ can keep a copy of a logical slot on a physical standby (`sync_replication_slots = on` there) when
 * the slot is a failover slot; after a promotion the copy goes on where puffgres left off. `failover: true` asks for
 * one: a slot created here gets FAILOVER, an existing one without it gets it (ALTER_REPLICATION_SLOT). Before 17, and
 * on a standby (which cannot have failover slots of its own), it does nothing: there is no such option.
 */
export interface SlotOptions {
  failover?: boolean
}

/** What ensureSlot did; `failover`: the slot was created with the failover flag, or it was turned on (SlotOptions). */
export interface EnsuredSlot {
  created: boolean
  failover?: 'created' | 'enabled'
}

/** What createSlot did, and the LSN from which the slot will stream. */
export type CreatedSlot = EnsuredSlot & { lsn: bigint }

/**
 * Makes sure the logical slot exists in this database with the pgoutput plugin. When it is missing it is created
 * if `create`, else SlotMissingError.
 */
export async function ensureSlot(
  sql: postgres.Sql,
  slot: string,
  opts: { create: boolean } & SlotOptions,
): Promise<EnsuredSlot> {
  const existing = await findSlot(sql, slot)
  if (existing) {
    const enabled = opts.failover === true && await enableFailover(sql, slot, existing)
    return enabled ? { created: false, failover: 'enabled' } : { created: false }
  }
  if (!opts.create) throw new SlotMissingError(slot)
  const { created, failover } = await createSlot(sql, slot, opts)
  return failover ? { created, failover } : { created }
}

/**
 * Creates the slot unless it exists. Returns the LSN from which the slot will stream: the consistent point when
 * created here (everything committed after it will be streamed), else the slot's confirmed flush LSN.
 */
export async function createSlot(
  sql: postgres.Sql,
  slot: string,
  opts: SlotOptions = {},
): Promise<CreatedSlot> {
  checkSlotName(slot)
  const failover = opts.failover === true && await failoverSlotsHere(sql)
  try {
    // the options list (PostgreSQL 15+) is the only form that takes FAILOVER; SNAPSHOT 'nothing' = NOEXPORT_SNAPSHOT
    const [r] = await sql.unsafe(
      failover
        ? `CREATE_REPLICATION_SLOT ${slot} LOGICAL pgoutput (SNAPSHOT 'nothing', FAILOVER true)`
        : `CREATE_REPLICATION_SLOT ${slot} LOGICAL pgoutput NOEXPORT_SNAPSHOT`,
    )
    const lsn = parseLsn(r.consistent_point)
    return failover ? { created: true, lsn, failover: 'created' } : { created: true, lsn }
  } catch (e) {
    if ((e as { code?: string }).code !== '42710') throw e
  }
  const existing = await findSlot(sql, slot)
  if (!existing) throw new Error(`replication slot "${slot}" exists but could not be read`)
  const lsn = existing.confirmedFlush
  return failover && await enableFailover(sql, slot, existing)
    ? { created: false, lsn, failover: 'enabled' }
    : { created: false, lsn }
}

/** PostgreSQL 17 or later, and not a standby: a logical slot created or altered here may be a failover slot. */
async function failoverSlotsHere(sql: postgres.Sql): Promise<boolean> {
  const [r] = await sql.unsafe(
    `SELECT current_setting('server_version_num')::int >= 170000 AND NOT pg_is_in_recovery() AS ok`,
  )
  return r.ok === true
}

/**
 * Turns the failover flag of an existing slot on (PostgreSQL 17+); false when there was nothing to do or it cannot
 * be done now. A slot another process streams from is left alone: ALTER_REPLICATION_SLOT would wait until that
 * process lets go of it (the next connect, or the next `run` that takes over, turns it on).
 */
export async function enableFailover(
  sql: postgres.Sql,
  slot: string,
  s: SlotInfo,
  timeoutMs = ALTER_TIMEOUT_MS,
): Promise<boolean> {
  // failover is undefined before PostgreSQL 17 (no such column)
  if (s.failover !== false || s.activePid !== undefined || !(await failoverSlotsHere(sql))) return false
  // another process may take the slot between the look and the ALTER, which would then wait for it (for as long as
  // it streams): given up after a while, and tried again on the next connect
  const alter = sql.unsafe(`ALTER_REPLICATION_SLOT ${slot} (FAILOVER true)`)
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)))
  const done = await Promise.race([alter.then(() => 'done' as const), late]).finally(() => clearTimeout(timer))
  if (done === 'done') return true
  alter.cancel()
  await alter.catch(() => {})
  return false
}

/** How long ALTER_REPLICATION_SLOT may wait for a slot another process took in the meantime. */
const ALTER_TIMEOUT_MS = 5000

/** A slot's row in pg_replication_slots, as findSlot reads it. */
export interface SlotInfo {
  confirmedFlush: bigint
  restartLsn: bigint
  activePid: number | undefined
  /** pg_replication_slots.failover: PostgreSQL 17+; undefined before (no such column) */
  failover: boolean | undefined
}

/** The slot's row in pg_replication_slots, checked to be a pgoutput slot of this database; undefined if none. */
export async function findSlot(sql: postgres.Sql, slot: string): Promise<SlotInfo | undefined> {
  checkSlotName(slot)
  const [r] = await sql.unsafe(
    `SELECT slot_type, plugin, database, current_database() AS current, active_pid,
            confirmed_flush_lsn::text AS confirmed_flush, restart_lsn::text AS restart,
            to_jsonb(s) ->> 'failover' AS failover
     FROM pg_replication_slots s WHERE slot_name = ${quoteLiteral(slot)}`,
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
    failover: r.failover == null ? undefined : r.failover === 'true',
  }
}
