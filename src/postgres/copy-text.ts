// PostgreSQL's COPY text format → rows of field texts (null for `\N`), parsed in one pass over each chunk.
//
// COPY TO prints one line per row, fields separated by tabs; inside a field a backslash escapes `\`, tab, newline,
// carriage return, \b, \f, \v, and `\N` alone is NULL. Input may also hold `\NNN` (octal) and `\xHH` (hex) bytes,
// which are decoded as UTF-8 together with the bytes around them. Because a newline byte never occurs inside a
// multibyte UTF-8 sequence and newlines in data are escaped, a chunk can be cut after its last newline byte and
// decoded as text at once: one decoder call per chunk, not per field.

// ignoreBOM: a value that starts with U+FEFF at the start of a chunk keeps it
const decoder = new TextDecoder('utf-8', { ignoreBOM: true })

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
    if (end >= 0) this.#parse(decoder.decode(buf.subarray(0, end + 1)))
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
