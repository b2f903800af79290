// startLocalServer: a turbopuffer-compatible HTTP server for development, demos and tests.
import { serveHttp } from '../runtime.ts'
import { createHandler } from './api.ts'
import { checkFailRate, checkLatency, emptyStats, Faults, type FaultScope, type LocalServerStats } from './faults.ts'
import { LIMITS } from './rules.ts'
import { checkJitter } from './latency.ts'
import { Store } from './store.ts'
import { WriteBudget } from '../turbopuffer/write-budget.ts'
import { type ByFilterLimits, checkByFilterLimits } from './by-filter.ts'

export type { FaultScope, LocalServerStats }

export interface LocalServerOptions {
  /** 0 (default) picks a free port */
  port?: number
  /** default 127.0.0.1 */
  hostname?: string
  /** keep namespaces in this folder (created if missing); in memory only when omitted */
  dataDir?: string
  /** accept only this key; by default any non-empty bearer key is accepted */
  apiKey?: string
  /** share of writes (0..1) answered with 500 without being applied */
  failRate?: number
  /** delay before every API request is handled */
  latencyMs?: number
  /** each request's delay is drawn uniformly from latencyMs ± jitterMs (never below 0) */
  jitterMs?: number
  /** largest request body, after gunzip (default and most: turbopuffer's 512 MiB); larger ones get 413 */
  maxBodyBytes?: number
  /**
   * turbopuffer's per-namespace write limit, emulated (bytes a second, one second of burst): writes beyond it are
   * answered 429 with retry-after-ms, as the service answers them; default: no limit
   */
  namespaceBytesPerSecond?: number
  /**
   * documents one delete_by_filter / patch_by_filter may change (default and most: turbopuffer's 5,000,000 /
   * 50,000); tests lower them to reach `*_allow_partial` and `rows_remaining` with few documents
   */
  byFilterLimits?: Partial<ByFilterLimits>
  /** fold a namespace's log into its snapshot once the log is larger than this and than the snapshot (4 MiB) */
  compactAfterBytes?: number
}

export interface LocalServer {
  /** e.g. http://127.0.0.1:40123 — pass it as the SDK's baseURL / TURBOPUFFER_BASE_URL */
  url: string
  port: number
  stop(): Promise<void>
  /** the next `count` writes (or requests of any kind with scope 'all') fail with `status` (default 500) */
  failNext(count: number, status?: number, retryAfterMs?: number, scope?: FaultScope): void
  setLatency(ms: number, jitterMs?: number): void
  setFailRate(rate: number): void
  stats(): LocalServerStats
  namespaces(): string[]
  /** every document of a namespace ordered by id, with `id` and `vector`; [] when the namespace does not exist */
  documents(ns: string): Array<Record<string, unknown>>
}

export async function startLocalServer(opts: LocalServerOptions = {}): Promise<LocalServer> {
  const port = opts.port ?? 0
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port ${port}: expected 0-65535`)
  const maxBodyBytes = opts.maxBodyBytes ?? LIMITS.requestBytes
  // only lower: a larger limit would accept requests turbopuffer refuses
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1 || maxBodyBytes > LIMITS.requestBytes) {
    throw new Error(`invalid maxBodyBytes ${maxBodyBytes}: expected an integer from 1 to ${LIMITS.requestBytes}`)
  }
  const rate = opts.namespaceBytesPerSecond
  if (rate !== undefined && !(Number.isFinite(rate) && rate >= 0)) {
    throw new Error(`invalid namespaceBytesPerSecond ${rate}: expected a number >= 0 (0: no limit)`)
  }
  const byFilterLimits = checkByFilterLimits(opts.byFilterLimits)
  if (opts.apiKey !== undefined && opts.apiKey === '') throw new Error('invalid apiKey: must not be empty')
  const faults = new Faults()
  faults.failRate = checkFailRate(opts.failRate ?? 0)
  faults.latencyMs = checkLatency(opts.latencyMs ?? 0)
  faults.jitterMs = checkJitter(opts.jitterMs ?? 0)
  const store = new Store(opts.dataDir, opts.compactAfterBytes)
  const stats = emptyStats()
  const hostname = opts.hostname ?? '127.0.0.1'
  let http
  try {
    http = await serveHttp({
      port,
      hostname,
      fetch: createHandler(store, faults, stats, {
        apiKey: opts.apiKey,
        maxBodyBytes,
        byFilterLimits,
        budget: opts.namespaceBytesPerSecond ? new WriteBudget(opts.namespaceBytesPerSecond) : undefined,
      }),
      maxRequestBodySize: maxBodyBytes * 2 + 1024 * 1024,
    })
  } catch (e) {
    store.close()
    throw new Error(`local turbopuffer server cannot listen on ${hostname}:${port}: ${(e as Error).message}`)
  }
  const urlHost = hostname.includes(':') ? `[${hostname}]` : hostname === '0.0.0.0' ? '127.0.0.1' : hostname
  let stopped: Promise<void> | undefined
  return {
    url: `http://${urlHost}:${http.port}`,
    port: http.port,
    stop() {
      stopped ??= http.stop().finally(() => store.close())
      return stopped
    },
    failNext: (count, status, retryAfterMs, scope) => faults.failNext(count, status, retryAfterMs, scope),
    setLatency: (ms, jitterMs) => {
      faults.latencyMs = checkLatency(ms)
      if (jitterMs !== undefined) faults.jitterMs = checkJitter(jitterMs)
    },
    setFailRate: (rate) => void (faults.failRate = checkFailRate(rate)),
    stats: () => structuredClone(stats),
    namespaces: () => [...store.names()],
    documents: (name) => structuredClone(store.get(name)?.sorted() ?? []),
  }
}
