// The logical replication stream: a dedicated walsender connection (postgres.js with `replication: 'database'`),
// START_REPLICATION over copy-both, pgoutput decoding, and standby status updates that we write ourselves so the
// slot's confirmed flush LSN moves only when the consumer reports a position (docs/ARCHITECTURE.md, invariant 1).
// What may be reported is not decided here: that is the checkpoint's (src/stream/checkpoint.ts), which this stream
// tells, in stream order, what the consumer took and where keepalives fell (`position`).
//
// Flow control: decoded frames wait in a bounded queue; when it is full the copy stream is paused, postgres.js then
// pauses the socket and the walsender blocks (invariant 4). Status updates go out from a timer that does not depend
// on the consumer or on reading the socket, so a slow consumer never trips wal_sender_timeout.
//
// Beside it: the slot commands (replication-slot.ts), the checks and START_REPLICATION itself (replication-start.ts)
// and the status update's bytes (standby-status.ts).
import type { Buffer } from 'node:buffer'
import type { Duplex } from 'node:stream'
import postgres from 'postgres'
import { PgOutputDecoder, type PgOutputMessage } from './pgoutput.ts'
import * as slots from './replication-slot.ts'
import {
  checkPublications,
  prepareSession,
  publicationsToStream,
  ReplicationError,
  reportEarlyError,
  type StartOptions,
  startReplication,
} from './replication-start.ts'
import { pingReply, standbyStatusUpdate } from './standby-status.ts'
import { STALLED, StallWatch } from './replication-stall.ts'
import { TEXT_FORMAT_SETTINGS } from './values.ts'
import type { ReplicationEvent, ReplicationOptions, StreamPosition } from './replication-types.ts'

// The slot commands, their errors and the stream's error live in their own modules; importers use them from here.
export { SlotInUseError, SlotMissingError, type SystemIdentity } from './replication-slot.ts'
export { ReplicationError, type StartOptions } from './replication-start.ts'
export type { ReplicationEvent, ReplicationOptions, StreamPosition } from './replication-types.ts'

// pgoutput message tags, at byte 25 of an XLogData frame
const BEGIN = 0x42
const COMMIT = 0x43

interface KeepaliveMark {
  keepalive: bigint
}
type QueueItem = Buffer | KeepaliveMark

/**
 * One replication connection. Typical use:
 *
 *     const rs = new ReplicationStream(url)
 *     await rs.ensureSlot('puffgres', { create: true })
 *     for await (const { msg } of await rs.start({ slot: 'puffgres', publication: 'puffgres_pub' })) {
 *       ... on msg.tag === 'commit', once its changes are durable: rs.confirm(msg.endLsn)
 *     }
 * The stream engine confirms through a Checkpoint (src/stream/checkpoint.ts) given as `position`, which also lets
 * keepalives move the flush position while idle. Single-use: after the stream ends or fails, close() and make another.
 */
export class ReplicationStream implements AsyncIterableIterator<ReplicationEvent> {
  /** pgoutput decoder; its `relations` cache holds what the consumer has been given so far */
  readonly decoder = new PgOutputDecoder()
  private readonly sql: postgres.Sql
  private readonly statusIntervalMs: number | undefined
  private readonly maxQueuedFrames: number
  private readonly maxQueuedBytes: number
  private readonly position: StreamPosition | undefined
  private readonly onLost: ((error: Error) => void) | undefined

  private slot = ''
  private stream: Duplex | undefined
  private timer: ReturnType<typeof setInterval> | undefined
  private queue: QueueItem[] = []
  private head = 0
  private queuedBytes = 0
  private paused = false
  private waiter: { resolve(r: IteratorResult<ReplicationEvent>): void; reject(e: unknown): void } | undefined
  private failure: Error | undefined
  private ended = false
  private closing: Promise<void> | undefined
  private takes = 0 // messages the consumer took: none for a while with the queue full is a stall (shed)
  private readonly stall: StallWatch
  private shedding: ReplicationError | undefined // shed(): frames read and dropped, the consumer's next read fails

  /** the flush position reported in status updates (what the consumer confirmed) */
  private flush = 0n
  private lastReceived = 0n

  constructor(url: string, options: ReplicationOptions = {}) {
    this.statusIntervalMs = options.statusIntervalMs
    this.maxQueuedFrames = options.maxQueuedFrames ?? 1000
    this.maxQueuedBytes = options.maxQueuedBytes ?? 16 * 1024 * 1024
    this.position = options.position
    this.onLost = options.onLost
    this.stall = new StallWatch(options.shedAfterMs ?? 10_000, () => this.takes, options.shedIf)
    this.sql = postgres(url, {
      max: 1,
      fetch_types: false,
      idle_timeout: undefined,
      max_lifetime: null,
      onnotice: () => {},
      connection: {
        replication: 'database',
        application_name: options.applicationName ?? 'puffgres',
        // the text format values.ts reads: pgoutput prints values with the walsender's settings
        ...TEXT_FORMAT_SETTINGS,
      },
    })
  }

  /** IDENTIFY_SYSTEM: cluster id, timeline, current WAL position, database. */
  identifySystem(): Promise<slots.SystemIdentity> {
    return slots.identifySystem(this.sql)
  }

  /** Creates the slot if missing and `create`, else SlotMissingError; a failover slot if asked (replication-slot.ts). */
  ensureSlot(slot: string, opts: { create: boolean } & slots.SlotOptions): Promise<slots.EnsuredSlot> {
    return slots.ensureSlot(this.sql, slot, opts)
  }

  /** Creates the slot unless it exists; the LSN from which it will stream (replication-slot.ts). */
  createSlot(slot: string, opts: slots.SlotOptions = {}): Promise<slots.CreatedSlot> {
    return slots.createSlot(this.sql, slot, opts)
  }

  /** The slot's row in pg_replication_slots, checked to be a pgoutput slot of this database; undefined if none. */
  findSlot(slot: string): Promise<slots.SlotInfo | undefined> {
    return slots.findSlot(this.sql, slot)
  }

  /**
   * START_REPLICATION from the slot. Resolves once the server streams; the returned iterator (this object)
   * yields every pgoutput message. Rejects with SlotInUseError when another connection holds the slot.
   */
  async start(opts: StartOptions): Promise<AsyncIterableIterator<ReplicationEvent>> {
    if (this.stream || this.closing) throw new Error('ReplicationStream.start() called twice')
    const pubs = publicationsToStream(opts)
    this.slot = opts.slot
    await checkPublications(this.sql, this.slot, pubs)
    const session = await prepareSession(this.sql)
    const interval = this.statusIntervalMs ?? session.statusIntervalMs
    const stream = await startReplication(this.sql, opts, pubs)
    this.stream = stream
    stream.on('data', (frame: Buffer) => this.onFrame(frame))
    stream.on('error', (e: Error) => this.fail(e))
    stream.on('end', () => {
      if (!this.closing) this.fail(new Error('the server ended the replication stream'))
    })
    reportEarlyError(stream, (e) => this.fail(e))
    this.timer = setInterval(() => this.sendStatus(), interval)
    return this
  }

  /**
   * Reports `lsn` as the flush position (everything before it is durable downstream). Never moves backwards. When it
   * moves, the server is told at once (so a restart replays little), or with the next periodic status update when
   * not `now`.
   */
  confirm(lsn: bigint, now = true): void {
    if (lsn <= this.flush) return
    this.flush = lsn
    if (now) this.sendStatus()
  }

  /** The flush position we report. */
  get flushLsn(): bigint {
    return this.flush
  }

  /** Sends a standby status update now (default: written = flushed = applied = flushLsn); no-op unless streaming */
  sendStatus(replyRequested = false, update = standbyStatusUpdate(this.flush, replyRequested)): void {
    const stream = this.stream
    if (!stream || this.failure || stream.writableEnded || stream.destroyed) return
    stream.write(update)
  }

  /** Highest walEnd seen in any frame (diagnostics: how far the server has sent). */
  get receivedLsn(): bigint {
    return this.lastReceived
  }

  next(): Promise<IteratorResult<ReplicationEvent>> {
    if (this.waiter) return Promise.reject(new Error('ReplicationStream.next() called while a call is pending'))
    try {
      const r = this.take()
      if (r) return Promise.resolve(r)
    } catch (e) {
      return Promise.reject(e)
    }
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }))
  }

  /** Leaving a for-await loop closes the stream (sending a final status update). */
  async return(): Promise<IteratorResult<ReplicationEvent>> {
    await this.close()
    return { done: true, value: undefined }
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ReplicationEvent> {
    return this
  }

  /**
   * Sends a final status update with the flush LSN, ends the copy and the connection. Safe to call repeatedly and
   * after a failure. A pending next() resolves as done.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  /**
   * Drops the connection at once: no final status update, no CopyDone handshake, no waiting. For failures: a
   * walsender left connected waits for a flush confirmation that will not come, and PostgreSQL cannot shut down
   * while it waits (docs/ARCHITECTURE.md, invariant 7). Everything after the flush LSN is streamed again next time.
   * A pending next() rejects with `reason`.
   */
  abort(reason: Error): Promise<void> {
    if (this.closing) return this.closing
    if (!this.failure) {
      this.failure = reason
      const w = this.waiter
      this.waiter = undefined
      w?.reject(reason)
    }
    clearInterval(this.timer)
    const stream = this.stream
    if (stream) {
      stream.removeAllListeners('data')
      stream.on('error', () => {})
    }
    this.queue = []
    this.head = 0
    this.ended = true
    this.closing = this.sql.end({ timeout: 0 }).catch(() => {})
    return this.closing
  }

  private async shutdown() {
    clearInterval(this.timer)
    const stream = this.stream
    if (stream && !this.failure && !stream.destroyed) {
      this.sendStatus()
      // Frames still in flight are dropped: everything after the flush LSN is streamed again next time.
      stream.removeAllListeners('data')
      stream.on('data', () => {})
      stream.on('error', () => {})
      stream.resume()
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 5000)
        stream.once('close', () => (clearTimeout(t), resolve()))
        stream.end()
      })
    }
    this.queue = []
    this.head = 0
    this.ended = true
    const w = this.waiter
    this.waiter = undefined
    w?.resolve({ done: true, value: undefined })
    await this.sql.end({ timeout: 1 })
  }

  private onFrame(frame: Buffer) {
    const kind = frame[0]
    if (kind === 0x77) { // w: XLogData
      const walEnd = frame.readBigUInt64BE(9)
      if (walEnd > this.lastReceived) this.lastReceived = walEnd
      if (!this.shedding) this.enqueue(frame, frame.length)
    } else if (kind === 0x6b) { // k: primary keepalive
      const walEnd = frame.readBigUInt64BE(1)
      if (walEnd > this.lastReceived) this.lastReceived = walEnd
      // Its position in the stream matters: it may only count once the consumer has taken what came before it
      // (after a shed, never: what came before it was dropped; the queue stays empty then).
      if (this.head !== this.queue.length) this.enqueue({ keepalive: walEnd }, 0)
      else if (!this.shedding) this.position?.keepalive(walEnd)
      if (frame[17]) this.sendStatus(false, pingReply(walEnd, this.flush)) // a reply wanted
    }
  }

  private enqueue(item: QueueItem, bytes: number) {
    this.queue.push(item)
    this.queuedBytes += bytes
    if (this.waiter) {
      const w = this.waiter
      try {
        const r = this.take()
        if (!r) return
        this.waiter = undefined
        w.resolve(r)
      } catch (e) {
        this.waiter = undefined
        w.reject(e)
      }
      return
    }
    if (
      !this.paused && (this.queue.length - this.head >= this.maxQueuedFrames || this.queuedBytes >= this.maxQueuedBytes)
    ) {
      this.paused = true
      this.stream?.pause()
      this.stall.start(() => this.paused && !this.failure && !this.closing, () => this.shed())
    }
  }

  /**
   * Paused, a walsender cannot send, and at shutdown it exits only once all is sent and reported (pingReply): through
   * a turbopuffer outage with a backlog, run held PostgreSQL's fast shutdown. So with nothing taken for shedAfterMs
   * while paused (StallWatch): drop the queue, read and drop what follows (answering keepalives), and fail the next
   * read, which streams again from the confirmed position. The slot stays held: no hot standby takes over meanwhile.
   */
  private shed() {
    if (this.failure || this.closing) return
    this.shedding = new ReplicationError(
      `replication stream of slot "${this.slot}": no change taken for ${this.stall.afterMs / 1000} s (the writes ` +
        'stalled); what was read and not written is streamed again',
      STALLED,
    )
    this.queue = []
    this.head = 0
    this.queuedBytes = 0
    this.paused = false
    this.stream?.resume()
  }

  /** The next event for the consumer, or undefined when none is buffered; throws the stream's failure. */
  private take(): IteratorResult<ReplicationEvent> | undefined {
    if (this.shedding && !this.failure) throw this.shedding
    for (;;) {
      if (this.head === this.queue.length) {
        if (this.failure) throw this.failure
        if (this.ended) return { done: true, value: undefined }
        if (this.head > 0) {
          this.queue = []
          this.head = 0
        }
        return undefined
      }
      if (this.failure) throw this.failure
      // PostgreSQL 14 sends a Begin/Commit pair for every transaction, even one that changed nothing published (DDL,
      // other tables); 15+ skip them. Skip them here too, so that every version streams the same: the Commit then
      // counts as a keepalive. Deciding needs the frame after the Begin: wait for it.
      let empty = false
      const first = this.queue[this.head]
      if (first instanceof Uint8Array && first[25] === BEGIN) {
        const after = this.queue[this.head + 1]
        if (after === undefined && !this.ended) {
          if (this.paused) { // only the Begin is buffered: let the next frame in
            this.paused = false
            this.stream?.resume()
          }
          return undefined
        }
        empty = after instanceof Uint8Array && after[25] === COMMIT
      }
      const item = this.queue[this.head++]
      if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
        this.queue = this.queue.slice(this.head)
        this.head = 0
      }
      if (
        this.paused && this.queue.length - this.head <= this.maxQueuedFrames / 2 &&
        this.queuedBytes <= this.maxQueuedBytes / 2
      ) {
        this.paused = false
        this.stream?.resume()
      }
      if (!(item instanceof Uint8Array)) {
        this.position?.keepalive(item.keepalive)
        continue
      }
      this.queuedBytes -= item.length
      if (empty) {
        const commit = this.queue[this.head++] as Buffer
        this.queuedBytes -= commit.length
        const m = this.decoder.decode(commit, 25) as Extract<PgOutputMessage, { tag: 'commit' }>
        this.position?.keepalive(m.endLsn)
        continue
      }
      const msg = this.decoder.decode(item, 25)
      this.takes++
      this.position?.taken(msg)
      return { done: false, value: { walStart: item.readBigUInt64BE(1), walEnd: item.readBigUInt64BE(9), msg } }
    }
  }

  private fail(e: Error) {
    if (this.failure || this.closing) return
    const code = (e as { code?: string }).code
    const detail = code === 'CONNECTION_CLOSED' || code === 'CONNECTION_DESTROYED'
      ? 'the connection was closed'
      : e.message
    this.failure = new ReplicationError(`replication stream of slot "${this.slot}" failed: ${detail}`, code, {
      cause: e,
    })
    this.onLost?.(this.failure)
    clearInterval(this.timer)
    const w = this.waiter
    this.waiter = undefined
    w?.reject(this.failure)
  }
}
