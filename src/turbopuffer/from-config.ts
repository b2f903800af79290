// The one place a sink is built from a loaded config's `[turbopuffer]` section (run, backfill, dlq retry, verify),
// so that how settings reach the client changes in one file.
import { clientConfig } from './client.ts'
import { TurbopufferSink, type TurbopufferSinkOptions } from './sink.ts'

/** The `[turbopuffer]` section of a loaded config (`config.turbopuffer`). */
export interface TurbopufferSection {
  apiKey: string
  baseUrl?: string
  region?: string
  /** `namespace_mb_per_second`: the write budget per namespace, MB (10^6 bytes) a second; 0: none */
  namespaceMbPerSecond?: number
}

export function sinkFromConfig(section: TurbopufferSection, opts: TurbopufferSinkOptions = {}): TurbopufferSink {
  const mb = section.namespaceMbPerSecond
  return new TurbopufferSink(clientConfig(section), {
    ...(mb === undefined ? {} : { namespaceBytesPerSecond: mb * 1000 * 1000 }),
    ...opts,
  })
}
