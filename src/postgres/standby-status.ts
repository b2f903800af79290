// The standby status update ReplicationStream sends (postgres/replication.ts): the written, flushed and applied
// positions, all three the flush position it reports, and the client's clock.
import { Buffer } from 'node:buffer'

// Standby status update clock: microseconds since 2000-01-01 UTC.
const PG_EPOCH_MS = Date.UTC(2000, 0, 1)

/** The 34-byte CopyData payload 'r': written = flushed = applied = `flush`, now, and whether a reply is wanted. */
export function standbyStatusUpdate(flush: bigint, replyRequested: boolean): Buffer {
  const b = Buffer.allocUnsafe(34)
  b[0] = 0x72 // r
  b.writeBigUInt64BE(flush, 1)
  b.writeBigUInt64BE(flush, 9)
  b.writeBigUInt64BE(flush, 17)
  b.writeBigInt64BE(BigInt(Date.now() - PG_EPOCH_MS) * 1000n, 25)
  b[33] = replyRequested ? 1 : 0
  return b
}
