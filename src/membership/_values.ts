// How membership predicates compare values, following PostgreSQL's rules for the types puffgres decodes
// (src/postgres/values.ts). Each comparison happens in one domain:
// - exact: integers and numeric, compared as exact decimals (numeric arrives as a string, int8 above 2^53 as a
//   bigint); NaN sorts above every number and equals itself, as in PostgreSQL.
// - float: float4/float8 and anything compared with them (PostgreSQL widens to float8); NaN as above.
// - text: by Unicode code point, which is PostgreSQL's order under collation "C" (byte order of UTF-8). Other
//   collations (en_US, ICU) order differently: puffgres's evaluation matches only databases or columns using "C".
// - bool: false < true.
// - date / timestamp / timestamptz: as instants (a date is its day; timestamp ignores any offset written in a
//   literal; timestamptz reads a literal without offset as UTC, i.e. it assumes the session TimeZone is UTC).

export type Domain = 'exact' | 'float' | 'text' | 'bool' | 'date' | 'timestamp' | 'timestamptz'

/** A finite decimal as 0.<digits> × 10^exp with sign; or NaN / ±Infinity (rank). */
export interface Decimal {
  /** 0: -Infinity, 1: finite, 2: +Infinity, 3: NaN */
  rank: number
  sign: -1 | 0 | 1
  /** significant digits without leading or trailing zeros; '' for zero */
  digits: string
  exp: number
}

const DECIMAL_RE = /^\s*([+-])?(?:(\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([+-]?\d+))?\s*$/

/** Parses PostgreSQL numeric / integer / float input text exactly; undefined when it is not a number. */
export function parseDecimal(text: string): Decimal | undefined {
  const m = DECIMAL_RE.exec(text)
  if (!m) return parseSpecial(text)
  const intPart = m[2] ?? ''
  const fracPart = m[3] ?? m[4] ?? ''
  let all = intPart + fracPart
  let exp = intPart.length + (m[5] ? parseInt(m[5], 10) : 0)
  let lead = 0
  while (lead < all.length && all.charCodeAt(lead) === 48) lead++
  all = all.slice(lead)
  exp -= lead
  let end = all.length
  while (end > 0 && all.charCodeAt(end - 1) === 48) end--
  all = all.slice(0, end)
  if (all === '') return { rank: 1, sign: 0, digits: '', exp: 0 }
  return { rank: 1, sign: m[1] === '-' ? -1 : 1, digits: all, exp }
}

function parseSpecial(text: string): Decimal | undefined {
  switch (text.trim().toLowerCase()) {
    case 'nan':
      return { rank: 3, sign: 0, digits: '', exp: 0 }
    case 'infinity':
    case '+infinity':
    case 'inf':
    case '+inf':
      return { rank: 2, sign: 1, digits: '', exp: 0 }
    case '-infinity':
    case '-inf':
      return { rank: 0, sign: -1, digits: '', exp: 0 }
  }
  return undefined
}

export function compareDecimal(a: Decimal, b: Decimal): number {
  if (a.rank !== b.rank) return a.rank < b.rank ? -1 : 1
  if (a.rank !== 1) return 0
  if (a.sign !== b.sign) return a.sign < b.sign ? -1 : 1
  if (a.sign === 0) return 0
  let c: number
  if (a.exp !== b.exp) c = a.exp < b.exp ? -1 : 1
  // equal exponents: digit strings without trailing zeros compare as the fractions they are
  else c = a.digits === b.digits ? 0 : a.digits < b.digits ? -1 : 1
  return a.sign === 1 ? c : -c
}

/** float8 comparison with PostgreSQL's NaN rule (NaN = NaN, NaN above everything) */
export function compareFloat(a: number, b: number): number {
  if (a < b) return -1
  if (a > b) return 1
  if (a === b) return 0
  const an = Number.isNaN(a)
  const bn = Number.isNaN(b)
  return an === bn ? 0 : an ? 1 : -1
}

/** Code-point order (= UTF-8 byte order), not JavaScript's UTF-16 code-unit order. */
export function compareText(a: string, b: string): number {
  if (a === b) return 0
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i)
    let y = b.charCodeAt(i)
    if (x === y) continue
    // surrogates (astral code points) must sort above U+E000..U+FFFF
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000
    }
    return x < y ? -1 : 1
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0
}

export function compareBool(a: boolean, b: boolean): number {
  return a === b ? 0 : a ? 1 : -1
}

/** A point in time: a day number (±Infinity for ±infinity) and microseconds into that day. */
export interface Instant {
  day: number
  us: number
}

export function compareInstant(a: Instant, b: Instant): number {
  if (a.day !== b.day) return a.day < b.day ? -1 : 1
  return a.us === b.us ? 0 : a.us < b.us ? -1 : 1
}

// `2024-01-02`, `2024-01-02 03:04:05.123456+05:30`, `2024-01-02T03:04:05.123Z`, `0044-03-15 BC`, and ISO 8601's
// signed astronomical years as JS writes them (`-000043-03-15T12:00:00.000Z` is 44 BC)
const TEMPORAL_RE =
  /^\s*([+-]\d{6}|\d{4,})-(\d{1,2})-(\d{1,2})(?:(?:T|\s+)(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d*))?)?)?\s*(?:(Z)|([+-])(\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?)?(\s+BC)?\s*$/i

const US_PER_DAY = 86_400_000_000

/**
 * Reads a date or timestamp the way PostgreSQL's input functions do for `kind`; undefined when it cannot.
 * `now`, `today` and other relative words are refused: a membership decision must not change with the clock.
 */
export function parseInstant(text: string, kind: 'date' | 'timestamp' | 'timestamptz'): Instant | undefined {
  const m = TEMPORAL_RE.exec(text)
  if (!m) {
    const word = text.trim().toLowerCase()
    if (word === 'infinity' || word === '+infinity') return { day: Infinity, us: 0 }
    if (word === '-infinity') return { day: -Infinity, us: 0 }
    if (word === 'epoch') return { day: 0, us: 0 }
    return undefined
  }
  const signed = m[1][0] === '-' || m[1][0] === '+'
  let year = parseInt(m[1], 10)
  const month = parseInt(m[2], 10)
  const dayOfMonth = parseInt(m[3], 10)
  if (month < 1 || month > 12 || dayOfMonth < 1) return undefined
  if (!signed) {
    if (year === 0) return undefined
    if (m[13]) year = 1 - year // 1 BC is year 0
  } else if (m[13]) return undefined
  if (dayOfMonth > daysInMonth(year, month)) return undefined
  const day = daysFromCivil(year, month, dayOfMonth)
  if (kind === 'date' || m[4] === undefined) return { day, us: 0 }
  const h = parseInt(m[4], 10)
  const min = parseInt(m[5], 10)
  const s = m[6] ? parseInt(m[6], 10) : 0
  if (h > 24 || min > 59 || s > 60) return undefined
  // PostgreSQL keeps microseconds, rounding further digits
  const frac = m[7] ? Math.round(parseFloat('0.' + m[7]) * 1e6) : 0
  let us = ((h * 60 + min) * 60 + s) * 1e6 + frac
  if (kind === 'timestamptz' && m[9]) {
    const offset = (parseInt(m[10], 10) * 3600 + (m[11] ? parseInt(m[11], 10) * 60 : 0) +
      (m[12] ? parseInt(m[12], 10) : 0)) * 1e6
    us -= m[9] === '-' ? -offset : offset
  }
  const carry = Math.floor(us / US_PER_DAY)
  return { day: day + carry, us: us - carry * US_PER_DAY }
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28
  return [4, 6, 9, 11].includes(month) ? 30 : 31
}

// days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's days_from_civil)
function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0
  const era = Math.floor(y / 400)
  const yoe = y - era * 400
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
}

/** PostgreSQL's boolean input: true/false/yes/no/on/off (unique prefixes), 1/0, any case, trimmed. */
export function parseBoolText(text: string): boolean | undefined {
  const s = text.trim().toLowerCase()
  if (s === '') return undefined
  if ('true'.startsWith(s) || 'yes'.startsWith(s) || s === 'on' || s === '1') return true
  if ('false'.startsWith(s) || 'no'.startsWith(s) || s === 'off' || s === 'of' || s === '0') return false
  return undefined
}

/** UUID input as PostgreSQL accepts it (any case, optional braces, hyphens between digit groups) → canonical. */
export function canonicalUuid(text: string): string | undefined {
  let s = text.trim()
  if (s.startsWith('{') && s.endsWith('}')) s = s.slice(1, -1)
  if (s.startsWith('-') || s.endsWith('-') || s.includes('--')) return undefined
  const hex = s.replace(/-/g, '')
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) return undefined
  const h = hex.toLowerCase()
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}
