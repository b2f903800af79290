// PostgreSQL's COPY text format → rows of field texts (null for `\N`), parsed in one pass over each chunk.
//
// COPY TO prints one line per row, fields separated by tabs; inside a field a backslash escapes `\`, tab, newline,
// carriage return, \b, \f, \v, and `\N` alone is NULL. Input may also hold `\NNN` (octal) and `\xHH` (hex) bytes,
// which are decoded as UTF-8 together with the bytes around them. Because a newline byte never occurs inside a
// multibyte UTF-8 sequence and newlines in data are escaped, a chunk can be cut after its last newline byte and
// decoded as text at once: one decoder call per chunk, not per field.

// ignoreBOM: a value that starts with U+FEFF at the start of a chunk keeps it
const decoder = new TextDecoder('utf-8', { ignoreBOM: true })
// fatal: a SQL_ASCII database prints whatever bytes a value holds; one that is not UTF-8 must fail its row (a dead
// letter naming the column), never become U+FFFD silently
const strict = new TextDecoder('utf-8', { ignoreBOM: true, fatal: true })

const TAB = 0x09

// a field that is not UTF-8 reads as one character per byte: its row is a dead letter, but a key field still orders
// near its bytes (the next page starts after it: '' would start over from the first row) and names the row readably
const bytewise = new TextDecoder('latin1')

/** The fields of a row that are not valid UTF-8 (field index → reason); they read one character per byte. */
const INVALID = new WeakMap<CopyRow, Map<number, string>>()

/** Why fields of a parsed row could not be read as text (field index → reason), if any could not. */
export function invalidFields(row: CopyRow): ReadonlyMap<number, string> | undefined {
  return INVALID.get(row)
}

const BACKSLASH = 0x5c
const NEWLINE = 0x0a

export type CopyRow = (string | null)[]

export class CopyTextParser {
  /** the complete rows parsed so far */
  readonly rows: CopyRow[] = []
  readonly #ncols: number
  /** bytes after the last complete row of the previous chunk */
  #rest: Uint8Array | undefined

  constructor(ncols: number) {
    this.#ncols = ncols
  }

  /** Parses the complete rows of `chunk` (with what was left of the previous one); keeps a partial last row. */
  push(chunk: Uint8Array): void {
    let buf = chunk
    if (this.#rest) {
      buf = new Uint8Array(this.#rest.length + chunk.length)
      buf.set(this.#rest)
      buf.set(chunk, this.#rest.length)
      this.#rest = undefined
    }
    const end = buf.lastIndexOf(NEWLINE)
    if (end + 1 < buf.length) this.#rest = buf.slice(end + 1)
    if (end < 0) return
    const lines = buf.subarray(0, end + 1)
    let text: string
    try {
      text = strict.decode(lines)
    } catch {
      this.#parseInvalid(lines)
      return
    }
    this.#parse(text)
  }

  /** Complete lines holding bytes that are not UTF-8: line by line, and field by field where a line is invalid. */
  #parseInvalid(lines: Uint8Array): void {
    let from = 0
    while (from < lines.length) {
      const eol = lines.indexOf(NEWLINE, from)
      const line = lines.subarray(from, eol + 1)
      from = eol + 1
      try {
        this.#parse(strict.decode(line))
        continue
      } catch {
        // below
      }
      // a tab byte never occurs inside a multibyte UTF-8 sequence, and tabs in data are escaped
      const fields: string[] = []
      const invalid = new Map<number, string>()
      let start = 0
      for (let i = 0; i < line.length; i++) {
        if (line[i] !== TAB && line[i] !== NEWLINE) continue
        const bytes = line.subarray(start, i)
        try {
          fields.push(strict.decode(bytes))
        } catch {
          invalid.set(fields.length, `the value is not valid UTF-8 (${bytes.length} bytes; a SQL_ASCII database?)`)
          fields.push(bytewise.decode(bytes))
        }
        start = i + 1
      }
      this.#parse(fields.join('\t') + '\n')
      INVALID.set(this.rows[this.rows.length - 1], invalid)
    }
  }

  /** Checks that the data ended with a complete row. */
  end(): void {
    if (this.#rest?.length) {
      throw new Error(`COPY data ended inside a row (${this.rows.length} complete rows before it)`)
    }
  }

  /** `s` holds complete lines only (it ends with a newline). */
  #parse(s: string): void {
    const ncols = this.#ncols
    const rows = this.rows
    const n = s.length
    let pos = 0
    // the next backslash: fields before it need no unescaping (most rows have none at all)
    let bs = s.indexOf('\\')
    if (bs < 0) bs = n
    while (pos < n) {
      const eol = s.indexOf('\n', pos)
      const row: CopyRow = new Array(ncols)
      let j = 0
      for (;;) {
        let tab = s.indexOf('\t', pos)
        if (tab < 0 || tab > eol) tab = eol
        if (j === ncols) throw new Error(`COPY row ${rows.length + 1} has more than ${ncols} columns`)
        if (bs < tab) {
          row[j++] = unescapeField(s, pos, tab)
          bs = s.indexOf('\\', tab)
          if (bs < 0) bs = n
        } else row[j++] = s.slice(pos, tab)
        pos = tab + 1
        if (tab === eol) break
      }
      if (j !== ncols) throw new Error(`COPY row ${rows.length + 1} has ${j} columns, expected ${ncols}`)
      rows.push(row)
    }
  }
}

const SIMPLE_ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' }

const isOctal = (c: number) => c >= 0x30 && c <= 0x37
const isHex = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)

/** The value of `s[from, to)`, a field holding at least one backslash; null for `\N`. */
export function unescapeField(s: string, from: number, to: number): string | null {
  if (to - from === 2 && s.charCodeAt(from) === BACKSLASH && s.charCodeAt(from + 1) === 0x4e /* N */) return null
  let out = ''
  let start = from
  // bytes given as \NNN or \xHH: decoded as UTF-8 once the run of them ends
  let bytes: number[] | undefined
  const flushBytes = () => {
    if (bytes) out += decoder.decode(new Uint8Array(bytes))
    bytes = undefined
  }
  let i = from
  while (i < to) {
    if (s.charCodeAt(i) !== BACKSLASH) {
      i++
      continue
    }
    if (i > start) {
      flushBytes()
      out += s.slice(start, i)
    }
    if (i + 1 >= to) throw new Error('COPY field ends with a lone backslash')
    const c = s.charCodeAt(i + 1)
    if (isOctal(c)) {
      let j = i + 1
      let v = 0
      while (j < to && j < i + 4 && isOctal(s.charCodeAt(j))) v = v * 8 + s.charCodeAt(j++) - 0x30
      ;(bytes ??= []).push(v & 0xff)
      i = j
    } else if (c === 0x78 /* x */ && i + 2 < to && isHex(s.charCodeAt(i + 2))) {
      const j = i + 3 < to && isHex(s.charCodeAt(i + 3)) ? i + 4 : i + 3
      ;(bytes ??= []).push(parseInt(s.slice(i + 2, j), 16))
      i = j
    } else {
      flushBytes()
      const ch = s[i + 1]
      out += SIMPLE_ESCAPES[ch] ?? ch
      i += 2
    }
    start = i
  }
  flushBytes()
  return out + s.slice(start, to)
}
