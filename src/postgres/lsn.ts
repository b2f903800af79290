// PostgreSQL log sequence numbers: 64-bit WAL positions, printed as two 32-bit hex halves (`16/B374D848`).

const LSN_RE = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/

/** Parses `16/B374D848` into a bigint. Throws on anything else. */
export function parseLsn(text: string): bigint {
  const m = LSN_RE.exec(text)
  if (!m) throw new Error(`invalid LSN ${JSON.stringify(text)} (expected two hex halves like 16/B374D848)`)
  return (BigInt('0x' + m[1]) << 32n) | BigInt('0x' + m[2])
}

/** Formats a bigint LSN the way PostgreSQL prints it (upper-case hex, no padding): `16/B374D848`. */
export function formatLsn(lsn: bigint): string {
  if (lsn < 0n || lsn > 0xFFFFFFFFFFFFFFFFn) throw new Error(`LSN out of range: ${lsn}`)
  return (lsn >> 32n).toString(16).toUpperCase() + '/' + (lsn & 0xFFFFFFFFn).toString(16).toUpperCase()
}
