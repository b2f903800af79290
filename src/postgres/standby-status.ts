// The standby status update ReplicationStream sends (postgres/replication.ts): the written, flushed and applied
// positions and the client's clock.
import { Buffer } from 'node:buffer'

// Standby status update clock: microseconds since 2000-01-01 UTC.
const PG_EPOCH_MS = Date.UTC(2000, 0, 1)

/**
 * The 34-byte CopyData payload 'r': written, flushed = applied = `flush`, now, and whether a reply is wanted.
 * `written` defaults to `flush`; a `flush` of 0 (InvalidXLogRecPtr) reports no flush position: the server keeps the
 * slot where it is and judges what the client has by `written` alone.
 */
export function standbyStatusUpdate(flush: bigint, replyRequested: boolean, written = flush): Buffer {
  const b = Buffer.allocUnsafe(34)
  b[0] = 0x72 // r
  b.writeBigUInt64BE(written, 1)
  b.writeBigUInt64BE(flush, 9)
  b.writeBigUInt64BE(flush, 17)
  b.writeBigInt64BE(BigInt(Date.now() - PG_EPOCH_MS) * 1000n, 25)
  b[33] = replyRequested ? 1 : 0
  return b
}

/**
 * The reply to a keepalive that asks for one. With everything the server sent confirmed: the flush position.
 * Otherwise written = what the server sent up to the keepalive (`walEnd`), and no flush position. At shutdown a
 * walsender exits only once its client has reported everything it was sent, by the flush position or, without one,
 * by the written one; run confirms only what landed, so through a turbopuffer outage a fast shutdown waited for the
 * outage to end. Reported this way the walsender can go, the slot stays at what landed, and the rest is streamed again
 * after the restart (docs/ARCHITECTURE.md, invariant 7).
 */
export function pingReply(walEnd: bigint, flush: bigint): Buffer {
  return walEnd > flush ? standbyStatusUpdate(0n, false, walEnd) : standbyStatusUpdate(flush, false)
}
