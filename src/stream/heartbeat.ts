// Keeps the slot moving on an idle database and watches the WAL it retains. A logical message written to the WAL
// (not transactional, from an ordinary pool connection) is streamed to `run`; once it has been read with nothing
// pending, the replication stream confirms the keepalive after it, so confirmed_flush_lsn (and with it the WAL
// the slot pins) advances even when no published table changes.
import type postgres from 'postgres'
import type { Logger } from '../types.ts'
import { slotState } from '../postgres/slot.ts'
import type { StreamMonitor } from './stream-monitor.ts'

export interface HeartbeatOptions {
  slot: string
  /** ms between heartbeats; 0 writes none (the slot is still watched every 10 s) */
  intervalMs: number
  /** warn when the slot retains more WAL than this (MiB) */
  maxRetainedWalMb?: number
  log: Logger
  monitor?: StreamMonitor
  /** heartbeats are written only while this says the process streams (a standby writes none) */
  streaming: () => boolean
}

/** Writes one heartbeat message; returns its LSN. */
export async function emitHeartbeat(sql: postgres.Sql): Promise<string> {
  const [r] = await sql<{ lsn: string }[]>`SELECT pg_logical_emit_message(false, 'puffgres', 'heartbeat')::text AS lsn`
  return r.lsn
}

export class Heartbeat {
  #timer: ReturnType<typeof setTimeout> | undefined
  #stopped = false
  #over = false
  #running: Promise<void> | undefined

  constructor(private readonly sql: postgres.Sql, private readonly opts: HeartbeatOptions) {}

  start(): void {
    this.#schedule()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    await this.#running
  }

  #schedule() {
    if (this.#stopped) return
    const ms = this.opts.intervalMs > 0 ? this.opts.intervalMs : 10_000
    this.#timer = setTimeout(() => {
      this.#running = this.tick().finally(() => {
        this.#running = undefined
        this.#schedule()
      })
    }, ms)
  }

  /** One round: a heartbeat (when enabled and streaming), then the slot's lag and retained WAL. Never throws. */
  async tick(): Promise<void> {
    const { log, monitor } = this.opts
    try {
      if (this.opts.intervalMs > 0 && this.opts.streaming()) {
        const lsn = await emitHeartbeat(this.sql)
        monitor?.heartbeats.inc()
        log.debug('heartbeat', { lsn })
      }
      const s = await slotState(this.sql, this.opts.slot)
      if (s.lag_bytes !== null) monitor?.lagBytes.set(s.lag_bytes)
      if (s.retained_wal_bytes !== null) monitor?.retainedWal.set(s.retained_wal_bytes)
      const max = this.opts.maxRetainedWalMb
      if (max !== undefined && s.retained_wal_bytes !== null) {
        const mb = s.retained_wal_bytes / (1024 * 1024)
        if (mb > max && !this.#over) {
          log.warn('the replication slot retains more WAL than [stream] max_retained_wal_mb', {
            slot: this.opts.slot,
            retained_mb: Math.round(mb),
            max_retained_wal_mb: max,
            confirmed_flush_lsn: s.confirmed_flush_lsn,
          })
        } else if (mb <= max && this.#over) {
          log.info('retained WAL is back under [stream] max_retained_wal_mb', {
            slot: this.opts.slot,
            retained_mb: Math.round(mb),
          })
        }
        this.#over = mb > max
      }
    } catch (e) {
      log.warn('heartbeat failed (will try again)', { error: (e as Error).message })
    }
  }
}
