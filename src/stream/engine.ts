// The stream engine: wires source (ReplicationStream), processor (route, transform, plan, sink) and checkpoint
// together, and keeps them running: waiting for PostgreSQL, hot standby on a slot in use, reconnecting after a
// failure, draining on stop, abandoning the sink after the drain timeout (docs/ARCHITECTURE.md, "Engine loop").
import { sinkFromConfig } from '../turbopuffer/from-config.ts'
import { TurbopufferSink } from '../turbopuffer/sink.ts'
import { WRITES_IN_FLIGHT } from '../turbopuffer/write-request.ts'
import { AdaptiveLimit } from '../concurrency.ts'
import { type Backoff, backoffDelay, sleep } from '../retry.ts'
import { configSelection, selectMappings } from '../config/selection.ts'
import { ensurePublication } from '../postgres/publication.ts'
import type { Config } from '../config/load.ts'
import { CliError } from '../errors.ts'
import { createLogger } from '../log.ts'
import { isPermanentPostgresFailure } from '../postgres/reach.ts'
import { Heartbeat } from './heartbeat.ts'
import { DEFAULT_METRICS_HOST, startMetricsServer } from './metrics-server.ts'
import { StatusPage } from './status-page.ts'
import { namespaceLabel, StreamMonitor } from './stream-monitor.ts'
import {
  checkSlot,
  type CreateSlot,
  logFailoverEnabled,
  missingPublication,
  SlotGoneError,
  stuckSlotError,
} from '../postgres/slot-guard.ts'
import { DroppedTableWatch, leaveOutDroppedTables } from './dropped-tables.ts'
import { connect } from '../postgres/connect.ts'
import { formatLsn } from '../postgres/lsn.ts'
import { checkMigrated } from '../postgres/preflight.ts'
import { isUnreachable } from '../postgres/unreachable.ts'
import { ReplicationStream, SlotInUseError, SlotMissingError } from '../postgres/replication.ts'
import { STALLED } from '../postgres/replication-stall.ts'
import { Checkpoint } from './checkpoint.ts'
import { ServerWalWatch } from './server-wal.ts'
import { ChangeProcessor, type FlushInfo, type RouteRuntime } from './processor.ts'
import { abandoned, drainUnlessStopped } from './drain.ts'
import { buildRoutes, embedderFor } from '../pipeline/routes.ts'
import { MappingFollower, migrationState } from './follow.ts'
import { liveMappings } from '../postgres/live-versions.ts'
import { DiscardSink } from '../turbopuffer/discard.ts'
import type { Sink } from '../turbopuffer/types.ts'
import type { HttpServer } from '../runtime.ts'
import type { Logger } from '../types.ts'

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
  /** default 127.0.0.1 (only this machine) */
  metricsHost?: string
  /** ms between the status page's samples (default 10000; it keeps the last hour) */
  statusSampleMs?: number
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
  /**
   * reads the configuration files again: mappings migrated while run streams are followed online (stream/follow.ts);
   * without it, a published table no mapping reads stops the stream until a restart
   */
  reloadConfig?: () => Config
}

/** the engine's waits end early on stop: the loop checks the signal itself */
const pause = (ms: number, signal?: AbortSignal) => sleep(ms, signal, null)
const RECONNECT: Backoff = { baseMs: 500, maxMs: 30_000 }
/** a stream this much WAL behind the server is behind: its batches grow (a namespace per tenant, inflight.ts) */
const BEHIND_BYTES = 64n * 1024n
/** a replication stream whose consumer took nothing for this long, with no write succeeding meanwhile, sheds */
const STALL_MS = 10_000

/** Runs the stream until `signal` aborts. Throws for problems that retrying cannot fix (config, missing slot). */
export async function runStream(fullConfig: Config, opts: RunOptions): Promise<void> {
  const log = opts.log ?? createLogger()
  const { config, ownPublication } = selectForRun(fullConfig, opts)
  const sql = connect(config.postgres.connectionString, { max: 4 })
  const sinkAbort = new AbortController()
  const monitor = opts.monitor ?? new StreamMonitor(opts.maxLagSeconds ?? config.stream.max_lag_seconds ?? 60)
  // batches in flight (AIMD): grows while turbopuffer keeps up, halves when it answers 429. A namespace per tenant
  // spreads a batch over many namespaces (small requests, each namespace its own write limit): more batches at once
  const tenants = config.mappings.some((m) => m.namespaceTemplate)
  const writesInFlight = new AdaptiveLimit(tenants ? { initial: 32, max: 128 } : {})
  // when a write to turbopuffer last succeeded (not a query: writes may fail while queries pass): a stream whose
  // consumer waits behind writes none of which has succeeded for STALL_MS sheds what it read (replication.ts, shed)
  let lastWriteOk = performance.now()
  const sink: Sink = opts.discard ? new DiscardSink() : sinkFromConfig(
    config.turbopuffer,
    {
      log,
      // not opts.signal: a graceful stop still writes the batch in flight; this one gives up after the drain timeout
      signal: sinkAbort.signal,
      onRequest: (ms, ok, operation) => {
        monitor.sinkRequest(ms, ok)
        if (ok && operation === 'write') lastWriteOk = performance.now()
      },
      // a namespace per tenant: one series per mapping's template, not per tenant (bounded); the routes hold the
      // mappings followed since the start
      onPaced: (namespace, ms) => {
        const mappings = [...config.mappings, ...routes.map((r) => r.mapping)]
        monitor.sinkPaced(namespaceLabel(mappings, namespace), ms)
      },
      onRetry: (info) => {
        monitor.sinkRetry(info.operation, info.status)
        if (info.status === 429) writesInFlight.pushback()
      },
    },
  )
  if (tenants && sink instanceof TurbopufferSink && sink.writesInFlight < WRITES_IN_FLIGHT.other) {
    // only writes through Bun's fetch (a proxy, or PUFFGRES_HTTP=fetch) are held to fewer: its limit is read by Bun
    // when it starts, nothing here can raise it (the npm launcher and the Homebrew formula set it)
    log.info(
      `a namespace per tenant through Bun's fetch: at most ${sink.writesInFlight} write requests at once; start ` +
        'puffgres with BUN_CONFIG_MAX_HTTP_REQUESTS=1024 to let a backlog over many tenants drain faster',
    )
  }
  const heartbeat = new Heartbeat(sql, {
    slot: opts.slot,
    intervalMs: opts.heartbeatIntervalMs ?? config.stream.heartbeat_interval_ms ?? 10_000,
    maxRetainedWalMb: opts.maxRetainedWalMb ?? config.stream.max_retained_wal_mb,
    log,
    monitor,
    streaming: () => monitor.streaming,
  })
  let metricsServer: HttpServer | undefined
  let statusPage: StatusPage | undefined
  let routes: RouteRuntime[] = []
  // the mappings streamed: those whose table was dropped after `migrate` are left out (stream/dropped-tables.ts)
  let streamed = config
  let tableWatch: DroppedTableWatch | undefined
  // a namespace per tenant: how far the server's WAL goes, for batches that grow while the stream is behind it
  const walWatch = tenants ? new ServerWalWatch(sql) : undefined
  let follower: MappingFollower | undefined
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
        const delay = backoffDelay(attempt, RECONNECT)
        log.error('cannot reach PostgreSQL; retrying', { error: (e as Error).message, retry_in_ms: delay })
        await pause(delay, opts.signal)
        if (opts.signal?.aborted) return
      }
    }
    if (opts.metricsPort !== undefined) {
      statusPage = new StatusPage({
        monitor,
        sql,
        log,
        slot: opts.slot,
        publication: streamed.stream.publication,
        mappings: streamed.mappings.map((m) => ({
          name: m.name,
          namespace: m.namespace,
          table: `${m.schema}.${m.table}`,
        })),
        sampleMs: opts.statusSampleMs,
      })
      const host = opts.metricsHost ?? DEFAULT_METRICS_HOST
      metricsServer = await startMetricsServer(monitor, { port: opts.metricsPort, hostname: host, page: statusPage })
      statusPage.start()
      log.info('serving the status page /, /metrics and /healthz', { host, port: metricsServer.port })
      opts.onMetricsServer?.(metricsServer.port)
    }
    heartbeat.start()
    // read before the routes: a migrate between the two is followed at the stream's start
    const state = await migrationState(sql)
    // every live version: the newest of each mapping, and older ones a re-index keeps until they are retired
    // one embedder for every mapping: one cache, and the embedding metrics (stream-monitor.ts)
    const embedder = embedderFor(streamed, log, monitor.embeddingObserver())
    routes = await buildRoutes({ ...streamed, mappings: await liveMappings(streamed, sql) }, sql, log, embedder)
    const reload = opts.reloadConfig
    if (reload) {
      const load = () => selectForRun(reload(), opts).config
      follower = new MappingFollower({ load, sql, log, routes, state, embedder })
    }
    tableWatch = new DroppedTableWatch(sql, routes, log, opts.tableCheckIntervalMs ?? 10_000)
    tableWatch.start()
    walWatch?.start()
    let waitingLogged = false
    let failures = 0
    // a stop: the writes in flight get the drain timeout, then the sink gives up on them
    const drainTimeoutMs = opts.drainTimeoutMs ?? 30_000
    const tooLate = () => {
      log.warn('stopping: the batch in flight did not finish in time; it will be replayed on the next start', {
        timeout_ms: drainTimeoutMs,
      })
      sinkAbort.abort()
    }
    while (!opts.signal?.aborted) {
      // the writes of this connection (and all of them on the drain timeout)
      const writes = new AbortController()
      const giveUp = () => writes.abort(sinkAbort.signal.reason)
      sinkAbort.signal.addEventListener('abort', giveUp, { once: true })
      sink.useSignal?.(writes.signal)
      // the confirm policy (docs/ARCHITECTURE.md, "Checkpoint"): the stream tells it what was taken, the processor
      // what landed; it tells the stream what to report
      const checkpoint = new Checkpoint({
        report: (lsn, now) => rs.confirm(lsn, now),
        confirmed: (lsn) => monitor.confirmed(lsn),
      })
      const rs = new ReplicationStream(config.postgres.connectionString, {
        applicationName: 'puffgres',
        position: checkpoint,
        shedAfterMs: STALL_MS,
        shedIf: () => performance.now() - lastWriteOk >= STALL_MS,
        // the server ended it, the slot is free: a standby may replay what is in flight, so it is abandoned (drain.ts)
        onLost: (e) => writes.abort(abandoned(e)),
      })
      let processor: ChangeProcessor | undefined
      try {
        // an invalidated slot, or one gone after progress: stop with what happened and what to do
        await checkSlot(sql, opts.slot, opts.createSlot, log)
        const { created, failover } = await rs.ensureSlot(opts.slot, {
          create: opts.createSlot !== false,
          failover: config.stream.failover_slot ?? true,
        })
        if (created) log.info('created replication slot', { slot: opts.slot, ...(failover && { failover: true }) })
        if (failover === 'enabled') logFailoverEnabled(log, opts.slot)
        let iter
        try {
          iter = await rs.start({ slot: opts.slot, publication: config.stream.publication })
        } catch (e) {
          if (!(e instanceof SlotInUseError)) throw e
          if (!waitingLogged) log.info('slot in use: waiting as a hot standby', { slot: opts.slot, pid: e.activePid })
          waitingLogged = true
          await rs.close()
          await pause(opts.standbyRetryMs ?? 1000, opts.signal)
          continue
        }
        // migrations this process has not seen the message of (it waited as a hot standby, or the slot was confirmed
        // past the message by another process): the routes are made those of now before any change is read
        await follower?.follow()
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
          checkpoint,
          follow: follower?.follow.bind(follower),
          publication: config.stream.publication,
          // a namespace per tenant: batches grow while the stream is more than BEHIND_BYTES of WAL behind the server
          behind: walWatch ? () => walWatch!.lsn - rs.receivedLsn > BEHIND_BYTES : undefined,
          // a failed batch: let go of the walsender now, not when the next message arrives (invariant 7)
          onFailure: (e) => {
            // and of the other writes in flight: the slot free, a hot standby may replay them
            writes.abort(abandoned(e))
            void rs.abort(e)
          },
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
          await drainUnlessStopped(processor, opts.signal, drainTimeoutMs, tooLate)
          await rs.close()
        }
        opts.signal?.addEventListener('abort', onAbort, { once: true })
        try {
          for await (const ev of iter) {
            if (opts.signal?.aborted) break
            if (ev.msg.tag === 'commit') monitor.commit(ev.msg.endLsn, ev.msg.commitTime)
            // most messages are handled at once: a promise only when the processor needs to wait
            const wait = processor.handle(ev.msg)
            if (wait) await wait
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
        // a slot whose WAL predates its publication fails the same way on every attempt: stop with the fix
        const stuck = missingPublication(e)
        if (stuck) {
          await rs.abort(e as Error)
          throw await stuckSlotError(sql, opts.slot, stuck, config.mappings.map((m) => m.name))
        }
        if (opts.signal?.aborted) break
        // shed (the writes stalled, then went on): the connection still answers the walsender, so it is held until
        // the writes land and are confirmed: no hot standby takes the slot while they are in flight
        if ((e as { code?: string }).code === STALLED) {
          await drainUnlessStopped(processor, opts.signal, drainTimeoutMs, tooLate)
        }
        failures++
        const delay = backoffDelay(failures, RECONNECT)
        log.error('stream interrupted; reconnecting (unconfirmed changes will be replayed)', {
          error: (e as Error).message,
          retry_in_ms: delay,
        })
        // the walsender first: held while we wait, it would keep PostgreSQL from shutting down (invariant 7). Its
        // slot free, what is still in flight is abandoned (a hot standby may replay it), and waited for: the writes
        // of the next connection start once all of these have ended
        writes.abort(abandoned(e as Error))
        await rs.abort(e as Error)
        await processor?.drain().catch(() => {})
        await pause(delay, opts.signal)
      } finally {
        sinkAbort.signal.removeEventListener('abort', giveUp)
        monitor.setStreaming(false)
        processor?.stop()
        await rs.close().catch(() => {})
      }
    }
  } finally {
    monitor.setStreaming(false)
    await heartbeat.stop()
    await tableWatch?.stop()
    walWatch?.stop()
    // transform runners: `bin:` child processes end here
    for (const r of routes) await r.runner.close().catch(() => {})
    await follower?.close()
    await metricsServer?.stop().catch(() => {})
    await statusPage?.stop()
    await sql.end({ timeout: 2 })
  }
}

/** A bad --mapping/--publication/--slot combination: bad usage (exit status 2). */
const usageError = (message: string) => new CliError(message, 2)

/**
 * The mappings this run streams and its publication. A run of some of the mappings keeps its own publication (it
 * creates or updates it), which must not be the one `migrate` keeps for all of them.
 */
export function selectForRun(config: Config, opts: RunOptions): { config: Config; ownPublication: boolean } {
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
