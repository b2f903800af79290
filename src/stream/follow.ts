// Following migrations while `run` streams (docs/ARCHITECTURE.md, invariant 10): the mapping files are read again
// and the migrated mappings this process does not route yet get their routes, at a defined position of the stream:
// the transactional message `migrate` commits with its records (MIGRATE_MESSAGE_PREFIX), or the first change of a
// published table that no route reads. A published table that still has no route stops the stream before any of
// its changes is confirmed (invariant 1): `UnroutableTableError`, and run retries after a backoff.
import type postgres from 'postgres'
import type { Config, Mapping } from '../config/load.ts'
import { keptAlong } from '../postgres/live-versions.ts'
import type { Relation } from '../postgres/pgoutput.ts'
import { appliedMigrations, keptVersions } from '../postgres/state.ts'
import { buildRoutes } from '../pipeline/routes.ts'
import type { Embedder } from '../embeddings/embedder.ts'
import { leaveOutDroppedTables } from './dropped-tables.ts'
import type { RouteRuntime } from '../pipeline/writer.ts'
import type { Logger } from '../types.ts'

export { MIGRATE_MESSAGE_PREFIX } from '../postgres/state.ts'

/** A change of a published table that no migrated mapping of this process reads: nothing after it is confirmed. */
export class UnroutableTableError extends Error {
  constructor(rel: Pick<Relation, 'schema' | 'name'>, publication: string) {
    super(
      `table ${rel.schema}.${rel.name} is in publication "${publication}" but no migrated mapping of this process ` +
        'reads it: nothing after its first change is confirmed until one does (add its mapping file and run ' +
        `\`puffgres migrate\`, or ALTER PUBLICATION ${publication} DROP TABLE ${rel.schema}.${rel.name})`,
    )
    this.name = 'UnroutableTableError'
  }
}

/**
 * The migrations state changed but the process cannot take it up (the files do not load, a migrated version's route
 * cannot be built): the stream stops at this point, before anything after it is confirmed (invariant 1), and run
 * retries after a backoff.
 */
export class FollowError extends Error {
  constructor(what: string) {
    super(
      `${what}: nothing after this point of the stream is confirmed until it can be followed (fix it; run retries ` +
        'by itself)',
    )
    this.name = 'FollowError'
  }
}

/** What `migrate` and `reindex --retire` recorded: the applied versions with their hashes and the kept ones. */
export async function migrationState(sql: postgres.Sql): Promise<string> {
  const applied = await appliedMigrations(sql)
  const kept = await keptVersions(sql)
  return applied.map((a) => `${a.name}@${a.version}:${a.hash}${kept.has(`${a.name}@${a.version}`) ? ':kept' : ''}`)
    .join(',')
}

export interface FollowOptions {
  /** the configuration as this process selects it now (the files read again) */
  load: () => Config
  sql: postgres.Sql
  log: Logger
  /** the live routes: new ones are appended (the processor and the dropped-table watch read this array) */
  routes: RouteRuntime[]
  /** migrationState() as it was read before `routes` were built */
  state: string
  /** the embedder the routes share (its cache, and `run`'s embedding metrics); a new one from the config when absent */
  embedder?: Embedder
}

export class MappingFollower {
  /** routes a newer version replaced: their runners may still be in use by batches in flight */
  private readonly replaced: RouteRuntime[] = []
  /** the migrations state the routes follow */
  private followed: string

  constructor(private readonly opts: FollowOptions) {
    this.followed = opts.state
  }

  /**
   * Follows the migrations state when it changed since the routes were made: at `migrate`'s message, at a table no
   * route reads, and each time the stream (re)starts. A process that did not see the message (a hot standby taking
   * over, a stream resumed past it) must not go on with the routes of before. `force`: read the files even when the
   * state is the same (a table no route reads: its file may have reached this host after `migrate` ran elsewhere).
   * Throws FollowError when it cannot.
   */
  async follow(opts: { force?: boolean } = {}): Promise<string[]> {
    const state = await migrationState(this.opts.sql)
    if (state === this.followed && !opts.force) return []
    const added = await this.refresh()
    this.followed = state
    return added
  }

  /** Closes the transform runners of replaced versions (when run stops). */
  async close(): Promise<void> {
    for (const r of this.replaced) await r.runner.close().catch(() => {})
  }

  /**
   * Reads the mapping files again and makes the routes those of the live versions as migrate recorded them (the
   * newest recorded version of each mapping, with the file's hash, and those a re-index keeps): adds the ones not
   * routed yet, drops the ones replaced or retired. Files that cannot be read, a recorded version whose file is gone or
   * edited, or one whose route cannot be built, throw FollowError (after the routes that could be made are in place):
   * changes after this point would miss that version (invariants 1 and 10).
   */
  private async refresh(): Promise<string[]> {
    const { load, sql, log, routes } = this.opts
    let config: Config
    try {
      config = load()
    } catch (e) {
      throw new FollowError(`the mapping files cannot be read again: ${(e as Error).message}`)
    }
    // a mapping removed from the files: its routes go (below)
    const inFiles = new Set(config.mappings.map((m) => m.name))
    // as at start: a mapping whose table was dropped is left out (logged), not a route that cannot be built; a route
    // it already has stays (changes committed before the drop may still be ahead in the stream)
    config = await leaveOutDroppedTables(config, sql, log)
    const rows = await appliedMigrations(sql)
    const applied = new Map(rows.map((a) => [`${a.name}@${a.version}`, a.hash]))
    const key = (m: Mapping) => `${m.name}@${m.version}`
    const failed: string[] = []
    // of each mapping this process streams, the newest version migrate recorded (a newer file not migrated yet, as
    // on a host that has it first, is not it: that version is what changes after the message go through)
    const newest = new Map<string, number>()
    for (const a of rows) newest.set(a.name, Math.max(a.version, newest.get(a.name) ?? a.version))
    const recorded: Mapping[] = []
    for (const m of config.mappings) {
      const version = newest.get(m.name)
      if (version === undefined) continue // not migrated yet
      const file = config.migrations.find((f) => f.name === m.name && f.version === version)
      if (file && applied.get(key(file)) === file.hash) recorded.push(file)
      else failed.push(`mapping ${m.name} version ${version} is migrated but its file is ${file ? 'edited' : 'gone'}`)
    }
    // with the older versions a re-index keeps live, as migrate recorded them
    const wanted = keptAlong({ ...config, mappings: recorded }, await keptVersions(sql))
      .filter((m) => applied.get(key(m)) === m.hash)
    const wantedKeys = new Set(wanted.map(key))
    const routedKeys = new Set(routes.map((r) => key(r.mapping)))
    const added: string[] = []
    for (const m of wanted) {
      if (routedKeys.has(key(m))) continue
      try {
        const [route] = await buildRoutes({ ...config, mappings: [m] }, sql, log, this.opts.embedder)
        routes.push(route)
        added.push(m.name)
        log.info('mapping version added while streaming: changes committed from here on go through it', {
          mapping: m.name,
          version: m.version,
          table: `${m.schema}.${m.table}`,
          namespace: m.namespace,
        })
      } catch (e) {
        failed.push(`mapping ${m.name} version ${m.version}: ${(e as Error).message}`)
      }
    }
    // a version no longer live (replaced by a newer one, or retired): later changes no longer reach its namespace.
    // Batches built before keep its route (its transform and namespace), so its runner is closed only when run stops.
    // Only once a newer version is routed: one whose route cannot be built (its transform does not load) leaves the
    // old one in place, so the table is never left without a route (and the stream stops below, FollowError).
    for (let i = routes.length - 1; i >= 0; i--) {
      const r = routes[i]
      if (wantedKeys.has(key(r.mapping))) continue
      const routedNow = new Set(routes.map((x) => key(x.mapping)))
      const successor = wanted.find((m) =>
        m.name === r.mapping.name && m.version > r.mapping.version && routedNow.has(key(m))
      )
      const gone = !inFiles.has(r.mapping.name)
      if (!successor && !gone) continue
      routes.splice(i, 1)
      this.replaced.push(r)
      log.info('mapping version no longer written: changes committed from here on do not reach its namespace', {
        mapping: r.mapping.name,
        version: r.mapping.version,
        namespace: r.mapping.namespace,
      })
    }
    if (failed.length) throw new FollowError(`a migrated mapping cannot be routed: ${failed.join('; ')}`)
    return added
  }
}
