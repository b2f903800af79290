// How far the server's WAL goes, read every `intervalMs`: with a namespace per tenant a batch grows while the stream
// is behind it (inflight.ts `spread`). The replication protocol cannot say: a logical walsender's XLogData and
// keepalives carry the position of what it has decoded and sent, not the end of the WAL.
import type postgres from 'postgres'
import { backoffDelay } from '../retry.ts'
import { parseLsn } from '../postgres/lsn.ts'

export class ServerWalWatch {
  #lsn = 0n
  #timer: ReturnType<typeof setInterval> | undefined
  #reading = false
  /** after a failed read (PostgreSQL away: the engine reconnects meanwhile), no read before this time */
  #quietUntil = 0
  #failures = 0

  constructor(private readonly sql: postgres.Sql, private readonly intervalMs = 100) {}

  /** The server's WAL position as last read (0 before the first read; a failed read keeps the previous one). */
  get lsn(): bigint {
    return this.#lsn
  }

  start(): void {
    this.#timer ??= setInterval(() => void this.#read(), this.intervalMs)
    ;(this.#timer as { unref?: () => void }).unref?.()
    void this.#read()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  async #read(): Promise<void> {
    if (this.#reading || performance.now() < this.#quietUntil) return
    this.#reading = true
    try {
      // a standby (logical decoding there, PostgreSQL 16+) has no WAL of its own: what it has received
      const [r] = await this.sql<{ lsn: string | null }[]>`SELECT (CASE WHEN pg_is_in_recovery()
        THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_flush_lsn() END)::text AS lsn`
      if (r?.lsn) this.#lsn = parseLsn(r.lsn)
      this.#failures = 0
    } catch {
      // the previous position stands: the stream then counts as caught up once it passes it. No connection attempt
      // every 100 ms while PostgreSQL is away: none for 1 s after a failure, doubling to 10 s
      this.#quietUntil = performance.now() + backoffDelay(this.#failures++, { baseMs: 1000, maxMs: 10_000 })
    } finally {
      this.#reading = false
    }
  }
}
