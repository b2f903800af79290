// One mapping ready to transform and write outside the stream (DLQ retry, verify): its route (membership, transform
// runner) and its read plan (src/source/: columns, typed like the stream's, and the keyset page SQL).
import type postgres from 'postgres'
import { planReads, type ReadPlan } from '../source/mod.ts'
import type { Config, Mapping } from '../config/load.ts'
import { buildRoutes, neededColumns } from '../pipeline/routes.ts'
import type { RouteRuntime } from '../pipeline/writer.ts'
import type { Logger } from '../types.ts'

export interface MappingRuntime {
  mapping: Mapping
  route: RouteRuntime
  plan: ReadPlan
  close(): Promise<void>
}

export function findMapping(config: Config, name: string): Mapping {
  const m = config.mappings.find((x) => x.name === name)
  if (!m) {
    const known = config.mappings.map((x) => x.name).join(', ') || 'none'
    throw new Error(`no mapping named "${name}" in puffgres/migrations (mappings: ${known})`)
  }
  return m
}

export async function openMapping(
  config: Config,
  sql: postgres.Sql,
  log: Logger,
  mapping: Mapping,
): Promise<MappingRuntime> {
  const [route] = await buildRoutes({ ...config, mappings: [mapping] }, sql, log)
  try {
    const plan = await planReads(sql, mapping, neededColumns(mapping))
    return { mapping, route, plan, close: () => route.runner.close() }
  } catch (e) {
    await route.runner.close()
    throw e
  }
}
