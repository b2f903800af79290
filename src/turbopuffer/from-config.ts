// The one place a sink is built from a loaded config's `[turbopuffer]` section (run, backfill, dlq retry, verify),
// so that how settings reach the client changes in one file.
import { clientConfig } from './client.ts'
import { TurbopufferSink, type TurbopufferSinkOptions } from './sink.ts'

/** The `[turbopuffer]` section of a loaded config (`config.turbopuffer`). */
export interface TurbopufferSection {
  apiKey: string
  baseUrl?: string
  region?: string
}

export function sinkFromConfig(section: TurbopufferSection, opts: TurbopufferSinkOptions = {}): TurbopufferSink {
  return new TurbopufferSink(clientConfig(section), opts)
}
