// Following migrations while `run` streams (docs/ARCHITECTURE.md, invariant 10): the mapping files are read again
// and the migrated mappings this process does not route yet get their routes, at a defined position of the stream:
// the transactional message `migrate` commits with its records (MIGRATE_MESSAGE_PREFIX), or the first change of a
// published table that no route reads. A published table that still has no route stops the stream before any of
// its changes is confirmed (invariant 1): `UnroutableTableError`, and run retries after a backoff.
import type postgres from 'postgres'
import type { Config } from '../config/load.ts'
import type { Relation } from '../postgres/pgoutput.ts'
import { appliedMigrations } from '../postgres/state.ts'
import { buildRoutes } from '../pipeline/routes.ts'
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

export interface FollowOptions {
  /** the configuration as this process selects it now (the files read again) */
  load: () => Config
  sql: postgres.Sql
  log: Logger
  /** the live routes: new ones are appended (the processor and the dropped-table watch read this array) */
  routes: RouteRuntime[]
}

export class MappingFollower {
  /** routes a newer version replaced: their runners may still be in use by batches in flight */
  private readonly replaced: RouteRuntime[] = []

  constructor(private readonly opts: FollowOptions) {}

  /** Closes the transform runners of replaced versions (when run stops). */
  async close(): Promise<void> {
    for (const r of this.replaced) await r.runner.close().catch(() => {})
  }

  /**
   * Reads the mapping files again and adds a route for each mapping that is migrated (recorded with the file's
   * hash) and not routed yet, or replaces the route of an older version. A file that cannot be read or a table that cannot be routed is logged and left out:
   * its table's changes then stop the stream (UnroutableTableError) until a later look succeeds.
   */
  async refresh(): Promise<string[]> {
    const { load, sql, log, routes } = this.opts
    let config: Config
    try {
      config = load()
    } catch (e) {
      log.warn('reading the mapping files again failed; the routes stay as they are', { error: (e as Error).message })
      return []
    }
    const applied = new Map((await appliedMigrations(sql)).map((a) => [`${a.name}@${a.version}`, a.hash]))
    const added: string[] = []
    for (const m of config.mappings) {
      if (applied.get(`${m.name}@${m.version}`) !== m.hash) continue
      const at = routes.findIndex((r) => r.mapping.name === m.name)
      const old = at < 0 ? undefined : routes[at]
      if (old && old.mapping.version >= m.version) continue
      try {
        const [route] = await buildRoutes({ ...config, mappings: [m] }, sql, log)
        // a new version replaces the old one for every later change; batches built before keep the old route (its
        // transform and namespace), so its runner is closed only when run stops
        if (old) {
          routes[at] = route
          this.replaced.push(old)
        } else routes.push(route)
        added.push(m.name)
        log.info(
          old
            ? 'new mapping version while streaming: changes committed from here on go through it (backfill its namespace)'
            : 'mapping added while streaming: its changes are streamed from here on',
          {
            mapping: m.name,
            version: m.version,
            table: `${m.schema}.${m.table}`,
            namespace: m.namespace,
            ...(old && { previous_namespace: old.mapping.namespace }),
          },
        )
      } catch (e) {
        log.error('a migrated mapping cannot be routed yet', { mapping: m.name, error: (e as Error).message })
      }
    }
    return added
  }
}
