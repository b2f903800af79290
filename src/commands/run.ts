// `puffgres run`: streams every committed change of the mapped tables into their namespaces, until stopped.
import { sinkFromConfig } from '../turbopuffer/from-config.ts'
import process from 'node:process'
import { parseArgs } from 'node:util'
import type { Config } from '../config/load.ts'
import { createLogger } from '../log.ts'
import { bool, port, positiveInt, UsageError } from './flags.ts'
import { Heartbeat } from '../ops/heartbeat.ts'
import { startMetricsServer } from '../ops/metrics-server.ts'
import { StreamMonitor } from '../ops/stream-monitor.ts'
import { checkSlot, type CreateSlot, SlotGoneError } from '../ops/slot-guard.ts'
import { DroppedTableWatch, leaveOutDroppedTables } from '../ops/dropped-tables.ts'
import { connect } from '../postgres/connect.ts'
import { formatLsn } from '../postgres/lsn.ts'
import { checkMigrated, NotMigratedError } from '../postgres/preflight.ts'
import { isUnreachable } from '../postgres/unreachable.ts'
import { ReplicationStream, SlotInUseError, SlotMissingError } from '../postgres/replication.ts'
import { ChangeProcessor, type FlushInfo, type RouteRuntime } from '../pipeline/processor.ts'
import { buildRoutes } from '../pipeline/routes.ts'
import { DiscardSink } from '../turbopuffer/discard.ts'
import type { Sink } from '../turbopuffer/types.ts'
import type { HttpServer } from '../runtime.ts'
import type { Logger } from '../types.ts'

export const help = `puffgres run [options]

Streams every committed change of the mapped tables into their turbopuffer namespaces, until SIGINT/SIGTERM
(which finishes the batches in flight, confirms them and exits 0). Resumes from the replication slot: nothing
committed while puffgres was stopped is lost. A second \`run\` on the same slot waits as a hot standby and takes
over when the first one stops.

Options:
  --slot <NAME>             replication slot (default: [stream] slot, or "puffgres")
  --create-slot <BOOL>      create the slot when it is missing. Default: only when puffgres never streamed or
                            backfilled into this database (else a gap: exit 1 with what to do); true: create
                            it anyway (then backfill); false: exit 1 when it is missing
  --poll-interval-ms <MS>   the longest a change waits in a batch before it is written (default 1000)
  --batch-size <N>          documents per batch (default 1000)
  --discard                 write nothing to turbopuffer (benchmarks; still confirms the slot!)
  --metrics-port <PORT>     serve Prometheus /metrics and /healthz on this port (default: [stream] metrics_port;
                            none when unset)
  --metrics-host <ADDR>     address the metrics server listens on (default 0.0.0.0)

Config ([stream]): heartbeat_interval_ms (default 10000; 0 = no heartbeat), max_lag_seconds (/healthz bound,
default 60), max_retained_wal_mb (warn when the slot retains more WAL), metrics_port.
`

export interface RunOptions {
  slot: string
  /** create a missing slot: true, false, or only when nothing was streamed or backfilled before ('if-new') */
  createSlot: CreateSlot
  pollIntervalMs: number
  batchSize: number
  discard?: boolean
  /** stops the stream (graceful) when aborted */
  signal?: AbortSignal
  log?: Logger
  onFlush?: (info: FlushInfo) => void
  /** called once streaming (not waiting as a standby) */
  onStreaming?: () => void
  standbyRetryMs?: number
  /** on stop, how long the batch in flight may take before it is abandoned (default 30 s) */
  drainTimeoutMs?: number
  /** serve /metrics and /healthz on this port (0: any free port); undefined: no server */
  metricsPort?: number
  metricsHost?: string
  /** called with the metrics server's port once it listens */
  onMetricsServer?: (port: number) => void
  /** metrics and health state; one is made when not given */
  monitor?: StreamMonitor
  /** /healthz answers 503 above this lag (default 60 s) */
  maxLagSeconds?: number
  /** ms between heartbeat messages (default 10000; 0: none) */
  heartbeatIntervalMs?: number
  /** warn when the slot retains more WAL than this many MiB */
  maxRetainedWalMb?: number
  /** ms between looks for dropped mapped tables (default 10000; 0: none) */
  tableCheckIntervalMs?: number
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => {
      clearTimeout(t)
      resolve()
    }, { once: true })
  })

/** Runs the stream until `signal` aborts. Throws for problems that retrying cannot fix (config, missing slot). */
export async function runStream(config: Config, opts: RunOptions): Promise<void> {
  const log = opts.log ?? createLogger()
  const sql = connect(config.postgres.connectionString, { max: 4 })
  const sinkAbort = new AbortController()
  const monitor = opts.monitor ?? new StreamMonitor(opts.maxLagSeconds ?? config.stream.max_lag_seconds ?? 60)
  const sink: Sink = opts.discard ? new DiscardSink() : sinkFromConfig(
    config.turbopuffer,
    {
      log,
      // not opts.signal: a graceful stop still writes the batch in flight; this one gives up after the drain timeout
      signal: sinkAbort.signal,
      onRequest: (ms, ok) => monitor.sinkRequest(ms, ok),
      onRetry: (info) => monitor.sinkRetry(info.operation),
    },
  )
  const heartbeat = new Heartbeat(sql, {
    slot: opts.slot,
    intervalMs: opts.heartbeatIntervalMs ?? config.stream.heartbeat_interval_ms ?? 10_000,
    maxRetainedWalMb: opts.maxRetainedWalMb ?? config.stream.max_retained_wal_mb,
    log,
    monitor,
    streaming: () => monitor.streaming,
  })
  let metricsServer: HttpServer | undefined
  let routes: RouteRuntime[] = []
  // the mappings streamed: those whose table was dropped after `migrate` are left out (ops/dropped-tables.ts)
  let streamed = config
  let tableWatch: DroppedTableWatch | undefined
  try {
    // PostgreSQL down or starting up when run starts: wait for it, as for a restart while streaming
    for (let attempt = 1;; attempt++) {
      try {
        streamed = await leaveOutDroppedTables(config, sql, log)
        await checkMigrated(streamed, sql)
        break
      } catch (e) {
        if (!isUnreachable(e) || opts.signal?.aborted) throw e
        const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6))
        log.error('cannot reach PostgreSQL; retrying', { error: (e as Error).message, retry_in_ms: delay })
        await sleep(delay, opts.signal)
        if (opts.signal?.aborted) return
      }
    }
    if (opts.metricsPort !== undefined) {
      metricsServer = await startMetricsServer(monitor, { port: opts.metricsPort, hostname: opts.metricsHost })
      log.info('serving /metrics and /healthz', { port: metricsServer.port })
      opts.onMetricsServer?.(metricsServer.port)
    }
    heartbeat.start()
    routes = await buildRoutes(streamed, sql, log)
    tableWatch = new DroppedTableWatch(sql, routes, log, opts.tableCheckIntervalMs ?? 10_000)
    tableWatch.start()
    let waitingLogged = false
    let failures = 0
    while (!opts.signal?.aborted) {
      const rs = new ReplicationStream(config.postgres.connectionString, { applicationName: 'puffgres' })
      let processor: ChangeProcessor | undefined
      try {
        // an invalidated slot, or one gone after progress: stop with what happened and what to do
        await checkSlot(sql, opts.slot, opts.createSlot, log)
        const { created } = await rs.ensureSlot(opts.slot, { create: opts.createSlot !== false })
        if (created) log.info('created replication slot', { slot: opts.slot })
        let iter
        try {
          iter = await rs.start({ slot: opts.slot, publication: config.stream.publication })
        } catch (e) {
          if (!(e instanceof SlotInUseError)) throw e
          if (!waitingLogged) log.info('slot in use: waiting as a hot standby', { slot: opts.slot, pid: e.activePid })
          waitingLogged = true
          await rs.close()
          await sleep(opts.standbyRetryMs ?? 1000, opts.signal)
          continue
        }
        log.info('streaming', { slot: opts.slot, publication: config.stream.publication })
        waitingLogged = false
        monitor.setStreaming(true)
        opts.onStreaming?.()
        processor = new ChangeProcessor({
          routes,
          sink,
          sql,
          log,
          batchSize: opts.batchSize,
          pollIntervalMs: opts.pollIntervalMs,
          confirm: (lsn) => {
            rs.confirm(lsn)
            monitor.confirmed(lsn)
          },
          // a failed batch: let go of the walsender now, not when the next message arrives (invariant 7)
          onFailure: (e) => void rs.abort(e),
          onFlush: (info) => {
            failures = 0
            monitor.batch(info)
            log.debug('batch written', { ...info, confirmed: formatLsn(info.confirmed), byMapping: undefined })
            opts.onFlush?.(info)
          },
        })
        processor.start()
        let stopping: Promise<void> | undefined
        const onAbort = () => stopping ??= stopStream()
        const stopStream = async () => {
          // finish what was read, confirm it, then end the stream (which ends the loop below)
          const giveUp = setTimeout(() => {
            log.warn('stopping: the batch in flight did not finish in time; it will be replayed on the next start', {
              timeout_ms: opts.drainTimeoutMs ?? 30_000,
            })
            sinkAbort.abort()
          }, opts.drainTimeoutMs ?? 30_000)
          try {
            await processor!.drain()
          } catch { /* logged by the processor */ }
          clearTimeout(giveUp)
          await rs.close()
        }
        opts.signal?.addEventListener('abort', onAbort, { once: true })
        try {
          for await (const ev of iter) {
            if (opts.signal?.aborted) break
            if (ev.msg.tag === 'commit') monitor.commit(ev.msg.endLsn, ev.msg.commitTime)
            await processor.handle(ev.msg)
          }
        } finally {
          opts.signal?.removeEventListener('abort', onAbort)
        }
        if (opts.signal?.aborted) {
          await onAbort()
          break
        }
      } catch (e) {
        if (e instanceof SlotMissingError || e instanceof SlotGoneError) throw e
        if (opts.signal?.aborted) break
        failures++
        const delay = Math.min(30_000, 500 * 2 ** Math.min(failures, 6))
        log.error('stream interrupted; reconnecting (unconfirmed changes will be replayed)', {
          error: (e as Error).message,
          retry_in_ms: delay,
        })
        // the walsender first: held while we wait, it would keep PostgreSQL from shutting down (invariant 7)
        await rs.abort(e as Error)
        // let a flush in flight finish so that writes stay in commit order across the reconnect
        await processor?.drain().catch(() => {})
        await sleep(delay, opts.signal)
      } finally {
        monitor.setStreaming(false)
        processor?.stop()
        await rs.close().catch(() => {})
      }
    }
  } finally {
    monitor.setStreaming(false)
    await heartbeat.stop()
    await tableWatch?.stop()
    // transform runners: `bin:` child processes end here
    for (const r of routes) await r.runner.close().catch(() => {})
    await metricsServer?.stop().catch(() => {})
    await sql.end({ timeout: 2 })
  }
}

export async function runCommand(argv: string[], config: () => Config): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      slot: { type: 'string' },
      'create-slot': { type: 'string' },
      'no-create-slot': { type: 'boolean' },
      'poll-interval-ms': { type: 'string' },
      'batch-size': { type: 'string' },
      discard: { type: 'boolean' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
    },
    strict: true,
  })
  let opts: RunOptions
  let cfg: Config
  try {
    cfg = config()
    opts = {
      slot: values.slot ?? cfg.stream.slot,
      createSlot: values['no-create-slot']
        ? false
        : values['create-slot'] === undefined
        ? 'if-new'
        : bool(values['create-slot'], '--create-slot'),
      pollIntervalMs: positiveInt(
        values['poll-interval-ms'],
        '--poll-interval-ms',
        cfg.stream.poll_interval_ms ?? 1000,
      ),
      batchSize: positiveInt(values['batch-size'], '--batch-size', cfg.stream.batch_size ?? 1000),
      discard: values.discard,
      metricsPort: port(values['metrics-port'], '--metrics-port', cfg.stream.metrics_port),
      metricsHost: values['metrics-host'],
    }
  } catch (e) {
    console.error(`error: ${(e as Error).message}`)
    return e instanceof UsageError ? 2 : 1
  }
  const stop = new AbortController()
  const log = createLogger()
  const onSignal = (sig: string) => {
    if (stop.signal.aborted) {
      log.warn(`second ${sig}: exiting now (unconfirmed changes will be replayed on the next start)`)
      process.exit(130)
    }
    log.info(`${sig}: finishing the batches in flight, then stopping`)
    stop.abort()
  }
  const onInt = () => onSignal('SIGINT')
  const onTerm = () => onSignal('SIGTERM')
  process.on('SIGINT', onInt)
  process.on('SIGTERM', onTerm)
  try {
    await runStream(cfg, { ...opts, signal: stop.signal, log })
    log.info('stopped')
    return 0
  } catch (e) {
    if (e instanceof SlotMissingError || e instanceof SlotGoneError || e instanceof NotMigratedError) {
      console.error(`error: ${e.message}`)
      return 1
    }
    throw e
  } finally {
    process.off('SIGINT', onInt)
    process.off('SIGTERM', onTerm)
  }
}
