// Starting the replication stream: the checks and session settings before START_REPLICATION, and the command
// itself over copy-both. What happens to the frames after that is ReplicationStream's (postgres/replication.ts).
import type { Duplex } from 'node:stream'
import type postgres from 'postgres'
import { formatLsn } from './lsn.ts'
import { checkSlotName, quoteLiteral, SlotInUseError } from './replication-slot.ts'

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

/** The stream broke: server gone, backend terminated, slot dropped, ... `cause` holds the underlying error. */
export class ReplicationError extends Error {
  constructor(message: string, readonly code?: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ReplicationError'
  }
}

/** The publications to stream from, once the options are checked (slot name, protocol version, publications). */
export function publicationsToStream(opts: StartOptions): string[] {
  checkSlotName(opts.slot)
  if (opts.protoVersion !== undefined && opts.protoVersion !== 1) {
    throw new Error(`pgoutput proto_version ${opts.protoVersion} is not supported (only 1)`)
  }
  const pubs = typeof opts.publication === 'string' ? [opts.publication] : opts.publication
  if (pubs.length === 0) throw new Error('no publication to stream from')
  return pubs
}

// PostgreSQL 14–17 fail the stream at the first change when a publication is missing; 18 only warns and streams
// nothing for it. Check first, so that every version fails the same way, and at once.
export async function checkPublications(sql: postgres.Sql, slot: string, pubs: string[]) {
  const rows = await sql.unsafe(
    `SELECT pubname FROM pg_publication WHERE pubname IN (${pubs.map(quoteLiteral).join(', ')})`,
  )
  const missing = pubs.find((p) => !rows.some((r) => r.pubname === p))
  if (missing) {
    throw new ReplicationError(
      `replication stream of slot "${slot}" failed: publication "${missing}" does not exist`,
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
export async function prepareSession(sql: postgres.Sql): Promise<{ statusIntervalMs: number }> {
  const [r] = await sql.unsafe(
    `SELECT setting, current_setting('server_encoding') AS encoding FROM pg_settings WHERE name = 'wal_sender_timeout'`,
  )
  if (r?.encoding === 'SQL_ASCII') await sql.unsafe(`SET client_encoding = 'SQL_ASCII'`)
  const timeoutMs = Number(r?.setting ?? 0)
  return { statusIntervalMs: timeoutMs > 0 ? Math.max(100, Math.min(10_000, Math.floor(timeoutMs / 3))) : 10_000 }
}

const early = new WeakMap<Duplex, Error>()

/** Calls `fail` with the error a started stream failed with before its caller could listen, if any. */
export function reportEarlyError(stream: Duplex, fail: (e: Error) => void): void {
  const e = early.get(stream)
  if (e) fail(e)
}

/**
 * START_REPLICATION from the slot: resolves with the copy-both stream once the server streams. Rejects with
 * SlotInUseError when another connection holds the slot.
 */
export async function startReplication(
  sql: postgres.Sql,
  opts: StartOptions,
  pubs: string[],
): Promise<Duplex> {
  const pubList = pubs.map((p) => '"' + p.replaceAll('"', '""') + '"').join(',')
  const command = `START_REPLICATION SLOT ${opts.slot} LOGICAL ${formatLsn(opts.startLsn ?? 0n)} ` +
    `(proto_version '1', publication_names ${quoteLiteral(pubList)}, messages '${opts.messages ?? true}')`
  try {
    const query = sql.unsafe(command) as unknown as { resolve: (x: unknown) => void; writable(): Promise<unknown> }
    // The server may fail the stream in the very packet that starts it (a slot whose WAL predates its publication):
    // postgres.js then emits 'error' before the caller's `await` resumes and listens, an uncaught exception. A
    // listener from the start keeps that error for the caller (reportEarlyError).
    const resolve = query.resolve
    query.resolve = (x: unknown) => {
      const stream = x as Duplex
      if (typeof stream?.on === 'function') {
        stream.on('error', (e: Error) => void (early.has(stream) || early.set(stream, e)))
      }
      resolve(x)
    }
    return await query.writable() as Duplex
  } catch (e) {
    const err = e as { code?: string; message?: string }
    if (err.code === '55006') {
      const pid = /PID (\d+)/i.exec(err.message ?? '')?.[1]
      throw new SlotInUseError(opts.slot, pid ? Number(pid) : undefined, { cause: e })
    }
    throw e
  }
}
