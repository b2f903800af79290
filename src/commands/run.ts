// `puffgres run`: flags, help and printing; the stream engine itself is src/stream/engine.ts.
import process from 'node:process'
import type { Config } from '../config/load.ts'
import { CliError } from '../errors.ts'
import { createLogger } from '../log.ts'
import { parseFlags, port, positiveInt, slotFlag, UsageError } from './flags.ts'
import { SlotGoneError } from '../postgres/slot-guard.ts'
import { NotMigratedError } from '../postgres/preflight.ts'
import { SlotMissingError } from '../postgres/replication.ts'
import { type RunOptions, runStream, selectForRun } from '../stream/engine.ts'
import { boundHeapGrowth, onShutdownSignals, traceMemory } from '../runtime.ts'

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
  --metrics-port <PORT>     serve the status page (/), Prometheus /metrics and /healthz on this port (default:
                            [stream] metrics_port; none when unset)
  --metrics-host <ADDR>     address the metrics server listens on (default 127.0.0.1: this machine only; e.g.
                            0.0.0.0 for every interface, as in a container that Prometheus scrapes)

Config ([stream]): mappings (scale-out, as --mapping), heartbeat_interval_ms (default 10000; 0 = no heartbeat), max_lag_seconds (/healthz bound,
default 60), max_retained_wal_mb (warn when the slot retains more WAL), metrics_port, failover_slot (default
true: on PostgreSQL 17+ the slot is a failover slot, which a standby with sync_replication_slots = on keeps; see
README, Failover).
`

export async function runCommand(argv: string[], config: (opts?: { fresh?: boolean }) => Config): Promise<number> {
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
    return e instanceof UsageError ? 2 : e instanceof CliError ? e.exitCode : 1
  }
  const stop = new AbortController()
  const log = createLogger()
  const offSignals = onShutdownSignals((sig) => {
    if (stop.signal.aborted) {
      log.warn(`second ${sig}: exiting now (unconfirmed changes will be replayed on the next start)`)
      process.exit(130)
    }
    log.info(`${sig}: finishing the batches in flight, then stopping`)
    stop.abort()
  })
  // a heap that grows far past what is alive before the runtime collects (runtime.ts)
  const offHeapBound = boundHeapGrowth()
  const offTrace = traceMemory()
  try {
    // the files as they are now, not the configuration read at start: mappings migrated while run streams
    await runStream(cfg, { ...opts, signal: stop.signal, log, reloadConfig: () => config({ fresh: true }) })
    log.info('stopped')
    return 0
  } catch (e) {
    if (e instanceof SlotMissingError || e instanceof SlotGoneError || e instanceof NotMigratedError) {
      console.error(`error: ${e.message}`)
      return 1
    }
    throw e
  } finally {
    offSignals()
    offHeapBound()
    offTrace()
  }
}
