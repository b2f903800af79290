// `puffgres status`: per mapping (namespace, migration version, documents written, last change, backfill, DLQ) and
// for the stream (slot, who streams it, confirmed LSN, lag, retained WAL). Read-only.
import type postgres from 'postgres'
import { countDeadLetters } from '../postgres/dlq.ts'
import type { Config, Mapping } from '../config/load.ts'
import { existingStateTables, keptVersions } from '../postgres/state.ts'
import { keptAlong } from '../postgres/live-versions.ts'
import { type SlotState, slotState } from '../postgres/slot.ts'
import { mappingSchema, type SchemaReport } from './schema-report.ts'
import { droppedTableMessage, missingTables } from '../stream/dropped-tables.ts'
import type { Sink } from '../turbopuffer/types.ts'
import { isTenantMapping } from '../pipeline/row-namespace.ts'
import { type TenantNamespaces, tenantNamespaces } from './tenant-namespaces.ts'

export interface BackfillStatus {
  version: number
  /** as the backfill records it (e.g. running, done, failed) */
  status: string
  rows_done: number
  total_estimate: number | null
  /** rows_done / total_estimate, 0..1; null without an estimate */
  progress: number | null
  docs_written: number
  snapshot_lsn: string | null
  started_at: string
  updated_at: string
  finished_at: string | null
}

export interface MappingStatus {
  mapping: string
  namespace: string
  table: string
  /** the version in the migration files */
  version: number
  /** the highest version `migrate` applied; null when never applied */
  applied_version: number | null
  docs_upserted: number
  docs_deleted: number
  last_applied_at: string | null
  last_lsn: string | null
  /** the backfill of the applied version; null when none was recorded for it */
  backfill: BackfillStatus | null
  dlq: number
  /** the attribute schema the mapping declares (from the column types); null when the table cannot be read */
  schema: SchemaReport | null
  /** false when the table does not exist (dropped, or renamed): nothing is streamed for the mapping */
  table_exists: boolean
  /** what happened and what to do, when the table does not exist */
  problem?: string
  /**
   * the namespace the application should read: the oldest live version's (during a re-index the one serving until
   * it is retired), else `namespace`
   */
  active_namespace: string
  /** every live version, newest first: the newest, and older ones a re-index keeps written until retired */
  versions: VersionStatus[]
  /**
   * a tenant mapping (a namespace template): its namespaces, counted from the service (`all` with status --json);
   * `{ error }` when the service could not be asked
   */
  namespaces?: TenantNamespaces | { error: string }
}

export interface VersionStatus {
  version: number
  namespace: string
  /** newest: the files' newest version; kept: an older version a re-index keeps written until it is retired */
  role: 'newest' | 'kept'
  /** its own backfill (null: none recorded for this version) */
  backfill: BackfillStatus | null
  /** the newest is caught up once its backfill is done (kept versions were) */
  caught_up: boolean
  /** every live version is written by the same stream: the slot's lag (null when it is not known) */
  lag_seconds: number | null
}

export interface StatusReport {
  /** the time the report was made (server clock) */
  at: string
  stream: SlotState & { publication: string }
  mappings: MappingStatus[]
}

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString())

/** Where status counts tenant mappings' namespaces (without it, they are not counted). */
export interface StatusNamespaceOptions {
  sink: Sink
  /** list every namespace (status --json), not only the largest */
  all?: boolean
}

export async function gatherStatus(
  config: Config,
  sql: postgres.Sql,
  slot = config.stream.slot,
  tenants?: StatusNamespaceOptions,
): Promise<StatusReport> {
  const tables = new Set(await existingStateTables(sql))
  const [{ now }] = await sql<{ now: Date }[]>`SELECT now()`
  const applied = new Map<string, number>()
  if (tables.has('__puffgres_migrations')) {
    for (
      const r of await sql<{ name: string; v: number }[]>`
      SELECT name, max(version)::int AS v FROM __puffgres_migrations GROUP BY name`
    ) applied.set(r.name, r.v)
  }
  const progress = new Map<string, { up: number; del: number; at: Date | null; lsn: string | null }>()
  if (tables.has('__puffgres_checkpoints')) {
    for (
      const r of await sql<{ mapping: string; up: string; del: string; at: Date | null; lsn: string | null }[]>`
      SELECT mapping, docs_upserted::text AS up, docs_deleted::text AS del, last_applied_at AS at,
             last_lsn::text AS lsn FROM __puffgres_checkpoints`
    ) {
      progress.set(r.mapping, { up: Number(r.up), del: Number(r.del), at: r.at, lsn: r.lsn })
    }
  }
  const dlq = tables.has('__puffgres_dlq') ? await countDeadLetters(sql) : new Map<string, number>()
  const backfills = new Map<string, BackfillStatus[]>()
  if (tables.has('__puffgres_backfill')) {
    const rows = await sql<
      {
        mapping: string
        version: number
        status: string
        rows_done: string
        total_estimate: string | null
        docs_written: string
        snapshot_lsn: string | null
        started_at: Date
        updated_at: Date
        finished_at: Date | null
      }[]
    >`SELECT mapping, version, status, rows_done::text, total_estimate::text, docs_written::text,
             snapshot_lsn::text, started_at, updated_at, finished_at
      FROM __puffgres_backfill ORDER BY mapping, version DESC`
    for (const r of rows) {
      const total = r.total_estimate === null ? null : Number(r.total_estimate)
      const done = Number(r.rows_done)
      const b: BackfillStatus = {
        version: r.version,
        status: r.status,
        rows_done: done,
        total_estimate: total,
        progress: total ? Math.min(1, done / total) : r.finished_at ? 1 : null,
        docs_written: Number(r.docs_written),
        snapshot_lsn: r.snapshot_lsn,
        started_at: iso(r.started_at)!,
        updated_at: iso(r.updated_at)!,
        finished_at: iso(r.finished_at),
      }
      backfills.set(r.mapping, [...(backfills.get(r.mapping) ?? []), b])
    }
  }
  const kept = await keptVersions(sql)
  const slotNow = await slotState(sql, slot)
  const schemas = new Map<string, SchemaReport | undefined>()
  for (const m of config.mappings) schemas.set(m.name, await mappingSchema(sql, m))
  const missing = await missingTables(sql, config.mappings)
  const namespaces = new Map<string, MappingStatus['namespaces']>()
  for (const m of config.mappings) {
    if (!tenants || !isTenantMapping(m)) continue
    try {
      namespaces.set(m.name, await tenantNamespaces(tenants.sink, m, { all: tenants.all }))
    } catch (e) {
      namespaces.set(m.name, { error: (e as Error).message })
    }
  }
  const mappings = config.mappings.map((m): MappingStatus => {
    const p = progress.get(m.name)
    const av = applied.get(m.name) ?? null
    const bs = backfills.get(m.name) ?? []
    return {
      mapping: m.name,
      namespace: m.namespace,
      table: `${m.schema}.${m.table}`,
      version: m.version,
      applied_version: av,
      docs_upserted: p?.up ?? 0,
      docs_deleted: p?.del ?? 0,
      last_applied_at: iso(p?.at ?? null),
      last_lsn: p?.lsn ?? null,
      // the backfill of the version shown, never an older version's: that one filled another namespace (or the same
      // one with another mapping), so it says nothing about this one
      backfill: bs.find((b) => b.version === (av ?? m.version)) ?? null,
      ...liveVersions(config, m, kept, bs, av, slotNow.lag_seconds ?? null),
      dlq: dlq.get(m.name) ?? 0,
      schema: schemas.get(m.name) ?? null,
      table_exists: !missing.has(m.name),
      ...(missing.has(m.name) ? { problem: droppedTableMessage(m, 'status') } : {}),
      ...(namespaces.has(m.name) ? { namespaces: namespaces.get(m.name) } : {}),
    }
  })
  const stream = { ...slotNow, publication: config.stream.publication }
  return { at: now.toISOString(), stream, mappings }
}

/**
 * The live versions of mapping `m` (the newest applied, then the ones a re-index keeps) and the active namespace. A
 * newer file not migrated yet is not live: nothing writes its namespace (the files' newest is `version`).
 */
function liveVersions(
  config: Config,
  newestFile: Mapping,
  kept: ReadonlySet<string>,
  backfills: BackfillStatus[],
  applied: number | null,
  lag: number | null,
): Pick<MappingStatus, 'versions' | 'active_namespace'> {
  const m = applied === null
    ? newestFile
    : config.migrations.find((f) => f.name === newestFile.name && f.version === applied) ?? newestFile
  const newestBackfill = backfills.find((b) => b.version === m.version) ?? null
  const versions: VersionStatus[] = [{
    version: m.version,
    namespace: m.namespace,
    role: 'newest',
    backfill: newestBackfill,
    caught_up: newestBackfill?.status === 'done',
    lag_seconds: lag,
  }]
  for (const old of keptAlong({ ...config, mappings: [m] }, kept).slice(1).reverse()) {
    versions.push({
      version: old.version,
      namespace: old.namespace,
      role: 'kept',
      backfill: backfills.find((b) => b.version === old.version) ?? null,
      caught_up: true,
      lag_seconds: lag,
    })
  }
  return { versions, active_namespace: versions[versions.length - 1].namespace }
}

/** Bytes as B, kB, MB, GB (powers of 1024). */
function formatBytes(n: number | null): string {
  if (n === null) return '-'
  const units = ['B', 'kB', 'MB', 'GB', 'TB']
  let v = n
  let u = 0
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`
}

function formatSeconds(s: number | null): string {
  if (s === null) return '-'
  if (s < 60) return `${s.toFixed(1)} s`
  if (s < 3600) return `${(s / 60).toFixed(1)} min`
  return `${(s / 3600).toFixed(1)} h`
}

function ago(at: string | null, now: string): string {
  if (at === null) return 'never'
  return `${formatSeconds(Math.max(0, (Date.parse(now) - Date.parse(at)) / 1000))} ago`
}

/** Columns padded to their widest cell, two spaces apart (the human output of status and dlq list). */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}

function backfillText(b: BackfillStatus | null): string {
  if (!b) return 'none'
  const pct = b.progress === null ? '' : ` ${(b.progress * 100).toFixed(1)}%`
  const of = b.total_estimate === null ? '' : `/~${b.total_estimate}`
  return `${b.status}${pct} (${b.rows_done}${of} rows)`
}

/** The human report: one table of mappings, then the stream. */
export function formatStatus(r: StatusReport): string {
  const rows = r.mappings.flatMap((m) => [
    [
      m.versions.length > 1 ? `${m.mapping} (building)` : m.mapping,
      m.namespace,
      m.applied_version === null
        ? `${m.version} (not applied)`
        : m.applied_version === m.version
        ? String(m.version)
        : `${m.applied_version} (files: ${m.version})`,
      `${m.docs_upserted}/${m.docs_deleted}`,
      m.last_applied_at === null ? 'never' : `${ago(m.last_applied_at, r.at)} @ ${m.last_lsn}`,
      backfillText(m.backfill),
      String(m.dlq),
    ],
    ...m.versions.filter((v) => v.role === 'kept').map((v) => [
      `${m.mapping} (serving, retire with reindex --retire)`,
      v.namespace,
      String(v.version),
      '',
      'written with the newest',
      backfillText(v.backfill),
      '',
    ]),
  ])
  const s = r.stream
  const who = s.active ? `active (pid ${s.pid}${s.client ? `, ${s.client}` : ''})` : 'inactive (no consumer)'
  const stream = !s.exists ? [`slot ${s.slot}: does not exist (puffgres run creates it)`] : [
    `slot ${s.slot} (publication ${s.publication}): ${who}`,
    `  confirmed flush LSN  ${s.confirmed_flush_lsn ?? '-'} (server at ${s.current_wal_lsn})`,
    `  lag                  ${formatBytes(s.lag_bytes)}${
      s.lag_seconds === null ? '' : `, ${formatSeconds(s.lag_seconds)} behind`
    }`,
    `  WAL retained         ${formatBytes(s.retained_wal_bytes)}${s.wal_status ? ` (${s.wal_status})` : ''}`,
  ]
  const mappings = r.mappings.length
    ? table(['MAPPING', 'NAMESPACE', 'VERSION', 'UPSERTS/DELETES', 'LAST CHANGE', 'BACKFILL', 'DLQ'], rows)
    : 'no mappings (add a migration under puffgres/migrations/)'
  const schemas = r.mappings.filter((m) => m.schema?.lines.length).map((m) =>
    [`schema of ${m.namespace} (mapping ${m.mapping}${m.schema!.id_type === 'string' ? ', string ids' : ''}):`]
      .concat(m.schema!.lines.map((l) => `  ${l}`)).join('\n')
  )
  const problems = r.mappings.flatMap((m) => m.problem ? [`error: ${m.problem}`] : [])
  const tenants = r.mappings.flatMap((m) => m.namespaces ? [namespacesText(m.mapping, m.namespaces)] : [])
  return `${mappings}\n${problems.length ? problems.join('\n') + '\n' : ''}\n` +
    `${tenants.length ? tenants.join('\n') + '\n\n' : ''}` +
    `${schemas.length ? schemas.join('\n') + '\n\n' : ''}${stream.join('\n')}`
}

/** A tenant mapping's namespaces: how many, and the largest ones. */
function namespacesText(mapping: string, n: NonNullable<MappingStatus['namespaces']>): string {
  if ('error' in n) return `namespaces of ${mapping}: could not be listed: ${n.error}`
  const head = `namespaces of ${mapping}: ${n.count} (${n.documents} documents)`
  if (!n.largest.length) return head
  return [`${head}; the largest:`, ...n.largest.map((s) => `  ${s.namespace}  ${s.documents} documents`)].join('\n')
}
