// A replication stream whose consumer stopped taking messages while the stream is paused (replication.ts, shed): the
// writes stalled, a turbopuffer outage most likely.

/** The code of the ReplicationError a stream that shed fails its consumer's read with (replication.ts). */
export const STALLED = 'PUFFGRES_STREAM_STALLED'

/**
 * Calls `stalled` once `taken()` has not moved for `afterMs` while a pause lasts, and `due()` (default: always) holds
 * then; once per pause.
 */
export class StallWatch {
  #timer: ReturnType<typeof setInterval> | undefined

  constructor(
    readonly afterMs: number,
    private readonly taken: () => number,
    private readonly due: () => boolean = () => true,
  ) {}

  /** Watches from now while `paused()` holds; `stalled` is called at most once. */
  start(paused: () => boolean, stalled: () => void): void {
    if (this.#timer) return
    let last = this.taken()
    let since = performance.now()
    this.#timer = setInterval(() => {
      if (!paused()) return this.stop()
      if (this.taken() !== last) {
        last = this.taken()
        since = performance.now()
      } else if (performance.now() - since >= this.afterMs && this.due()) {
        this.stop()
        stalled()
      }
    }, Math.min(1000, this.afterMs / 4))
    ;(this.#timer as { unref?: () => void }).unref?.()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}
