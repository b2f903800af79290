// The live versions of the mappings (docs/ARCHITECTURE.md, invariant 10): the newest version of each name, plus the
// older versions a re-index keeps live (`puffgres reindex`) until they are retired. `run` writes every live version,
// each into its own namespace; `status` shows each of them.
import type postgres from 'postgres'
import type { Config, Mapping } from '../config/load.ts'
import { keptVersions } from './state.ts'

/** `config.mappings` (one per name, the newest), each followed by its older versions kept live, oldest first. */
export async function liveMappings(config: Config, sql: postgres.Sql): Promise<Mapping[]> {
  const kept = await keptVersions(sql)
  return keptAlong(config, kept)
}

/** As liveMappings, for a set of kept name@version already read. */
export function keptAlong(config: Config, kept: ReadonlySet<string>): Mapping[] {
  const out: Mapping[] = []
  for (const m of config.mappings) {
    out.push(m)
    for (const old of config.migrations) {
      // a kept version shares no namespace with the newest one (reindex refuses that); the files must still hold it
      if (old.name !== m.name || old.version >= m.version || old.namespace === m.namespace) continue
      if (kept.has(`${old.name}@${old.version}`)) out.push(old)
    }
  }
  return out
}
