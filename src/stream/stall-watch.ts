// Lets go of the walsender while no write lands (docs/ARCHITECTURE.md, invariant 7). PostgreSQL's shutdown (`pg_ctl
// stop -m fast`, a restart, a switchover) waits until each logical walsender's client has confirmed everything it
// was sent, and `run` confirms only what has landed in turbopuffer: through an outage it would keep answering the
// walsender's keepalives and hold the server's shutdown for as long as the outage lasts. Once writes have been in
// flight for `stallMs` with none landing, `onStall` lets go of the replication connection (the engine aborts it); the
// writes go on retrying, and the stream starts again from the confirmed position once they have landed.

/** How long writes may be in flight with none landing before the walsender is let go: 10 s. */
export const STALL_MS = 10_000

/** Why the replication connection was let go: no write landed for `ms`. */
export class WritesStalledError extends Error {
  constructor(ms: number) {
    super(
      `no write has landed for ${Math.round(ms / 1000)} s: the replication connection is let go until the writes ` +
        'in flight land (PostgreSQL can shut down meanwhile)',
    )
    this.name = 'WritesStalledError'
  }
}

export interface StallWatchOptions {
  /** default STALL_MS */
  stallMs?: number
  /** writes are in flight now */
  writing: () => boolean
  /** called once, with how long no write has landed */
  onStall: (ms: number) => void
}

export class StallWatch {
  readonly #stallMs: number
  /** the last landing, or the last moment nothing was in flight */
  #since = performance.now()
  #timer: ReturnType<typeof setInterval> | undefined

  constructor(private readonly opts: StallWatchOptions) {
    this.#stallMs = opts.stallMs ?? STALL_MS
    this.#timer = setInterval(() => this.#check(), Math.max(10, Math.min(1000, this.#stallMs / 4)))
    ;(this.#timer as { unref?: () => void }).unref?.()
  }

  /** A write landed. */
  landed(): void {
    this.#since = performance.now()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  #check(): void {
    const now = performance.now()
    if (!this.opts.writing()) this.#since = now
    else if (now - this.#since >= this.#stallMs) {
      this.stop()
      this.opts.onStall(now - this.#since)
    }
  }
}
