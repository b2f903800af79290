// Builds what the stream (and backfill) need per mapping: compiled membership, needed columns, transform runner.
import type postgres from 'postgres'
import type { Config, Mapping } from '../config/load.ts'
import { type CatalogColumn, tableByOid, tableInfo } from '../source/mod.ts'
import { FIRST_NON_BUILTIN_OID, resolveTypeOid } from '../postgres/type-oids.ts'
import { createEmbedder, type Embedder, type EmbeddingObserver } from '../embeddings/embedder.ts'
import type { Logger } from '../types.ts'
import { type CompiledPredicate, compileMembership, predicateColumns } from '../membership/mod.ts'
import type { RouteRuntime } from './writer.ts'
import { createTransformRunner } from './transform/mod.ts'
import { chunkSources } from './transform/chunk-documents.ts'

/** The columns a mapping reads; undefined when it reads the whole row (a transform, or no column list). */
export function neededColumns(m: Mapping): Set<string> | undefined {
  if (m.transform || !m.columns) return undefined
  return new Set([
    ...m.columns,
    ...m.idColumns,
    ...(m.membership ? predicateColumns(m.membership) : []),
    // a namespace per tenant: the row's namespace comes from these
    ...(m.namespaceTemplate?.columns ?? []),
    // with chunking the embedding's source is the chunk attribute, not a column
    ...(m.chunking ? chunkSources(m.chunking) : m.embedding?.source ?? []),
  ])
}

/**
 * The mapping's membership predicate compiled against its table's column types (undefined without one). Type errors
 * (an int column compared with a string literal) surface here: `migrate` calls it too, so it refuses what `run` and
 * `backfill` would refuse.
 */
export function compileMappingMembership(m: Mapping, columns: readonly CatalogColumn[]): CompiledPredicate | undefined {
  if (!m.membership) return undefined
  // a domain is its base type (as decoding takes it); builtin types by OID; enums and other user types by name
  // (their OIDs differ per database)
  const types = Object.fromEntries(columns.map((c) => {
    const oid = resolveTypeOid(c.typeOid, c.typeName)
    return [c.name, oid < FIRST_NON_BUILTIN_OID ? oid : c.typeName ?? c.castType]
  }))
  return compileMembership(m.membership, types)
}

export function embedderFor(config: Config, log: Logger, observer?: EmbeddingObserver): Embedder | undefined {
  return config.embeddings ? createEmbedder(config.embeddings, { log, observer }) : undefined
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
    const runner = await createTransformRunner(
      m.transform,
      {
        mapping: m.name,
        log,
        embedder,
        columns: m.transform ? undefined : m.columns,
        embedding: m.embedding,
        chunking: m.chunking,
        documents: m.documents,
      },
    )
    const member = compileMappingMembership(m, info.columns)
    const typeOf = new Map(info.columns.map((c) => [c.name, c.castType]))
    const shape = await tableByOid(sql, info.oid)
    routes.push({
      mapping: m,
      relid: info.oid,
      keyTypes: m.idColumns.map((c) => typeOf.get(c) ?? 'text'),
      columns: shape?.columns ?? [],
      isMember: member && ((row) => member(row) === true),
      needed: neededColumns(m),
      runner,
      embedder: m.embedding ? embedder : undefined,
    })
  }
  return routes
}
