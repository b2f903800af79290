// Re-index without downtime (docs/ARCHITECTURE.md, invariant 10): a new version of a mapping into a new namespace is
// applied while the old version stays live (`kept_live`): `run` writes every change to both from `migrate`'s place
// in the stream on, the backfill fills the new namespace, and retiring the old version stops its writes at the
// retire's place in the stream (then its namespace may be deleted).
import type postgres from 'postgres'
import type { Config, Mapping } from '../config/load.ts'
import { appliedMigrations, ensureKeptLive, keptVersions, MIGRATE_MESSAGE_PREFIX } from '../postgres/state.ts'
import { parseLsn } from '../postgres/lsn.ts'

export class ReindexError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ReindexError'
  }
}

export interface ReindexPlan {
  /** the version being built (the newest in the files) */
  next: Mapping
  /** the version serving now, kept live until retired; undefined when the new version is applied already */
  current?: Mapping
}

/**
 * What `reindex <name>` does: the newest version in the files must be a new namespace of the same table as the
 * newest applied version (that one stays live), or already applied with an older version kept (then only the
 * backfill is left).
 */
export async function planReindex(config: Config, sql: postgres.Sql, name: string): Promise<ReindexPlan> {
  const next = config.mappings.find((m) => m.name === name)
  if (!next) {
    const known = config.mappings.map((m) => m.name).join(', ') || 'none'
    throw new ReindexError(`no mapping named "${name}" in puffgres/migrations (mappings: ${known})`)
  }
  const applied = (await appliedMigrations(sql)).filter((a) => a.name === name)
  if (!applied.length) {
    throw new ReindexError(
      `mapping "${name}" was never migrated: \`puffgres migrate\`, then \`puffgres backfill ${name}\``,
    )
  }
  const newest = applied[applied.length - 1]
  if (newest.version === next.version) {
    const kept = await keptVersions(sql)
    if ([...kept].some((k) => k.startsWith(`${name}@`))) return { next }
    throw new ReindexError(
      `mapping "${name}" version ${next.version} is applied and no older version is live: to re-index, add a file ` +
        `with version = ${next.version + 1} and a new target.namespace`,
    )
  }
  const current = config.migrations.find((m) => m.name === name && m.version === newest.version)
  if (!current) {
    throw new ReindexError(
      `mapping "${name}" version ${newest.version} is applied but its file is gone: it must stay while it is live`,
    )
  }
  if (current.namespace === next.namespace) {
    throw new ReindexError(
      `${next.file}: target.namespace: a re-index builds a new namespace while "${current.namespace}" keeps serving; ` +
        'give the new version a new namespace',
    )
  }
  if (current.schema !== next.schema || current.table !== next.table) {
    throw new ReindexError(
      `${next.file}: source: a re-index keeps the table (${current.schema}.${current.table}); for another table, ` +
        'add a mapping with another name',
    )
  }
  return { next, current }
}

/** In `migrate`'s transaction: keeps `current` live beside the version being applied. */
export async function keepLive(tx: postgres.Sql, current: Mapping): Promise<void> {
  await ensureKeptLive(tx)
  await tx`UPDATE __puffgres_migrations SET kept_live = true WHERE name = ${current.name} AND version = ${current.version}`
}

/**
 * Retires the older versions of `name` kept live: `run` stops writing them at this transaction's place in the
 * stream. Returns their namespaces and the WAL position after the commit.
 */
export async function retireKept(
  config: Config,
  sql: postgres.Sql,
  name: string,
): Promise<{ namespaces: string[]; lsn: bigint }> {
  const kept = await keptVersions(sql)
  const versions = config.migrations.filter((m) => m.name === name && kept.has(`${m.name}@${m.version}`))
  if (!versions.length) throw new ReindexError(`mapping "${name}" has no older version live: nothing to retire`)
  await sql.begin(async (tx) => {
    await tx`UPDATE __puffgres_migrations SET kept_live = false WHERE name = ${name} AND kept_live`
    await tx`SELECT pg_logical_emit_message(true, ${MIGRATE_MESSAGE_PREFIX}, ${'retire ' + name})`
  })
  // the insert position: pg_current_wal_lsn() is the write position, behind the commit under synchronous_commit = off
  const [{ lsn }] = await sql<{ lsn: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS lsn`
  return { namespaces: versions.map((v) => v.namespace), lsn: parseLsn(lsn) }
}

/**
 * Waits until every `run` streaming from this database has confirmed past `lsn` (it handled the retire and every
 * write before it landed), so that no write of a retired version is in flight when its namespace is deleted: every
 * active logical slot of the database whose walsender is puffgres's (or whose application name this role cannot
 * see), whatever its name (a scale-out process or a hot standby that took over streams from another slot than the
 * one the command is given). A `run` started later builds its routes without the retired version. Returns the slots
 * still behind after `timeoutMs` (none: passed).
 */
export async function waitPast(sql: postgres.Sql, lsn: bigint, timeoutMs: number): Promise<string[]> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const slots = await sql<{ slot: string; confirmed: string | null }[]>`
      SELECT s.slot_name AS slot, s.confirmed_flush_lsn::text AS confirmed
      FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
      WHERE s.slot_type = 'logical' AND s.database = current_database() AND s.active
        AND (r.application_name IS NULL OR r.application_name = 'puffgres')`
    const behind = slots.filter((s) => !s.confirmed || parseLsn(s.confirmed) < lsn).map((s) => s.slot)
    if (!behind.length || Date.now() > until) return behind
    await new Promise((r) => setTimeout(r, 200))
  }
}
