// Which mappings one `run` streams, and through which publication (`--mapping`, `[stream] mappings`: scale-out over
// several processes, README "Scale-out").
import type { Config } from '../config/load.ts'
import { configSelection, selectMappings } from '../config/selection.ts'
import { CliError } from '../errors.ts'

/** A bad --mapping/--publication/--slot combination: bad usage (exit status 2). */
const usageError = (message: string) => new CliError(message, 2)

/**
 * The mappings this run streams and its publication. A run of some of the mappings keeps its own publication (it
 * creates or updates it), which must not be the one `migrate` keeps for all of them.
 */
export function selectForRun(
  config: Config,
  opts: { mappings?: string[]; publication?: string; slot: string },
): { config: Config; ownPublication: boolean } {
  const fromFlag = opts.mappings !== undefined
  const mappings = fromFlag ? selectMappings(config, opts.mappings, '--mapping', usageError) : configSelection(config)
  const publication = opts.publication ?? config.stream.publication
  const subset = mappings.length < config.mappings.length
  if (subset && fromFlag) {
    if (publication === config.stream.publication && !config.stream.mappings) {
      throw usageError(
        `--mapping: give this process its own --publication (publication "${publication}" is the one migrate keeps ` +
          'for all mappings)',
      )
    }
    if (opts.slot === config.stream.slot && !config.stream.mappings) {
      throw usageError(`--mapping: give this process its own --slot (slot "${opts.slot}" streams all mappings)`)
    }
  }
  return { config: { ...config, mappings, stream: { ...config.stream, publication } }, ownPublication: subset }
}
