// Runs `puffgres run` in-process against a test project, and reads what reached the local turbopuffer server.
import type postgres from 'postgres'
import { loadConfig } from '../../src/config/load.ts'
import { waitFor } from './wait.ts'
import { runStream } from '../../src/stream/mod.ts'
import type { FlushInfo, RunOptions } from '../../src/stream/mod.ts'
import { createLogger } from '../../src/log.ts'
import type { Logger } from '../../src/types.ts'

export interface RunningStream {
  stop(): Promise<void>
  done: Promise<void>
  flushes: FlushInfo[]
  logs: string[]
}

export function quietLogger(lines: string[] = []): Logger {
  return createLogger({ json: true, level: 'debug', write: (l) => lines.push(l) })
}

/** What `startStream` passes to `runStream` besides its defaults; `env` is added to the config's environment. */
export type StreamOptions = Partial<Omit<RunOptions, 'signal' | 'log' | 'onFlush'>> & { env?: Record<string, string> }

/** `run` in process: slot `puffgres` (created), 50 ms polls, batches of 1000, unless `opts` say otherwise. */
export function startStream(configPath: string, opts: StreamOptions = {}): RunningStream {
  const { env, ...run } = opts
  const load = () => loadConfig(configPath, { ...process.env, ...env })
  const config = load()
  const stop = new AbortController()
  const flushes: FlushInfo[] = []
  const logs: string[] = []
  const done = runStream(config, {
    slot: 'puffgres',
    createSlot: true,
    pollIntervalMs: 50,
    batchSize: 1000,
    reloadConfig: load,
    ...run,
    signal: stop.signal,
    log: quietLogger(logs),
    onFlush: (f) => flushes.push(f),
  })
  done.catch(() => {})
  return {
    flushes,
    logs,
    done,
    async stop() {
      stop.abort()
      await done
    },
  }
}

/** The documents of a namespace on the local server, by id (without the version attribute). */
export function docsById(docs: Array<Record<string, unknown>>): Map<unknown, Record<string, unknown>> {
  const out = new Map<unknown, Record<string, unknown>>()
  for (const d of docs) {
    const { id, _puffgres_version: _v, ...rest } = d
    out.set(id, rest)
  }
  return out
}

/**
 * Waits until a `run` streams from `slot`: its walsender has started replication. The slot is also active while
 * CREATE_REPLICATION_SLOT makes it (the walsender still in state "startup"); a test that went on then raced the
 * stream's start (its publication check ran after the test had already dropped the publication).
 */
export async function waitForSlotActive(sql: postgres.Sql, slot = 'puffgres', timeoutMs = 20_000): Promise<void> {
  await waitFor(
    `slot ${slot} to stream`,
    async () =>
      (await sql`SELECT r.state IN ('catchup', 'streaming') AS streams FROM pg_replication_slots s
        JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = ${slot}`)[0]?.streams,
    timeoutMs,
  )
}
