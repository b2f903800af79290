// `puffgres run`: streams every committed change of the mapped tables into their namespaces, until stopped.
import { sinkFromConfig } from '../turbopuffer/from-config.ts'
import { AdaptiveLimit } from '../concurrency.ts'
import { configSelection, selectMappings } from '../config/selection.ts'
import { ensurePublication } from '../postgres/publication.ts'
import process from 'node:process'
import type { Config } from '../config/load.ts'
import { createLogger } from '../log.ts'
import { isPermanentPostgresFailure } from '../postgres/reach.ts'
import { parseFlags, port, positiveInt, slotFlag, UsageError } from './flags.ts'
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
  --mapping <A,B>           stream only these mappings (default: [stream] mappings, or all); give the process
                            its own --slot and --publication (run creates or updates that publication)
  --publication <NAME>      publication to stream (default: [stream] publication, or "puffgres_pub")
  --create-slot[=BOOL]      create the slot when it is missing. Default: only when puffgres never streamed or
                            backfilled into this database (else a gap: exit 1 with what to do); --create-slot or
                            =true: create it anyway (then backfill); --no-create-slot or =false: exit 1 when missing
  --poll-interval-ms <MS>   the longest a change may wait before it is written (default 1000); usually it is
                            written at its commit (group commit: several writes in flight, AIMD)
  --batch-size <N>          inside a transaction, write once this many documents are pending (default 1000)
  --discard                 write nothing to turbopuffer (benchmarks; still confirms the slot!)
  --metrics-port <PORT>     serve Prometheus /metrics and /healthz on this port (default: [stream] metrics_port;
                            none when unset)
  --metrics-host <ADDR>     address the metrics server listens on (default 0.0.0.0)

Config ([stream]): mappings (scale-out, as --mapping), heartbeat_interval_ms (default 10000; 0 = no heartbeat), max_lag_seconds (/healthz bound,
default 60), max_retained_wal_mb (warn when the slot retains more WAL), metrics_port.
`

export interface RunOptions {
  slot: string
  /** stream only these mappings (scale-out); default: [stream] mappings, or all */
  mappings?: string[]
  /** default: [stream] publication */
  publication?: string
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
export async function runStream(fullConfig: Config, opts: RunOptions): Promise<void> {
  const log = opts.log ?? createLogger()
  const { config, ownPublication } = selectForRun(fullConfig, opts)
  const sql = connect(config.postgres.connectionString, { max: 4 })
  const sinkAbort = new AbortController()
  const monitor = opts.monitor ?? new StreamMonitor(opts.maxLagSeconds ?? config.stream.max_lag_seconds ?? 60)
  // batches in flight (AIMD): grows while turbopuffer keeps up, halves when it answers 429
  const writesInFlight = new AdaptiveLimit()
  const sink: Sink = opts.discard ? new DiscardSink() : sinkFromConfig(
    config.turbopuffer,
    {
      log,
      // not opts.signal: a graceful stop still writes the batch in flight; this one gives up after the drain timeout
      signal: sinkAbort.signal,
      onRequest: (ms, ok) => monitor.sinkRequest(ms, ok),
      onRetry: (info) => {
        monitor.sinkRetry(info.operation)
        if (info.status === 429) writesInFlight.pushback()
      },
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
        if (ownPublication) {
          const tables = streamed.mappings.map((m) => ({ schema: m.schema, table: m.table }))
          if (await ensurePublication(sql, streamed.stream.publication, tables)) {
            log.info('publication set to the selected mappings', {
              publication: streamed.stream.publication,
              mappings: streamed.mappings.map((m) => m.name).join(','),
            })
          }
        }
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
          concurrency: writesInFlight,
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
        if (e instanceof SlotMissingError || e instanceof SlotGoneError || isPermanentPostgresFailure(e)) throw e
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

/**
 * The mappings this run streams and its publication. A run of some of the mappings keeps its own publication (it
 * creates or updates it), which must not be the one `migrate` keeps for all of them.
 */
function selectForRun(config: Config, opts: RunOptions): { config: Config; ownPublication: boolean } {
  const fromFlag = opts.mappings !== undefined
  const mappings = fromFlag
    ? selectMappings(config, opts.mappings, '--mapping', (m) => new UsageError(m))
    : configSelection(config)
  const publication = opts.publication ?? config.stream.publication
  const subset = mappings.length < config.mappings.length
  if (subset && fromFlag) {
    if (publication === config.stream.publication && !config.stream.mappings) {
      throw new UsageError(
        `--mapping: give this process its own --publication (publication "${publication}" is the one migrate keeps ` +
          'for all mappings)',
      )
    }
    if (opts.slot === config.stream.slot && !config.stream.mappings) {
      throw new UsageError(`--mapping: give this process its own --slot (slot "${opts.slot}" streams all mappings)`)
    }
  }
  return { config: { ...config, mappings, stream: { ...config.stream, publication } }, ownPublication: subset }
}

export async function runCommand(argv: string[], config: () => Config): Promise<number> {
  const { values } = parseFlags(argv, {
    slot: { type: 'string' },
    mapping: { type: 'string' },
    publication: { type: 'string' },
    'create-slot': { type: 'boolean' },
    'poll-interval-ms': { type: 'string' },
    'batch-size': { type: 'string' },
    discard: { type: 'boolean' },
    'metrics-port': { type: 'string' },
    'metrics-host': { type: 'string' },
  })
  let opts: RunOptions
  let cfg: Config
  try {
    cfg = config()
    opts = {
      slot: slotFlag(values.slot) ?? cfg.stream.slot,
      mappings: values.mapping?.split(',').map((v) => v.trim()),
      publication: values.publication,
      createSlot: values['create-slot'] ?? 'if-new',
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
  try {
    // flags and [stream] mappings are checked before anything is touched
    if (opts.publication !== undefined && !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(opts.publication)) {
      throw new UsageError(`--publication: expected a plain PostgreSQL identifier, got "${opts.publication}"`)
    }
    selectForRun(cfg, opts)
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
