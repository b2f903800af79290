// Which mappings one `run` streams (scale-out: `run --mapping a,b` or `[stream] mappings = [...]`). A process that
// streams some of the mappings has its own slot and publication, so that processes never share a slot's position.
import { basename } from 'node:path'
import { ConfigError } from './errors.ts'
import { type Config, DEFAULT_PUBLICATION, DEFAULT_SLOT, type Mapping } from './load.ts'

/** The selected mappings in config order; all of them when `names` is undefined. `where` names the flag or field. */
export function selectMappings(
  config: Config,
  names: readonly string[] | undefined,
  where: string,
  fail: (message: string) => Error = (m) => new ConfigError(m),
): Mapping[] {
  if (names === undefined) return config.mappings
  if (!names.length) throw fail(`${where}: name at least one mapping`)
  const known = new Map(config.mappings.map((m) => [m.name, m]))
  const seen = new Set<string>()
  for (const n of names) {
    if (!known.has(n)) {
      const list = [...known.keys()].join(', ') || 'none'
      throw fail(`${where}: no mapping named "${n}" (mappings: ${list})`)
    }
    if (seen.has(n)) throw fail(`${where}: mapping "${n}" is named twice`)
    seen.add(n)
  }
  return config.mappings.filter((m) => seen.has(m.name))
}

/** `[stream] mappings`: checked when the config is used; a subset needs its own slot and publication. */
export function configSelection(config: Config): Mapping[] {
  const where = `${basename(config.file)}: stream.mappings`
  const selected = selectMappings(config, config.stream.mappings, where)
  if (selected.length < config.mappings.length) {
    if (config.stream.slot === DEFAULT_SLOT || config.stream.publication === DEFAULT_PUBLICATION) {
      throw new ConfigError(
        `${where}: a process that streams some of the mappings needs its own stream.slot and stream.publication ` +
          `(not "${DEFAULT_SLOT}" and "${DEFAULT_PUBLICATION}", which stream all of them)`,
      )
    }
  }
  return selected
}
