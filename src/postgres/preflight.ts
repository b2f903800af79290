// Checks, before streaming or backfilling, that `migrate` has been run for the current files.
import type postgres from 'postgres'
import type { Config } from '../config/load.ts'
import { publicationTables, viaRootChange } from './publication.ts'
import { appliedMigrations, existingStateTables, STATE_TABLES } from './state.ts'

export class NotMigratedError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'NotMigratedError'
  }
}

export async function checkMigrated(config: Config, sql: postgres.Sql): Promise<void> {
  const existing = await existingStateTables(sql)
  if (existing.length < STATE_TABLES.length) {
    if (!existing.length) {
      throw new NotMigratedError('the database has no puffgres state tables: run `puffgres migrate` first')
    }
    // a database migrated by an older puffgres
    const missing = STATE_TABLES.filter((t) => !existing.includes(t))
    throw new NotMigratedError(`state table ${missing.join(', ')} is missing: run \`puffgres migrate\` to create it`)
  }
  const applied = new Map((await appliedMigrations(sql)).map((a) => [`${a.name}@${a.version}`, a]))
  for (const m of config.migrations) {
    const a = applied.get(`${m.name}@${m.version}`)
    if (!a) throw new NotMigratedError(`${m.file} is not applied: run \`puffgres migrate\` first`)
    if (a.hash !== m.hash) {
      throw new NotMigratedError(`${m.file} was edited after it was applied: restore it and add a new version`)
    }
  }
  const pub = await publicationTables(sql, config.stream.publication)
  if (!pub) {
    throw new NotMigratedError(
      `publication "${config.stream.publication}" does not exist: run \`puffgres migrate\` first`,
    )
  }
  // a partitioned table is streamed through its root; without it the publication lists its partitions instead
  const rootSql = await viaRootChange(sql, config.stream.publication, config.mappings)
  if (rootSql) {
    throw new NotMigratedError(
      `publication "${config.stream.publication}" does not publish partitioned tables through their root: run ` +
        '`puffgres migrate`',
    )
  }
  const have = new Set(pub.map((t) => `${t.schema}.${t.table}`))
  for (const m of config.mappings) {
    if (!have.has(`${m.schema}.${m.table}`)) {
      throw new NotMigratedError(
        `publication "${config.stream.publication}" does not include ${m.schema}.${m.table}: run \`puffgres migrate\``,
      )
    }
  }
}
