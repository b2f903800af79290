// Runs `backfill` in process, without a progress bar, its log lines going to `logs`.
import { backfill } from '../../src/backfill/backfill.ts'
import type { BackfillOptions, BackfillResult } from '../../src/backfill/options.ts'
import { type Config, loadConfig } from '../../src/config/load.ts'
import { quietLogger } from './stream.ts'

/** `config` is a project's config (or the path of its puffgres.toml). */
export function quietBackfill(
  config: Config | string,
  opts: Omit<BackfillOptions, 'log' | 'progress'>,
  logs: string[] = [],
): Promise<BackfillResult> {
  return backfill(typeof config === 'string' ? loadConfig(config) : config, {
    ...opts,
    log: quietLogger(logs),
    progress: false,
  })
}
