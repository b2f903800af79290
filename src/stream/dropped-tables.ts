// A mapped table that was dropped (DROP TABLE). Logical replication sends nothing for a DROP, so without a look at
// the catalog a dropped table is silence: its documents stay, and nobody is told. What an experienced CDC user
// expects (Debezium and Sequin behave alike): the other mappings go on, the documents stay as they were (a drop may
// be a mistake, or half of a drop-and-recreate; deleting a namespace is for a human to decide), and an error-level
// line names the mapping, the table and what to do. `run` says it once per table: at start (by name: the mapping is
// then left out instead of refusing every mapping) and while it streams (by OID, checked every `intervalMs`).
// `status` shows it too (ops/status.ts). Changes committed before the drop that needed a re-read of the row become
// dead letters (pipeline/row-identity.ts), never dropped silently.
import type postgres from 'postgres'
import type { Config, Mapping } from '../config/load.ts'
import { appliedMigrations } from '../postgres/state.ts'
import type { Logger } from '../types.ts'

/**
 * The error line for a mapping whose table is gone: found by OID while streaming, or by name (then it could also be
 * a rename while puffgres was stopped) when `run` starts or `status` looks.
 */
export function droppedTableMessage(m: Mapping, when: 'streaming' | 'start' | 'status'): string {
  const table = `${m.schema}.${m.table}`
  const byName = `table ${table} of mapping "${m.name}" does not exist (dropped, or renamed while puffgres was ` +
    `stopped: then name the new table in a new version of the mapping)`
  return (when === 'streaming'
    ? `table ${table} of mapping "${m.name}" was dropped: its changes are no longer streamed`
    : when === 'start'
    ? `${byName}: the mapping is left out`
    : `${byName}: \`puffgres run\` leaves the mapping out`) +
    `; the documents in namespace "${m.namespace}" stay as they were. To retire the mapping, remove its migration ` +
    `files and run \`puffgres migrate\` (and delete the namespace if its documents are not wanted); if the table was ` +
    `re-created, run \`puffgres migrate\`, restart \`puffgres run\`, then \`puffgres verify ${m.name} --repair\``
}

/** Names of the mappings whose table does not exist (by schema and name), in one query. */
export async function missingTables(sql: postgres.Sql, mappings: readonly Mapping[]): Promise<Set<string>> {
  if (!mappings.length) return new Set()
  const rows = await sql<{ name: string }[]>`
    SELECT m.name FROM unnest(${mappings.map((m) => m.name)}::text[], ${mappings.map((m) => m.schema)}::text[],
                              ${mappings.map((m) => m.table)}::text[]) AS m(name, nsp, rel)
    WHERE to_regclass(format('%I.%I', m.nsp, m.rel)) IS NULL`
  return new Set(rows.map((r) => r.name))
}

/**
 * The config without the mappings whose table was dropped after `migrate` applied them (each logged at error level).
 * A mapping whose migration is not applied is kept: `checkMigrated` then says to run `migrate`, which names the
 * missing table.
 */
export async function leaveOutDroppedTables(config: Config, sql: postgres.Sql, log: Logger): Promise<Config> {
  const missing = await missingTables(sql, config.mappings)
  if (!missing.size) return config
  const applied = new Set((await appliedMigrations(sql)).map((a) => `${a.name}@${a.version}`))
  const dropped = config.mappings.filter((m) => missing.has(m.name) && applied.has(`${m.name}@${m.version}`))
  if (!dropped.length) return config
  for (const m of dropped) {
    log.error(droppedTableMessage(m, 'start'), {
      mapping: m.name,
      table: `${m.schema}.${m.table}`,
      namespace: m.namespace,
    })
  }
  return { ...config, mappings: config.mappings.filter((m) => !dropped.includes(m)) }
}

/** While `run` streams: notices, by OID, a mapped table dropped since, and logs it once. */
export class DroppedTableWatch {
  #timer: ReturnType<typeof setInterval> | undefined
  #checking: Promise<void> | undefined
  readonly #reported = new Set<number>()

  constructor(
    private readonly sql: postgres.Sql,
    private readonly routes: readonly { mapping: Mapping; relid?: number }[],
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.intervalMs <= 0 || this.#timer) return
    this.#timer = setInterval(() => void this.check(), this.intervalMs)
    ;(this.#timer as { unref?: () => void }).unref?.()
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.#checking
  }

  /** One look at the catalog; a failed look (PostgreSQL restarting) is tried again at the next tick. */
  check(): Promise<void> {
    return this.#checking ??= this.#check().finally(() => this.#checking = undefined)
  }

  async #check(): Promise<void> {
    const watched = this.routes.filter((r) => r.relid !== undefined && !this.#reported.has(r.relid))
    if (!watched.length) return
    let present: Set<number>
    try {
      const oids = watched.map((r) => r.relid!)
      const rows = await this.sql<{ oid: number }[]>`SELECT oid::int8::float8 AS oid FROM pg_class
        WHERE oid = ANY(${oids}::oid[])`
      present = new Set(rows.map((r) => Number(r.oid)))
    } catch (e) {
      this.log.debug('could not check the mapped tables', { error: (e as Error).message })
      return
    }
    for (const r of watched) {
      if (present.has(r.relid!)) continue
      this.#reported.add(r.relid!)
      const m = r.mapping
      this.log.error(droppedTableMessage(m, 'streaming'), {
        mapping: m.name,
        table: `${m.schema}.${m.table}`,
        namespace: m.namespace,
      })
    }
  }
}
