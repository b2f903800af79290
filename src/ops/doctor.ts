// `puffgres doctor`: everything `run` needs, checked one by one without changing anything. Each check is one line:
// ✓ what is fine, or ✗ what is wrong and how to fix it; a warning (!) is worth fixing but does not fail doctor.
import { DEFAULT_DISTANCE_METRIC } from '../pipeline/writer.ts'
import type postgres from 'postgres'
import type { Config } from '../config/load.ts'
import { requestEmbeddings } from '../embeddings/provider.ts'
import { loadTransform } from '../pipeline/transform/mod.ts'
import { tableInfo } from '../source/mod.ts'
import { connect, qualified } from '../postgres/connect.ts'
import { publicationTables } from '../postgres/publication.ts'
import { describeTarget, explainPostgresError, postgresTarget } from '../postgres/reach.ts'
import { clientConfig, createClient, resolveBaseUrl } from '../turbopuffer/client.ts'
import { explainTurbopufferError } from '../turbopuffer/reach.ts'
import { slotState } from '../postgres/slot.ts'
import { peekStuck, stuckSlotError } from '../postgres/slot-guard.ts'

export interface Check {
  ok: boolean
  /** what was checked, e.g. "wal_level" */
  name: string
  /** what was found; for a failure, also what to do */
  detail: string
  /** ok, but worth fixing (said with what to do): printed as a warning, not counted as a failure */
  warn?: boolean
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`

/** Runs every check; never throws for a failed check (a failure is a ✗ line). */
export async function runDoctor(
  config: Config,
  opts: { slot?: string; publication?: string; timeoutMs?: number } = {},
): Promise<Check[]> {
  const cfg = opts.publication ? { ...config, stream: { ...config.stream, publication: opts.publication } } : config
  const checks: Check[] = []
  const add: Add = (ok, name, detail, warn) => checks.push(warn ? { ok, name, detail, warn } : { ok, name, detail })
  const slot = opts.slot ?? cfg.stream.slot
  const target = describeTarget(postgresTarget(cfg.postgres.connectionString))

  const sql = connect(cfg.postgres.connectionString, { max: 1, application: 'puffgres doctor' })
  try {
    let version: string | undefined
    try {
      ;[{ version }] = await sql<{ version: string }[]>`SELECT current_setting('server_version') AS version`
      add(true, 'connection', `PostgreSQL ${version} at ${target.replace(/^PostgreSQL at /, '')}`)
    } catch (e) {
      add(false, 'connection', explainPostgresError(e, cfg.postgres.connectionString) ?? `${target}: ${msg(e)}`)
    }
    if (version !== undefined) await postgresChecks(cfg, sql, slot, add)
  } finally {
    await sql.end({ timeout: 2 }).catch(() => {})
  }
  await turbopufferCheck(cfg, add, opts.timeoutMs ?? 15_000)
  await transformChecks(cfg, add)
  await embeddingsCheck(cfg, add, opts.timeoutMs ?? 15_000)
  return checks
}

type Add = (ok: boolean, name: string, detail: string, warn?: boolean) => void

async function postgresChecks(cfg: Config, sql: postgres.Sql, slot: string, add: Add) {
  const setting = async (name: string) => (await sql<{ v: string }[]>`SELECT current_setting(${name}) AS v`)[0].v
  const wal = await setting('wal_level')
  add(
    wal === 'logical',
    'wal_level',
    wal === 'logical'
      ? 'logical'
      : `is "${wal}", must be "logical": ALTER SYSTEM SET wal_level = logical and restart ` +
        'PostgreSQL (RDS/Aurora: rds.logical_replication = 1; Cloud SQL: cloudsql.logical_decoding = on)',
  )

  const [role] = await sql<{ user: string; ok: boolean }[]>`
    SELECT current_user AS user, r.rolsuper OR r.rolreplication OR EXISTS (
      SELECT 1 FROM pg_roles g WHERE g.rolreplication AND g.oid <> r.oid AND pg_has_role(r.oid, g.oid, 'member')
    ) AS ok FROM pg_roles r WHERE r.rolname = current_user`
  add(
    role.ok,
    'replication privilege',
    role.ok
      ? `user "${role.user}" may stream changes`
      : `user "${role.user}" may not: ALTER ROLE "${role.user}" WITH REPLICATION (managed services: grant their ` +
        'replication role, e.g. rds_replication)',
  )

  const state = await slotState(sql, slot)
  const maxSlots = Number(await setting('max_replication_slots'))
  const [{ used }] = await sql<{ used: number }[]>`SELECT count(*)::int AS used FROM pg_replication_slots`
  const needSlots = state.exists ? 0 : 1
  add(
    maxSlots - used >= needSlots,
    'max_replication_slots',
    `${maxSlots}, ${used} in use` +
      (maxSlots - used >= needSlots
        ? state.exists ? ` (slot "${slot}" is one of them)` : `, ${maxSlots - used} free`
        : `: no free slot for "${slot}"; raise max_replication_slots (restart) or drop an unused slot`),
  )
  const maxSenders = Number(await setting('max_wal_senders'))
  const [{ senders }] = await sql<{ senders: number }[]>`SELECT count(*)::int AS senders FROM pg_stat_replication`
  const needSenders = state.active ? 0 : 1
  add(
    maxSenders - senders >= needSenders,
    'max_wal_senders',
    `${maxSenders}, ${senders} in use` +
      (maxSenders - senders >= needSenders
        ? ''
        : ': no free WAL sender for the stream; raise max_wal_senders (restart) or stop another replication client'),
  )

  const pub = await publicationTables(sql, cfg.stream.publication)
  const published = new Set((pub ?? []).map((t) => `${t.schema}.${t.table}`))
  const missing = cfg.mappings.map((m) => `${m.schema}.${m.table}`).filter((t) => !published.has(t))
  // a published table no mapping reads stops run before its first change (docs/ARCHITECTURE.md, invariant 10)
  const mapped = new Set(cfg.mappings.map((m) => `${m.schema}.${m.table}`))
  const unread = [...published].filter((t) => !mapped.has(t))
  add(
    !!pub && missing.length === 0 && unread.length === 0,
    'publication',
    !pub
      ? `"${cfg.stream.publication}" does not exist: run \`puffgres migrate\``
      : missing.length
      ? `"${cfg.stream.publication}" lacks ${missing.join(', ')}: run \`puffgres migrate\``
      : unread.length
      ? `"${cfg.stream.publication}" publishes ${unread.join(', ')}, which no mapping reads: \`run\` stops at its ` +
        'first change; add its mapping and run `puffgres migrate` (which also drops unmapped tables from it)'
      : `"${cfg.stream.publication}" publishes ${cfg.mappings.length} mapped table(s)`,
  )

  const limitMb = cfg.stream.max_retained_wal_mb
  if (!state.exists) {
    add(true, 'replication slot', `"${slot}" does not exist yet; \`puffgres run\` creates it`)
  } else if (state.wal_status === 'lost' || state.wal_status === 'unreserved') {
    add(
      false,
      'replication slot',
      `"${slot}" has ${state.wal_status} WAL it needs (changes are gone): drop it ` +
        `(SELECT pg_drop_replication_slot('${slot}')), run \`puffgres run\` to recreate it, then backfill again`,
    )
  } else if (!state.active && pub && await peekStuck(sql, slot, cfg.stream.publication)) {
    // decoding the slot's WAL fails: it starts before the publication existed (run would stop with this line)
    const e = await stuckSlotError(sql, slot, cfg.stream.publication, cfg.mappings.map((m) => m.name))
    add(false, 'replication slot', e.message)
  } else {
    const retained = state.retained_wal_bytes ?? 0
    const tooMuch = limitMb !== undefined && retained > limitMb * 1024 * 1024
    add(
      !tooMuch,
      'replication slot',
      `"${slot}" ${state.active ? 'is streaming' : 'is idle'}, retains ${mb(retained)} of WAL` +
        (tooMuch ? ` (over max_retained_wal_mb = ${limitMb}): start \`puffgres run\` so it catches up` : ''),
    )
  }
  await failoverChecks(cfg, sql, slot, add)

  for (const m of cfg.mappings) {
    const name = `replica identity ${m.schema}.${m.table}`
    const t = await tableInfo(sql, m.schema, m.table)
    if (!t) {
      add(false, name, `table ${m.schema}.${m.table} does not exist (mapping "${m.name}", ${m.file})`)
      continue
    }
    const kinds = { d: 'default (primary key)', n: 'nothing', f: 'full', i: 'index' } as const
    const fix = `ALTER TABLE ${qualified(m.schema, m.table)} REPLICA IDENTITY FULL (or add a primary key)`
    if (t.replicaIdentity === 'n' || t.identityColumns.length === 0) {
      add(false, name, `${kinds[t.replicaIdentity]} with no key columns: deletes cannot be mapped; ${fix}`)
    } else if (t.replicaIdentity !== 'f' && !m.idColumns.every((c) => t.identityColumns.includes(c))) {
      add(
        false,
        name,
        `${kinds[t.replicaIdentity]} (${t.identityColumns.join(', ')}) does not include the id ` +
          `${m.idColumns.join(', ')}: deletes cannot be mapped; ${fix}`,
      )
    } else {
      add(
        true,
        name,
        `${kinds[t.replicaIdentity]}${t.replicaIdentity === 'f' ? '' : ` (${t.identityColumns.join(', ')})`}`,
      )
    }
    if (m.namespaceTemplate) {
      // a namespace per tenant: the template, and whether deletes and moves can name the namespace a row leaves
      const outside = m.namespaceTemplate.columns.filter((c) => !t.identityColumns.includes(c))
      add(
        !outside.length,
        `namespace per tenant ${m.name}`,
        `"${m.namespace}"` +
          (outside.length
            ? `: ${outside.join(', ')} not in the replica identity: deletes and moves between tenants leave ` +
              `documents behind; ALTER TABLE ${qualified(m.schema, m.table)} REPLICA IDENTITY FULL`
            : ` (${m.namespaceTemplate.columns.join(', ')} in the replica identity)`),
      )
    }
    // the metric of the document vectors: a `vector` column the mapping reads as it is, or an embedding
    const vectorColumn = !m.transform && t.columns.some((c) => c.name === 'vector') &&
      (!m.columns || m.columns.includes('vector'))
    if ((vectorColumn || m.embedding) && !m.distanceMetric) {
      add(
        true,
        `distance metric ${m.name}`,
        `vectors are written with ${DEFAULT_DISTANCE_METRIC} (the default): set [target] distance_metric in a new ` +
          'mapping version to choose another',
      )
    }
  }
}

/**
 * PostgreSQL 17+ (on a primary): is the slot a failover slot, and does PostgreSQL hold changes back until the
 * standbys have them (synchronized_standby_slots)? A primary without standbys is normal: nothing here fails for that.
 */
async function failoverChecks(cfg: Config, sql: postgres.Sql, slot: string, add: Add) {
  const [here] = await sql<{ v17: boolean; standby: boolean }[]>`
    SELECT current_setting('server_version_num')::int >= 170000 AS v17, pg_is_in_recovery() AS standby`
  if (!here.v17 || here.standby) return
  const on = cfg.stream.failover_slot ?? true
  const [s] = await sql<{ failover: boolean }[]>`
    SELECT failover FROM pg_replication_slots WHERE slot_name = ${slot} AND database = current_database()`
  if (!on) {
    add(
      true,
      'failover slot',
      s?.failover
        ? `"${slot}" has failover = true ([stream] failover_slot = false does not turn it off)`
        : `off ([stream] failover_slot = false): no standby keeps a copy of "${slot}"; after a failover \`run\` ` +
          'refuses and every mapping needs a backfill',
    )
    return
  }
  if (!s) add(true, 'failover slot', `"${slot}" does not exist yet; \`puffgres run\` creates it with failover = true`)
  else if (s.failover) {
    add(true, 'failover slot', `"${slot}" has failover = true: a standby with sync_replication_slots = on keeps a copy`)
  } else {
    add(
      true,
      'failover slot',
      `"${slot}" has failover = false, so a failover loses it: the next \`puffgres run\` (or \`backfill\`) turns ` +
        'it on ([stream] failover_slot)',
      true,
    )
  }

  const [{ value }] = await sql<{ value: string }[]>`SELECT current_setting('synchronized_standby_slots') AS value`
  const slots = await sql<{ name: string; active: boolean }[]>`
    SELECT slot_name AS name, active FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY 1`
  const physical = slots.map((r) => r.name)
  const named = value.split(',').map((n) => n.trim().replace(/^"(.*)"$/, '$1')).filter(Boolean)
  const missing = named.filter((n) => !physical.includes(n))
  const idle = named.filter((n) => slots.some((r) => r.name === n && !r.active))
  const set = (v: string) => `ALTER SYSTEM SET synchronized_standby_slots = '${v}'; SELECT pg_reload_conf()`
  if (missing.length) {
    add(
      false,
      'synchronized_standby_slots',
      `names ${missing.map((n) => `"${n}"`).join(', ')}, not a physical replication slot here: PostgreSQL holds ` +
        `the changes of failover slots back (\`run\` streams nothing) until it exists; name the physical slots ` +
        `of this server's standbys (or none): ${set(physical.join(','))}`,
    )
  } else if (idle.length) {
    add(
      true,
      'synchronized_standby_slots',
      `"${value}": no standby is connected to ${idle.map((n) => `"${n}"`).join(', ')}, and PostgreSQL holds the ` +
        'changes of failover slots back until it is (`run` streams nothing meanwhile): start the standby, or take ' +
        'its slot out of synchronized_standby_slots',
      true,
    )
  } else if (named.length) {
    add(true, 'synchronized_standby_slots', `"${value}": puffgres gets changes only once these standbys have them`)
  } else if (physical.length) {
    add(
      true,
      'synchronized_standby_slots',
      `unset: a standby (physical slot ${physical.map((n) => `"${n}"`).join(', ')}) may lag behind what puffgres ` +
        `streamed, and once promoted lack changes that are in turbopuffer; ${set(physical.join(','))}`,
      true,
    )
  } else {
    add(
      true,
      'synchronized_standby_slots',
      'unset; no physical replication slot here, so no standby keeps a copy of the slot (see README, Failover)',
    )
  }
}

async function turbopufferCheck(cfg: Config, add: Add, timeoutMs: number) {
  let baseUrl: string
  try {
    baseUrl = resolveBaseUrl(clientConfig(cfg.turbopuffer))
  } catch (e) {
    add(false, 'turbopuffer', msg(e))
    return
  }
  try {
    const client = createClient(clientConfig(cfg.turbopuffer), { timeoutMs })
    await client.namespaces({ page_size: 1 })
    add(true, 'turbopuffer', `${baseUrl} accepts the API key`)
  } catch (e) {
    add(false, 'turbopuffer', explainTurbopufferError(e, baseUrl) ?? `turbopuffer at ${baseUrl}: ${msg(e)}`)
  }
}

async function transformChecks(cfg: Config, add: Add) {
  for (const m of cfg.mappings) {
    if (m.transform?.kind !== 'module') continue
    try {
      const t = await loadTransform(m.transform.path, m.transform)
      add(true, `transform ${m.name}`, `${t.label} loads${t.batch ? ' (batch form)' : ''}`)
    } catch (e) {
      add(false, `transform ${m.name}`, msg(e))
    }
  }
}

async function embeddingsCheck(cfg: Config, add: Add, timeoutMs: number) {
  const e = cfg.embeddings
  if (!e) return
  try {
    const policy = { maxRetries: 0, baseDelayMs: 0, maxDelayMs: 0, maxRetryAfterMs: 0, requestTimeoutMs: timeoutMs }
    const [v] = await requestEmbeddings(e, ['puffgres doctor'], policy, { requests: 0, retries: 0 })
    add(true, 'embeddings', `${e.type} ${e.model} answers (${v.length} dimensions)`)
  } catch (err) {
    add(
      false,
      'embeddings',
      `${e.type} ${e.model}: ${msg(err)}; check [providers.embeddings] (api_key, base_url, model)`,
    )
  }
}

function msg(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
