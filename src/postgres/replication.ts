// The logical replication stream: a dedicated walsender connection (postgres.js with `replication: 'database'`),
// START_REPLICATION over copy-both, pgoutput decoding, and standby status updates that we write ourselves so the
// slot's confirmed flush LSN moves only when the consumer reports a position (docs/ARCHITECTURE.md, invariant 1).
// What may be reported is not decided here: that is the checkpoint's (src/stream/checkpoint.ts), which this stream
// tells, in stream order, what the consumer took and where keepalives fell (`position`).
//
// Flow control: decoded frames wait in a bounded queue; when it is full the copy stream is paused, postgres.js then
// pauses the socket and the walsender blocks (invariant 4). Status updates go out from a timer that does not depend
// on the consumer or on reading the socket, so a slow consumer never trips wal_sender_timeout.
import { Buffer } from 'node:buffer'
import type { Duplex } from 'node:stream'
import postgres from 'postgres'
import { formatLsn, parseLsn } from './lsn.ts'
import { PgOutputDecoder, type PgOutputMessage } from './pgoutput.ts'
import { TEXT_FORMAT_SETTINGS } from './values.ts'

export interface ReplicationOptions {
  /** application_name of the walsender connection (shows in pg_stat_replication) */
  applicationName?: string
  /**
   * how often a standby status update is sent regardless of traffic; default: a third of the server's
   * wal_sender_timeout, at most 10 s
   */
  statusIntervalMs?: number
  /** frames buffered before the stream is paused; default 1000 */
  maxQueuedFrames?: number
  /** bytes buffered before the stream is paused; default 16 MiB */
  maxQueuedBytes?: number
  /** told each message as the consumer takes it and each keepalive at its place in the stream (the checkpoint) */
  position?: StreamPosition
}

/**
 * What the stream tells whoever decides the flush position, in stream order: each message as the consumer takes
 * it, and each keepalive once the consumer has taken everything before it.
 */
export interface StreamPosition {
  taken(msg: PgOutputMessage): void
  keepalive(walEnd: bigint): void
}

export interface StartOptions {
  slot: string
  /** one publication or several */
  publication: string | string[]
  /** where to start; the server starts from the slot's confirmed flush LSN when that is later (default 0/0) */
  startLsn?: bigint
  protoVersion?: 1
  /** also receive pg_logical_emit_message() messages (default true) */
  messages?: boolean
}

/** One pgoutput message with the XLogData frame's positions (0/0 for Relation and Type messages). */
export interface ReplicationEvent {
  walStart: bigint
  walEnd: bigint
  msg: PgOutputMessage
}

export interface SystemIdentity {
  systemId: string
  timeline: number
  /** the server's current WAL flush position */
  xlogPos: bigint
  dbName: string
}

/** START_REPLICATION failed because another connection streams from the slot (SQLSTATE 55006). */
export class SlotInUseError extends Error {
  readonly code = '55006'
  constructor(readonly slot: string, readonly activePid: number | undefined, options?: { cause?: unknown }) {
    super(
      `replication slot "${slot}" is in use${activePid ? ` by process ${activePid}` : ''} (another puffgres run?)`,
      options,
    )
    this.name = 'SlotInUseError'
  }
}

/** The slot does not exist and creating it was not allowed. */
export class SlotMissingError extends Error {
  constructor(readonly slot: string) {
    super(`replication slot "${slot}" does not exist (run with --create-slot or create it)`)
    this.name = 'SlotMissingError'
  }
}

/** The stream broke: server gone, backend terminated, slot dropped, ... `cause` holds the underlying error. */
export class ReplicationError extends Error {
  constructor(message: string, readonly code?: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ReplicationError'
  }
}

const SLOT_NAME = /^[a-z0-9_]{1,63}$/

function checkSlotName(slot: string) {
  if (!SLOT_NAME.test(slot)) {
    throw new Error(`invalid replication slot name ${JSON.stringify(slot)} (lower-case letters, digits, _; ≤ 63)`)
  }
}

function quoteLiteral(s: string): string {
  return "'" + s.replaceAll("'", "''") + "'"
}

// Standby status update clock: microseconds since 2000-01-01 UTC.
const PG_EPOCH_MS = Date.UTC(2000, 0, 1)
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
 *
 * The stream engine confirms through a Checkpoint (src/stream/checkpoint.ts) given as `position`, which also lets
 * keepalives move the flush position while idle.
 *
 * Streaming is single-use: after the stream ends or fails, close() and make a new ReplicationStream.
 */
export class ReplicationStream implements AsyncIterableIterator<ReplicationEvent> {
  /** pgoutput decoder; its `relations` cache holds what the consumer has been given so far */
  readonly decoder = new PgOutputDecoder()
  private readonly sql: postgres.Sql
  private readonly statusIntervalMs: number | undefined
  private readonly maxQueuedFrames: number
  private readonly maxQueuedBytes: number
  private readonly position: StreamPosition | undefined

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

  /** the flush position reported in status updates (what the consumer confirmed) */
  private flush = 0n
  private lastReceived = 0n

  constructor(url: string, options: ReplicationOptions = {}) {
    this.statusIntervalMs = options.statusIntervalMs
    this.maxQueuedFrames = options.maxQueuedFrames ?? 1000
    this.maxQueuedBytes = options.maxQueuedBytes ?? 16 * 1024 * 1024
    this.position = options.position
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
  async identifySystem(): Promise<SystemIdentity> {
    const [r] = await this.sql.unsafe('IDENTIFY_SYSTEM')
    return {
      systemId: String(r.systemid),
      timeline: Number(r.timeline),
      xlogPos: parseLsn(r.xlogpos),
      dbName: r.dbname,
    }
  }

  /**
   * Makes sure the logical slot exists in this database with the pgoutput plugin. When it is missing it is created
   * if `create`, else SlotMissingError. `created` says whether this call created it.
   */
  async ensureSlot(slot: string, opts: { create: boolean }): Promise<{ created: boolean }> {
    const existing = await this.findSlot(slot)
    if (existing) return { created: false }
    if (!opts.create) throw new SlotMissingError(slot)
    return { created: (await this.createSlot(slot)).created }
  }

  /**
   * Creates the slot unless it exists. Returns the LSN from which the slot will stream: the consistent point when
   * created here (everything committed after it will be streamed), else the slot's confirmed flush LSN.
   */
  async createSlot(slot: string): Promise<{ created: boolean; lsn: bigint }> {
    checkSlotName(slot)
    try {
      const [r] = await this.sql.unsafe(`CREATE_REPLICATION_SLOT ${slot} LOGICAL pgoutput NOEXPORT_SNAPSHOT`)
      return { created: true, lsn: parseLsn(r.consistent_point) }
    } catch (e) {
      if ((e as { code?: string }).code !== '42710') throw e
    }
    const existing = await this.findSlot(slot)
    if (!existing) throw new Error(`replication slot "${slot}" exists but could not be read`)
    return { created: false, lsn: existing.confirmedFlush }
  }

  /** The slot's row in pg_replication_slots, checked to be a pgoutput slot of this database; undefined if none. */
  async findSlot(
    slot: string,
  ): Promise<{ confirmedFlush: bigint; restartLsn: bigint; activePid: number | undefined } | undefined> {
    checkSlotName(slot)
    const [r] = await this.sql.unsafe(
      `SELECT slot_type, plugin, database, current_database() AS current, active_pid,
              confirmed_flush_lsn::text AS confirmed_flush, restart_lsn::text AS restart
       FROM pg_replication_slots WHERE slot_name = ${quoteLiteral(slot)}`,
    )
    if (!r) return undefined
    if (r.slot_type !== 'logical') throw new Error(`replication slot "${slot}" is a ${r.slot_type} slot, not logical`)
    if (r.database !== r.current) {
      throw new Error(`replication slot "${slot}" belongs to database "${r.database}", not "${r.current}"`)
    }
    if (r.plugin !== 'pgoutput') {
      throw new Error(`replication slot "${slot}" uses the output plugin "${r.plugin}", not pgoutput`)
    }
    return {
      confirmedFlush: r.confirmed_flush ? parseLsn(r.confirmed_flush) : 0n,
      restartLsn: r.restart ? parseLsn(r.restart) : 0n,
      activePid: r.active_pid == null ? undefined : Number(r.active_pid),
    }
  }

  /**
   * START_REPLICATION from the slot. Resolves once the server streams; the returned iterator (this object)
   * yields every pgoutput message. Rejects with SlotInUseError when another connection holds the slot.
   */
  async start(opts: StartOptions): Promise<AsyncIterableIterator<ReplicationEvent>> {
    if (this.stream || this.closing) throw new Error('ReplicationStream.start() called twice')
    checkSlotName(opts.slot)
    if (opts.protoVersion !== undefined && opts.protoVersion !== 1) {
      throw new Error(`pgoutput proto_version ${opts.protoVersion} is not supported (only 1)`)
    }
    const pubs = typeof opts.publication === 'string' ? [opts.publication] : opts.publication
    if (pubs.length === 0) throw new Error('no publication to stream from')
    const pubList = pubs.map((p) => '"' + p.replaceAll('"', '""') + '"').join(',')
    this.slot = opts.slot
    await this.checkPublications(pubs)
    const session = await this.session()
    const interval = this.statusIntervalMs ?? session.statusIntervalMs
    const command = `START_REPLICATION SLOT ${opts.slot} LOGICAL ${formatLsn(opts.startLsn ?? 0n)} ` +
      `(proto_version '1', publication_names ${quoteLiteral(pubList)}, messages '${opts.messages ?? true}')`
    let stream: Duplex
    try {
      stream = await this.sql.unsafe(command).writable() as unknown as Duplex
    } catch (e) {
      const err = e as { code?: string; message?: string }
      if (err.code === '55006') {
        const pid = /PID (\d+)/i.exec(err.message ?? '')?.[1]
        throw new SlotInUseError(opts.slot, pid ? Number(pid) : undefined, { cause: e })
      }
      throw e
    }
    this.stream = stream
    stream.on('data', (frame: Buffer) => this.onFrame(frame))
    stream.on('error', (e: Error) => this.fail(e))
    stream.on('end', () => {
      if (!this.closing) this.fail(new Error('the server ended the replication stream'))
    })
    this.timer = setInterval(() => this.sendStatus(), interval)
    return this
  }

  // PostgreSQL 14–17 fail the stream at the first change when a publication is missing; 18 only warns and streams
  // nothing for it. Check first, so that every version fails the same way, and at once.
  private async checkPublications(pubs: string[]) {
    const rows = await this.sql.unsafe(
      `SELECT pubname FROM pg_publication WHERE pubname IN (${pubs.map(quoteLiteral).join(', ')})`,
    )
    const missing = pubs.find((p) => !rows.some((r) => r.pubname === p))
    if (missing) {
      throw new ReplicationError(
        `replication stream of slot "${this.slot}" failed: publication "${missing}" does not exist`,
        '42704',
      )
    }
  }

  /**
   * Reads the server's settings and prepares the session: the status interval (a third of wal_sender_timeout, which
   * any status update resets, at most 10 s); and in a SQL_ASCII database, client_encoding SQL_ASCII, because a
   * SQL_ASCII value may hold any bytes and converting one that is not UTF-8 fails the whole walsender: raw, it
   * fails only the rows that need it (pgoutput.ts keeps it as an 'invalid' value).
   */
  private async session(): Promise<{ statusIntervalMs: number }> {
    const [r] = await this.sql.unsafe(
      `SELECT setting, current_setting('server_encoding') AS encoding FROM pg_settings WHERE name = 'wal_sender_timeout'`,
    )
    if (r?.encoding === 'SQL_ASCII') await this.sql.unsafe(`SET client_encoding = 'SQL_ASCII'`)
    const timeoutMs = Number(r?.setting ?? 0)
    return { statusIntervalMs: timeoutMs > 0 ? Math.max(100, Math.min(10_000, Math.floor(timeoutMs / 3))) : 10_000 }
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

  /** Sends a standby status update now (written = flushed = applied = flushLsn). No-op when not streaming. */
  sendStatus(replyRequested = false): void {
    const stream = this.stream
    if (!stream || this.failure || stream.writableEnded || stream.destroyed) return
    const b = Buffer.allocUnsafe(34)
    b[0] = 0x72 // r
    b.writeBigUInt64BE(this.flush, 1)
    b.writeBigUInt64BE(this.flush, 9)
    b.writeBigUInt64BE(this.flush, 17)
    b.writeBigInt64BE(BigInt(Date.now() - PG_EPOCH_MS) * 1000n, 25)
    b[33] = replyRequested ? 1 : 0
    stream.write(b)
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
      this.enqueue(frame, frame.length)
    } else if (kind === 0x6b) { // k: primary keepalive
      const walEnd = frame.readBigUInt64BE(1)
      if (walEnd > this.lastReceived) this.lastReceived = walEnd
      // Its position in the stream matters: it may only count once the consumer has taken what came before it.
      if (this.head === this.queue.length) this.position?.keepalive(walEnd)
      else this.enqueue({ keepalive: walEnd }, 0)
      if (frame[17]) this.sendStatus()
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
    }
  }

  /** The next event for the consumer, or undefined when none is buffered; throws the stream's failure. */
  private take(): IteratorResult<ReplicationEvent> | undefined {
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
    clearInterval(this.timer)
    const w = this.waiter
    this.waiter = undefined
    w?.reject(this.failure)
  }
}
