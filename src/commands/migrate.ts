// `puffgres migrate [--dry-run]`: checks the source database, records the migrations, maintains the publication.
import { chunkSources } from '../pipeline/transform/chunk-documents.ts'
import { parseFlags } from './flags.ts'
import type postgres from 'postgres'
import type { Config, Mapping } from '../config/load.ts'
import { ConfigError } from '../config/errors.ts'
import { connect, qualified } from '../postgres/connect.ts'
import { tableByOid, type TableInfo, tableInfo } from '../source/mod.ts'
import { publicationChange, publicationTables, viaRootChange } from '../postgres/publication.ts'
import { configSelection } from '../config/selection.ts'
import {
  appliedMigrations,
  ensureStateTables,
  existingStateTables,
  MIGRATE_MESSAGE_PREFIX,
  STATE_TABLES,
} from '../postgres/state.ts'
import { predicateColumns } from '../membership/mod.ts'
import { compileMappingMembership } from '../pipeline/routes.ts'
import { migrateWarnings } from '../ops/migrate-warnings.ts'
import { validateTransform } from '../pipeline/transform/mod.ts'
import { mappingSchema } from '../ops/schema-report.ts'
import { keepLive } from '../ops/reindex.ts'

export const help = `puffgres migrate [--dry-run]

Applies the migration files in puffgres/migrations/ to the source database:
  - checks that wal_level is logical and that every source table, id column and mapped column exists
  - creates the __puffgres_* state tables
  - records each new migration with a content hash (an applied file must not be edited: add a new version)
  - checks each membership predicate against the column types exactly as \`run\` and \`backfill\` do
  - a namespace per tenant (namespace = "docs_{workspace_id}"): refuses placeholder columns the table's REPLICA
    IDENTITY does not hold (a delete or a move must name the namespace the row leaves), and says how to fix it
  - creates or updates the publication the stream uses (default puffgres_pub), publishing partitioned tables
    through their root (publish_via_partition_root = true; an existing publication is switched over)
Warns where a table's REPLICA IDENTITY cannot give puffgres the id of updated or deleted rows, where a mapping needs
generated columns (not in the replication stream: \`run\` re-reads those rows), and for partitioned tables.

Options:
  --dry-run   print the plan, and each mapping's attribute schema (from its column types), and change nothing
`

export interface MigratePlan {
  /** SQL-level steps, in order, as human-readable lines */
  steps: string[]
  warnings: string[]
  createState: boolean
  toRecord: Mapping[]
  publicationSql?: string
  /** makes an existing publication publish partitioned tables through their root */
  publicationRootSql?: string
}

const sources = (config: Config) => configSelection(config).map((m) => ({ schema: m.schema, table: m.table }))

export class MigrateError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'MigrateError'
  }
}

const WAL_LEVEL_HELP = 'set wal_level = logical and restart PostgreSQL ' +
  '(self-hosted: ALTER SYSTEM SET wal_level = logical; AWS RDS/Aurora: set rds.logical_replication = 1 in the ' +
  'parameter group; Google Cloud SQL: cloudsql.logical_decoding = on; Azure: wal_level = logical in server ' +
  'parameters; Supabase and Neon: enable logical replication in the project settings)'

/** Works out what `migrate` would do. Reads only; throws MigrateError for anything that must stop it. */
export async function planMigrate(config: Config, sql: postgres.Sql): Promise<MigratePlan> {
  const [{ wal_level }] = await sql<{ wal_level: string }[]>`SHOW wal_level`
  if (wal_level !== 'logical') {
    throw new MigrateError(`wal_level is "${wal_level}", puffgres needs "logical": ${WAL_LEVEL_HELP}`)
  }
  const warnings: string[] = []
  const steps: string[] = []
  for (const m of config.mappings) await checkMapping(sql, m, warnings)

  const existing = await existingStateTables(sql)
  const createState = existing.length < STATE_TABLES.length
  if (createState) steps.push(`create state tables ${STATE_TABLES.filter((t) => !existing.includes(t)).join(', ')}`)

  const applied = new Map((await appliedMigrations(sql)).map((a) => [`${a.name}@${a.version}`, a]))
  const toRecord: Mapping[] = []
  for (const m of config.migrations) {
    const a = applied.get(`${m.name}@${m.version}`)
    if (!a) {
      toRecord.push(m)
      steps.push(
        `apply ${m.name} v${m.version} (${m.file}): ${m.schema}.${m.table} → namespace ${m.namespace}` +
          (m.namespaceTemplate ? ` (a namespace per ${m.namespaceTemplate.columns.join(', ')})` : ''),
      )
    } else if (a.hash !== m.hash) {
      throw new MigrateError(
        `${m.file}: was edited after it was applied on ${a.applied_at.toISOString()} ` +
          `(recorded hash ${a.hash.slice(0, 12)}, file now ${m.hash.slice(0, 12)}); ` +
          `restore it and add a new version (e.g. a file with version = ${m.version + 1}) instead`,
      )
    }
    applied.delete(`${m.name}@${m.version}`)
  }
  for (const a of applied.values()) {
    warnings.push(`${a.file}: applied as ${a.name} v${a.version} but the file is gone`)
  }

  const current = await publicationTables(sql, config.stream.publication)
  const publicationSql = publicationChange(
    config.stream.publication,
    current,
    // [stream] mappings: this config's processes stream only those (config/selection.ts)
    sources(config),
  )
  if (publicationSql) steps.push(`publication: ${publicationSql}`)
  const publicationRootSql = await viaRootChange(sql, config.stream.publication, sources(config))
  if (publicationRootSql) steps.push(`publication: ${publicationRootSql}`)
  return { steps, warnings, createState, toRecord, publicationSql, publicationRootSql }
}

async function checkMapping(sql: postgres.Sql, m: Mapping, warnings: string[]) {
  const where = `${m.file}: source`
  const t = await tableInfo(sql, m.schema, m.table)
  if (!t) throw new MigrateError(`${where}: table ${m.schema}.${m.table} does not exist`)
  const names = new Set(t.columns.map((c) => c.name))
  for (const c of m.idColumns) {
    if (!names.has(c)) throw new MigrateError(`${m.file}: mapping.id: column "${c}" not in ${m.schema}.${m.table}`)
  }
  for (const c of m.columns ?? []) {
    if (!names.has(c)) {
      throw new MigrateError(`${m.file}: mapping.columns: column "${c}" not in ${m.schema}.${m.table}`)
    }
  }
  if (m.membership) {
    for (const c of predicateColumns(m.membership)) {
      if (!names.has(c)) {
        throw new MigrateError(`${m.file}: mapping.membership: column "${c}" not in ${m.schema}.${m.table}`)
      }
    }
  }
  // the very check `run` and `backfill` make before they start (one function): a type error refuses the migration
  try {
    compileMappingMembership(m, t.columns)
  } catch (e) {
    throw new MigrateError(`${m.file}: mapping.membership: ${(e as Error).message.replace(/^membership: /, '')}`)
  }
  // with [mapping.chunking] the embedding's source is the chunk attribute; the chunked columns must exist
  for (const c of m.chunking ? chunkSources(m.chunking) : []) {
    if (!names.has(c)) {
      throw new MigrateError(`${m.file}: mapping.chunking.source: column "${c}" not in ${m.schema}.${m.table}`)
    }
  }
  for (const c of m.chunking ? [] : m.embedding?.source ?? []) {
    if (!m.transform && !names.has(c)) {
      throw new MigrateError(`${m.file}: mapping.embedding.source: column "${c}" not in ${m.schema}.${m.table}`)
    }
  }
  if (m.transform) {
    try {
      await validateTransform(m.transform)
    } catch (e) {
      throw new MigrateError(`${m.file}: mapping.transform: ${(e as Error).message}`)
    }
  }
  checkTenantColumns(m, t)
  const shape = await tableByOid(sql, t.oid)
  if (shape) warnings.push(...migrateWarnings(m, shape))
  const covered = m.idColumns.every((c) => t.identityColumns.includes(c))
  if (!covered) {
    const fix = `ALTER TABLE ${qualified(m.schema, m.table)} REPLICA IDENTITY FULL`
    warnings.push(
      t.replicaIdentity === 'n' || (t.replicaIdentity === 'd' && !t.primaryKey.length)
        ? `${m.file}: ${m.schema}.${m.table} has no replica identity: PostgreSQL will refuse UPDATE and DELETE on ` +
          `it once it is published, and puffgres cannot delete its documents; add a primary key or run: ${fix}`
        : `${m.file}: mapping.id (${m.idColumns.join(', ')}) is not covered by the replica identity of ` +
          `${m.schema}.${m.table} (${t.identityColumns.join(', ')}): deletes and id changes cannot be streamed; ` +
          `run: ${fix}`,
    )
  }
}

/**
 * A namespace per tenant: the placeholder columns exist, and the replica identity holds them, so that a delete names
 * the row's namespace and an update that moves the row names the one it leaves (issue 24). Refused otherwise: a move
 * would leave a copy in the old tenant's namespace, a delete would leave the document.
 */
function checkTenantColumns(m: Mapping, t: TableInfo) {
  const columns = m.namespaceTemplate?.columns ?? []
  for (const c of columns) {
    if (!t.columns.some((col) => col.name === c)) {
      throw new MigrateError(`${m.file}: target.namespace: {${c}} is not a column of ${m.schema}.${m.table}`)
    }
  }
  const outside = columns.filter((c) => !t.identityColumns.includes(c))
  if (!outside.length) return
  const table = qualified(m.schema, m.table)
  throw new MigrateError(
    `${m.file}: target.namespace "${m.namespace}": ${outside.join(', ')} ${outside.length > 1 ? 'are' : 'is'} not ` +
      `in the replica identity of ${m.schema}.${m.table} (${t.identityColumns.join(', ') || 'none'}), so a delete ` +
      `or a move between tenants cannot name the namespace the row leaves; run: ALTER TABLE ${table} REPLICA ` +
      `IDENTITY FULL (or a unique index on ${[...m.idColumns, ...outside].join(', ')}, then ALTER TABLE ${table} ` +
      `REPLICA IDENTITY USING INDEX <index>)`,
  )
}

/** Applies the plan in one transaction; `keep`: an older version that stays live beside its new one (reindex). */
export async function applyMigrate(sql: postgres.Sql, plan: MigratePlan, keep?: Mapping): Promise<void> {
  await sql.begin(async (tx) => {
    // one migrate at a time: a second concurrent one waits, then finds nothing to do
    await tx`SELECT pg_advisory_xact_lock(hashtext('puffgres.migrate'))`
    if (plan.createState) await ensureStateTables(tx as unknown as postgres.Sql)
    for (const m of plan.toRecord) {
      await tx`
        INSERT INTO __puffgres_migrations (name, version, file, hash, source, namespace)
        VALUES (${m.name}, ${m.version}, ${m.file}, ${m.hash}, ${m.schema + '.' + m.table}, ${m.namespace})
        ON CONFLICT (name, version) DO NOTHING`
    }
    if (plan.publicationSql) await tx.unsafe(plan.publicationSql)
    if (plan.publicationRootSql) await tx.unsafe(plan.publicationRootSql)
    if (keep) await keepLive(tx as unknown as postgres.Sql, keep)
    // a `run` streaming now takes up the new mappings at this transaction's place in the stream: changes committed
    // after it go through them (docs/ARCHITECTURE.md, invariant 10)
    const names = plan.toRecord.map((m) => `${m.name}@${m.version}`).join(',')
    await tx`SELECT pg_logical_emit_message(true, ${MIGRATE_MESSAGE_PREFIX}, ${names})`
  })
}

export async function migrateCommand(argv: string[], config: () => Config): Promise<number> {
  const { values } = parseFlags(argv, { 'dry-run': { type: 'boolean' } })
  const cfg = config()
  const sql = connect(cfg.postgres.connectionString, { max: 2 })
  try {
    const plan = await planMigrate(cfg, sql)
    for (const w of plan.warnings) console.error(`warning: ${w}`)
    const dry = values['dry-run']
    if (!plan.steps.length) console.log('Nothing to migrate: the database is up to date.')
    else {
      console.log(dry ? 'Plan (dry run, nothing changed):' : 'Migrating:')
      for (const s of plan.steps) console.log(`  ${s}`)
    }
    if (dry) {
      // what each namespace will be declared with (from the column types and [target.schema])
      for (const m of cfg.mappings) {
        const schema = await mappingSchema(sql, m)
        if (!schema?.lines.length) continue
        console.log(
          `Schema of namespace ${m.namespace} (mapping ${m.name}${schema.id_type === 'string' ? ', string ids' : ''}):`,
        )
        for (const l of schema.lines) console.log(`  ${l}`)
      }
    }
    if (!plan.steps.length) return 0
    if (!dry) {
      await applyMigrate(sql, plan)
      console.log('Done.')
    }
    return 0
  } catch (e) {
    if (e instanceof MigrateError || e instanceof ConfigError) {
      console.error(`error: ${e.message}`)
      return 1
    }
    throw e
  } finally {
    await sql.end({ timeout: 2 })
  }
}
