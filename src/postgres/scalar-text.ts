// One scalar value's PostgreSQL text (DateStyle ISO, UTC: TEXT_FORMAT_SETTINGS in values.ts) → its JS value: int8,
// bool, floats, pgvector, timestamps, bytea, char(n) padding. The decisions are listed at the top of values.ts.
import { Buffer } from 'node:buffer'

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

export function decodeInt8(text: string): number | bigint {
  // up to 15 digits always fits a double exactly
  if (text.length <= 15) return parseInt(text, 10)
  const b = BigInt(text)
  return b <= MAX_SAFE && b >= -MAX_SAFE ? Number(b) : b
}

export function trimPadding(text: string): string {
  let end = text.length
  while (end > 0 && text.charCodeAt(end - 1) === 0x20) end--
  return end === text.length ? text : text.slice(0, end)
}

export function decodeBool(text: string): boolean {
  // the output function prints t/f; `bool::text` prints true/false
  if (text === 't' || text === 'true') return true
  if (text === 'f' || text === 'false') return false
  throw new Error(`invalid boolean ${JSON.stringify(text)}`)
}

export function decodeFloat(text: string): number | null {
  const n = Number(text)
  return Number.isFinite(n) ? n : null
}

export function decodeVector(text: string, typeName: string): number[] {
  const v = JSON.parse(text)
  if (!Array.isArray(v)) throw new Error(`invalid ${typeName} value ${JSON.stringify(text.slice(0, 40))}`)
  return v
}

// DateStyle ISO: `2024-01-02 03:04:05.123456`, timestamptz adds `+00`, `+05:30` or `+05:30:15`; ` BC` for BC.
const TIMESTAMP_RE =
  /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?$/

// the shape fastTimestamp takes (a regex test is cheaper here than a loop over the characters)
const PLAIN_TIMESTAMP = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?$/
const PLAIN_TIMESTAMPTZ = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?\+00$/

/**
 * The common case without a Date: `YYYY-MM-DD HH:MM:SS[.ffffff]` (plus `+00` for timestamptz, which is what
 * TimeZone UTC prints), as PostgreSQL prints it (always a valid date and time; BC dates end in ` BC` and take the
 * general path). Gives what decodeTimestamp's general path gives; undefined for anything else.
 */
function fastTimestamp(text: string, withZone: boolean): string | undefined {
  if (!(withZone ? PLAIN_TIMESTAMPTZ : PLAIN_TIMESTAMP).test(text)) return undefined
  const end = withZone ? text.length - 3 : text.length
  const ms = end > 19 ? (text.slice(20, Math.min(end, 23)) + '00').slice(0, 3) : '000'
  return text.slice(0, 10) + 'T' + text.slice(11, 19) + '.' + ms + 'Z'
}

export function decodeTimestamp(text: string, withZone: boolean): string | null {
  const fast = fastTimestamp(text, withZone)
  if (fast !== undefined) return fast
  const m = TIMESTAMP_RE.exec(text)
  if (!m) {
    if (text === 'infinity' || text === '-infinity') return null
    throw new Error(`cannot read timestamp ${JSON.stringify(text)} (expected DateStyle ISO)`)
  }
  if (withZone !== (m[8] !== undefined)) {
    throw new Error(`cannot read ${withZone ? 'timestamptz' : 'timestamp'} ${JSON.stringify(text)}`)
  }
  let year = parseInt(m[1], 10)
  if (m[12]) year = 1 - year // 1 BC is year 0
  const ms = m[7] ? parseInt(m[7].padEnd(6, '0').slice(0, 3), 10) : 0
  const d = new Date(0)
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999
  d.setUTCFullYear(year, parseInt(m[2], 10) - 1, parseInt(m[3], 10))
  d.setUTCHours(parseInt(m[4], 10), parseInt(m[5], 10), parseInt(m[6], 10), ms)
  let t = d.getTime()
  if (m[8]) {
    const offset = parseInt(m[9], 10) * 3600 + (m[10] ? parseInt(m[10], 10) * 60 : 0) +
      (m[11] ? parseInt(m[11], 10) : 0)
    t -= (m[8] === '-' ? -offset : offset) * 1000
  }
  if (!Number.isFinite(t)) throw new Error(`timestamp ${JSON.stringify(text)} is outside the range of a JS Date`)
  return new Date(t).toISOString()
}

export function decodeBytea(text: string): string {
  if (text.startsWith('\\x')) return Buffer.from(text.slice(2), 'hex').toString('base64')
  // bytea_output = 'escape': printable bytes as themselves, `\\` for a backslash, `\ooo` octal for the rest
  const out: number[] = []
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c !== 0x5c) out.push(c)
    else if (text[i + 1] === '\\') {
      out.push(0x5c)
      i++
    } else {
      out.push(parseInt(text.slice(i + 1, i + 4), 8))
      i += 3
    }
  }
  return Buffer.from(out).toString('base64')
}
