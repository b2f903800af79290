// Builds what the stream (and backfill) need per mapping: compiled membership, needed columns, transform runner.
import type postgres from 'postgres'
import type { Config, Mapping } from '../config/load.ts'
import { tableInfo } from '../postgres/catalog.ts'
import { createEmbedder, type Embedder } from '../embeddings/embedder.ts'
import type { Logger } from '../types.ts'
import { compileMembership, predicateColumns } from './membership.ts'
import type { RouteRuntime } from './processor.ts'
import { createTransformRunner } from './transform.ts'

/** The columns a mapping reads; undefined when it reads the whole row (a transform, or no column list). */
export function neededColumns(m: Mapping): Set<string> | undefined {
  if (m.transform || !m.columns) return undefined
  return new Set([
    ...m.columns,
    ...m.idColumns,
    ...(m.membership ? predicateColumns(m.membership) : []),
    ...(m.embedding?.source ?? []),
  ])
}

export function embedderFor(config: Config, log: Logger): Embedder | undefined {
  return config.embeddings ? createEmbedder(config.embeddings, { log }) : undefined
}

export async function buildRoutes(
  config: Config,
  sql: postgres.Sql,
  log: Logger,
  embedder = embedderFor(config, log),
): Promise<RouteRuntime[]> {
  const routes: RouteRuntime[] = []
  for (const m of config.mappings) {
    const info = await tableInfo(sql, m.schema, m.table)
    if (!info) throw new Error(`${m.file}: source: table ${m.schema}.${m.table} does not exist`)
    // builtin types by OID; enums, domains and other user types by name (their OIDs differ per database)
    const types = Object.fromEntries(info.columns.map((c) => [c.name, c.typeOid < 16384 ? c.typeOid : c.typeName]))
    const runner = await createTransformRunner(
      m.transform,
      {
        mapping: m.name,
        log,
        embedder,
        columns: m.transform ? undefined : m.columns,
        embedding: m.embedding,
      },
    )
    const member = m.membership ? compileMembership(m.membership, types) : undefined
    const typeOf = new Map(info.columns.map((c) => [c.name, c.typeName]))
    const needed = neededColumns(m)
    routes.push({
      generated: info.columns.filter((c) => c.generated && (!needed || needed.has(c.name))),
      mapping: m,
      keyTypes: m.idColumns.map((c) => typeOf.get(c) ?? 'text'),
      isMember: member && ((row) => member(row) === true),
      needed,
      runner,
    })
  }
  return routes
}
