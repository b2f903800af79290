// The options and the events of a ReplicationStream (replication.ts), and what it tells the checkpoint.
import type { PgOutputMessage } from './pgoutput.ts'

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
  /**
   * the queue full and nothing taken for this long (the writes stalled: a turbopuffer outage): what is queued is
   * dropped, the rest is read and dropped, and the consumer's next read fails, to stream again from the confirmed
   * position. Default 10 s
   */
  shedAfterMs?: number
  /** shed only while this holds (default: always) */
  shedIf?: () => boolean
  /**
   * called once when the server ends the stream or the connection fails (not on close() or abort()): the slot is
   * free, so the consumer's writes of what it took are to be abandoned, not finished (a hot standby may replay them)
   */
  onLost?: (error: Error) => void
}

/**
 * What the stream tells whoever decides the flush position, in stream order: each message as the consumer takes
 * it, and each keepalive once the consumer has taken everything before it.
 */
export interface StreamPosition {
  taken(msg: PgOutputMessage): void
  keepalive(walEnd: bigint): void
}

/** One pgoutput message with the XLogData frame's positions (0/0 for Relation and Type messages). */
export interface ReplicationEvent {
  walStart: bigint
  walEnd: bigint
  msg: PgOutputMessage
}
