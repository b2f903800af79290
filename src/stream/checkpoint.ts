// The checkpoint: which LSN the slot may be told is flushed (docs/ARCHITECTURE.md, invariant 1). Two rules:
// - a commit is confirmed once every change committed at or before it landed, whatever order the writes land in
//   (CommitLedger, kept by the WritePipeline, finds that commit; Checkpoint.landed takes it); never backwards;
// - a keepalive's WAL end may be reported beyond the last commit only when the stream is idle at that keepalive:
//   between transactions, with every commit taken so far confirmed (WAL of unpublished tables is then not pinned
//   forever). A keepalive that arrives while a commit is still being written is held until that commit lands.
// The replication connection reports what `report` is given and decides nothing (postgres/replication.ts).
import type { PgOutputMessage } from '../postgres/pgoutput.ts'
import type { StreamPosition } from '../postgres/replication.ts'

export interface CheckpointOptions {
  /**
   * the flush position moved: the stream reports it to the server, at once when `now` (a commit landed: a restart
   * then replays little), else with its next periodic status update (a keepalive while idle)
   */
  report: (flushLsn: bigint, now: boolean) => void
  /** a commit was confirmed (metrics) */
  confirmed?: (lsn: bigint) => void
}

export class Checkpoint implements StreamPosition {
  /** end LSN of the last commit whose changes all landed */
  private confirmedLsn = 0n
  /** what is reported: confirmedLsn, or further to a keepalive's WAL end taken while idle */
  private flush = 0n
  // what the consumer has taken from the stream (not what it has handled: a keepalive right behind a Begin that is
  // not handled yet must still count as inside that transaction)
  private inTransaction = false
  private lastCommitTaken = 0n
  private pendingKeepalive: { walEnd: bigint; needs: bigint } | undefined

  constructor(private readonly opts: CheckpointOptions) {}

  /** The last commit confirmed (every change at or before it landed). */
  get confirmed(): bigint {
    return this.confirmedLsn
  }

  /** The flush position reported to the server. */
  get flushLsn(): bigint {
    return this.flush
  }

  /** The consumer took this message from the stream (called in stream order). */
  taken(msg: PgOutputMessage): void {
    if (msg.tag === 'begin') this.inTransaction = true
    else if (msg.tag === 'commit') {
      this.inTransaction = false
      this.lastCommitTaken = msg.endLsn
    }
  }

  /** The consumer took everything before a keepalive at walEnd. */
  keepalive(walEnd: bigint): void {
    if (this.inTransaction || walEnd <= this.flush) return
    if (this.confirmedLsn >= this.lastCommitTaken) this.advance(walEnd, false)
    else this.pendingKeepalive = { walEnd, needs: this.lastCommitTaken }
  }

  /** Every change committed at or before `lsn` (a commit's end LSN) is durable downstream. */
  landed(lsn: bigint): void {
    if (lsn <= this.confirmedLsn) return
    this.confirmedLsn = lsn
    this.opts.confirmed?.(lsn)
    let to = lsn
    const k = this.pendingKeepalive
    if (k && lsn >= k.needs) {
      if (k.walEnd > to) to = k.walEnd
      this.pendingKeepalive = undefined
    }
    this.advance(to, true)
  }

  private advance(lsn: bigint, now: boolean) {
    if (lsn <= this.flush) return
    this.flush = lsn
    this.opts.report(lsn, now)
  }
}

/** One commit (or several in a row: empty commits merge into the one before), in commit order. */
export interface LedgerTxn {
  /** end LSN of its (last) commit; undefined while the transaction is open */
  end: bigint | undefined
  /** its changes pending or in flight (a change replaced by a later change of the same document is done) */
  outstanding: number
}

/**
 * Commits in order, each with a count of its changes not yet landed: the LSN that may be confirmed is the end of the
 * last commit of the longest landed prefix, never past a write in flight.
 */
export class CommitLedger {
  #txns: LedgerTxn[] = []
  #head = 0
  #open: LedgerTxn | undefined
  #lastEnd = 0n

  /** a transaction is open (begun, not committed) */
  get open(): boolean {
    return this.#open !== undefined
  }

  begin(): void {
    this.#open = { end: undefined, outstanding: 0 }
    this.#txns.push(this.#open)
  }

  /** The transaction a change belongs to (counted as outstanding until `done`). */
  add(): LedgerTxn {
    const t = this.#current()
    t.outstanding++
    return t
  }

  /** A change of `t` landed, or was replaced by a later change of its document. */
  done(t: LedgerTxn): void {
    t.outstanding--
  }

  /** The open transaction committed at endLsn. */
  commit(endLsn: bigint): void {
    const t = this.#open ?? this.#current()
    this.#open = undefined
    t.end = endLsn
    this.#lastEnd = endLsn
    // an empty commit joins the commit before it: the queue is as long as the commits still being written
    const n = this.#txns.length
    if (t.outstanding === 0 && n - this.#head >= 2 && this.#txns[n - 1] === t && this.#txns[n - 2].end !== undefined) {
      this.#txns.pop()
      this.#txns[n - 2].end = endLsn
    }
  }

  /** Drops the landed prefix; returns the end LSN of its last commit, if it moved. */
  advance(): bigint | undefined {
    let lsn: bigint | undefined
    while (this.#head < this.#txns.length) {
      const t = this.#txns[this.#head]
      if (t.end === undefined || t.outstanding > 0) break
      lsn = t.end
      this.#head++
    }
    if (this.#head > 1024 && this.#head * 2 > this.#txns.length) {
      this.#txns = this.#txns.slice(this.#head)
      this.#head = 0
    }
    return lsn !== undefined && lsn > 0n ? lsn : undefined
  }

  #current(): LedgerTxn {
    if (this.#open) return this.#open
    // a change outside a transaction (not sent by pgoutput): it belongs with the last commit
    const last = this.#txns[this.#txns.length - 1]
    if (last && this.#txns.length > this.#head) return last
    const t: LedgerTxn = { end: this.#lastEnd, outstanding: 0 }
    this.#txns.push(t)
    return t
  }
}
