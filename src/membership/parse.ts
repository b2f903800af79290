// Parses a mapping's membership predicate, a subset of SQL boolean expressions over the source row's columns:
//   OR / AND / NOT (precedence NOT > AND > OR), parentheses, comparisons = <> != < <= > >=, [NOT] IN (list),
//   [NOT] BETWEEN a AND b, IS [NOT] NULL | TRUE | FALSE | UNKNOWN, IS [NOT] DISTINCT FROM, bare boolean columns,
//   literals 'text' ('' escapes a quote), numbers (12, -3, 1.5, .5, 1e3), TRUE, FALSE, NULL,
//   identifiers plain (ASCII letters lowercased, as PostgreSQL folds them) or "double-quoted" (case kept).
// Not supported (rejected with an error): arithmetic, functions, casts (::), LIKE, qualified names (t.col),
// E'' / dollar-quoted strings, subqueries.

/** A one-line problem with a membership predicate; `message` starts with `membership:`. */
export class MembershipError extends Error {
  constructor(message: string) {
    super(message.startsWith('membership:') ? message : `membership: ${message}`)
    this.name = 'MembershipError'
  }
}

/**
 * The dead-letter error of a row whose membership could not be evaluated, the same on every path (stream, re-read):
 * `membership: <what>`, once, without the error's class name.
 */
export function membershipFailure(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e)
  return message.startsWith('membership:') ? message : `membership: ${message}`
}

export type Literal =
  | { type: 'string'; value: string }
  /** `text` is the literal as written, minus a leading '+' (e.g. `-1.50`, `1e3`) */
  | { type: 'number'; text: string }
  | { type: 'bool'; value: boolean }
  | { type: 'null' }

export type CompareOp = '=' | '<>' | '<' | '<=' | '>' | '>='

export type Expr =
  | { kind: 'column'; name: string }
  | { kind: 'literal'; literal: Literal }
  | { kind: 'and'; args: Expr[] }
  | { kind: 'or'; args: Expr[] }
  | { kind: 'not'; arg: Expr }
  | { kind: 'compare'; op: CompareOp; left: Expr; right: Expr }
  | { kind: 'in'; negated: boolean; arg: Expr; list: Expr[] }
  | { kind: 'between'; negated: boolean; arg: Expr; low: Expr; high: Expr }
  | { kind: 'isNull'; negated: boolean; arg: Expr }
  /** IS [NOT] TRUE / FALSE / UNKNOWN (value null) */
  | { kind: 'isBool'; negated: boolean; value: boolean | null; arg: Expr }
  | { kind: 'distinct'; negated: boolean; left: Expr; right: Expr }

/** A parsed membership predicate: parse once, then compile, evaluate or render it as SQL. */
export interface Predicate {
  /** the text it was parsed from */
  source: string
  root: Expr
}

type Token =
  | { t: 'ident'; name: string; quoted: boolean; pos: number; raw: string }
  | { t: 'string'; value: string; pos: number; raw: string }
  | { t: 'number'; text: string; pos: number; raw: string }
  | { t: 'op'; op: string; pos: number; raw: string }
  | { t: 'eof'; pos: number; raw: string }

const KEYWORDS = new Set([
  'and',
  'or',
  'not',
  'in',
  'is',
  'null',
  'true',
  'false',
  'unknown',
  'between',
  'distinct',
  'from',
])

const IDENT_START = /[\p{L}_]/u
const IDENT_PART = /[\p{L}\p{N}_$]/u
const NUMBER_RE = /(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/y

function tokenize(src: string): Token[] {
  const out: Token[] = []
  const fail = (pos: number, what: string) =>
    new MembershipError(`${what} at column ${pos + 1}: ${JSON.stringify(src)}`)
  let i = 0
  while (i < src.length) {
    const c = src[i]
    if (/\s/.test(c)) {
      i++
      continue
    }
    const start = i
    /** The text between the quote at `start` and its closing quote, a doubled quote standing for one; moves `i`. */
    const quoted = (quote: string, what: string): string => {
      let text = ''
      i++
      for (;;) {
        const j = src.indexOf(quote, i)
        if (j < 0) throw fail(start, `unterminated ${what}`)
        text += src.slice(i, j)
        if (src[j + 1] !== quote) {
          i = j + 1
          return text
        }
        text += quote
        i = j + 2
      }
    }
    if (c === "'") {
      const value = quoted("'", 'string literal')
      if (value.includes('\0')) throw fail(start, 'a string literal cannot contain a NUL character')
      out.push({ t: 'string', value, pos: start, raw: src.slice(start, i) })
    } else if (c === '"') {
      const name = quoted('"', 'quoted identifier')
      if (name === '') throw fail(start, 'empty quoted identifier')
      if (name.includes('\0')) throw fail(start, 'an identifier cannot contain a NUL character')
      out.push({ t: 'ident', name, quoted: true, pos: start, raw: src.slice(start, i) })
    } else if (/\d/.test(c) || (c === '.' && /\d/.test(src[i + 1] ?? ''))) {
      NUMBER_RE.lastIndex = i
      const m = NUMBER_RE.exec(src)!
      i += m[0].length
      // `1abc` or `1.2.3` is not a number followed by something: PostgreSQL rejects it too
      if (i < src.length && (IDENT_PART.test(src[i]) || src[i] === '.')) {
        throw fail(start, `invalid number ${JSON.stringify(src.slice(start, i + 1))}`)
      }
      out.push({ t: 'number', text: m[0], pos: start, raw: m[0] })
    } else if (IDENT_START.test(c)) {
      i++
      while (i < src.length && IDENT_PART.test(src[i])) i++
      const raw = src.slice(start, i)
      // PostgreSQL folds only ASCII letters of unquoted identifiers
      const name = raw.replace(/[A-Z]+/g, (s) => s.toLowerCase())
      out.push({ t: 'ident', name, quoted: false, pos: start, raw })
    } else {
      const two = src.slice(i, i + 2)
      if (two === '<=' || two === '>=' || two === '<>' || two === '!=') {
        out.push({ t: 'op', op: two === '!=' ? '<>' : two, pos: start, raw: two })
        i += 2
      } else if ('=<>(),-+'.includes(c)) {
        out.push({ t: 'op', op: c, pos: start, raw: c })
        i++
      } else if (c === '.') {
        throw fail(start, 'qualified names (table.column) are not supported; name the column alone')
      } else if (c === ':' && src[i + 1] === ':') {
        throw fail(start, 'casts (::) are not supported')
      } else {
        throw fail(start, `unexpected character ${JSON.stringify(c)}`)
      }
    }
  }
  out.push({ t: 'eof', pos: src.length, raw: '' })
  return out
}

const COMPARE_OPS = new Set(['=', '<>', '<', '<=', '>', '>='])

class Parser {
  private i = 0
  constructor(private src: string, private toks: Token[]) {}

  private get tok(): Token {
    return this.toks[this.i]
  }

  private isKeyword(word: string, tok = this.tok): boolean {
    return tok.t === 'ident' && !tok.quoted && tok.name === word
  }

  private acceptKeyword(word: string): boolean {
    if (!this.isKeyword(word)) return false
    this.i++
    return true
  }

  private isOp(op: string): boolean {
    return this.tok.t === 'op' && this.tok.op === op
  }

  private fail(expected: string, tok = this.tok): MembershipError {
    const found = tok.t === 'eof' ? '' : ` but found ${JSON.stringify(tok.raw)}`
    return new MembershipError(`expected ${expected} at column ${tok.pos + 1}${found}: ${JSON.stringify(this.src)}`)
  }

  private describePrevious(): string {
    const prev = this.toks[this.i - 1]
    return prev ? ` after '${prev.raw}'` : ''
  }

  parse(): Expr {
    if (this.toks.length === 1) throw new MembershipError('the predicate is empty')
    const e = this.parseOr()
    if (this.tok.t !== 'eof') {
      if (this.isOp(')')) throw this.fail("AND, OR or the end (unbalanced ')')")
      throw this.fail('AND, OR or the end of the predicate')
    }
    return e
  }

  private parseOr(): Expr {
    const args = [this.parseAnd()]
    while (this.acceptKeyword('or')) args.push(this.parseAnd())
    return args.length === 1 ? args[0] : { kind: 'or', args }
  }

  private parseAnd(): Expr {
    const args = [this.parseNot()]
    while (this.acceptKeyword('and')) args.push(this.parseNot())
    return args.length === 1 ? args[0] : { kind: 'and', args }
  }

  private parseNot(): Expr {
    if (this.acceptKeyword('not')) return { kind: 'not', arg: this.parseNot() }
    return this.parseIs()
  }

  // IS binds more loosely than comparisons (as in PostgreSQL): `a = 1 IS TRUE` is `(a = 1) IS TRUE`
  private parseIs(): Expr {
    let e = this.parseComparison()
    while (this.acceptKeyword('is')) {
      const negated = this.acceptKeyword('not')
      if (this.acceptKeyword('null')) e = { kind: 'isNull', negated, arg: e }
      else if (this.acceptKeyword('true')) e = { kind: 'isBool', negated, value: true, arg: e }
      else if (this.acceptKeyword('false')) e = { kind: 'isBool', negated, value: false, arg: e }
      else if (this.acceptKeyword('unknown')) e = { kind: 'isBool', negated, value: null, arg: e }
      else if (this.acceptKeyword('distinct')) {
        if (!this.acceptKeyword('from')) throw this.fail("FROM after 'DISTINCT'")
        e = { kind: 'distinct', negated, left: e, right: this.parseComparison() }
      } else throw this.fail(`NULL, TRUE, FALSE, UNKNOWN or DISTINCT FROM after 'IS${negated ? ' NOT' : ''}'`)
    }
    return e
  }

  private parseComparison(): Expr {
    const left = this.parseRange()
    const tok = this.tok
    if (tok.t === 'op' && COMPARE_OPS.has(tok.op)) {
      this.i++
      const right = this.parseRange()
      const next = this.tok
      if (next.t === 'op' && COMPARE_OPS.has(next.op)) {
        throw this.fail('AND or OR (comparisons do not chain; use a < b AND b < c)')
      }
      return { kind: 'compare', op: tok.op as CompareOp, left, right }
    }
    return left
  }

  // [NOT] IN (...) and [NOT] BETWEEN bind tighter than comparisons
  private parseRange(): Expr {
    const arg = this.parsePrimary()
    const save = this.i
    const negated = this.acceptKeyword('not')
    if (this.acceptKeyword('in')) {
      if (!this.isOp('(')) throw this.fail(`'(' after 'IN'`)
      this.i++
      const list = [this.parsePrimary()]
      while (this.isOp(',')) {
        this.i++
        list.push(this.parsePrimary())
      }
      if (!this.isOp(')')) throw this.fail("',' or ')' in the IN list")
      this.i++
      return { kind: 'in', negated, arg, list }
    }
    if (this.acceptKeyword('between')) {
      const low = this.parsePrimary()
      if (!this.acceptKeyword('and')) throw this.fail("AND after BETWEEN's lower bound")
      const high = this.parsePrimary()
      return { kind: 'between', negated, arg, low, high }
    }
    if (negated) throw this.fail("IN or BETWEEN after 'NOT'", this.toks[save + 1])
    return arg
  }

  private parsePrimary(): Expr {
    const tok = this.tok
    if (tok.t === 'op' && (tok.op === '-' || tok.op === '+')) {
      const next = this.toks[this.i + 1]
      if (next.t !== 'number') throw this.fail(`a number after '${tok.op}'`, next)
      this.i += 2
      return { kind: 'literal', literal: { type: 'number', text: tok.op === '-' ? '-' + next.text : next.text } }
    }
    if (tok.t === 'number') {
      this.i++
      return { kind: 'literal', literal: { type: 'number', text: tok.text } }
    }
    if (tok.t === 'string') {
      this.i++
      return { kind: 'literal', literal: { type: 'string', value: tok.value } }
    }
    if (tok.t === 'op' && tok.op === '(') {
      this.i++
      const e = this.parseOr()
      if (!this.isOp(')')) throw this.fail(`')' (to close the '(' of column ${tok.pos + 1})`)
      this.i++
      return e
    }
    if (tok.t === 'ident') {
      if (!tok.quoted) {
        if (tok.name === 'true' || tok.name === 'false') {
          this.i++
          return { kind: 'literal', literal: { type: 'bool', value: tok.name === 'true' } }
        }
        if (tok.name === 'null') {
          this.i++
          return { kind: 'literal', literal: { type: 'null' } }
        }
        if (KEYWORDS.has(tok.name)) throw this.fail(`a value${this.describePrevious()}`)
      }
      this.i++
      if (this.isOp('(')) throw this.fail(`AND, OR or an operator (functions such as ${tok.raw}() are not supported)`)
      return { kind: 'column', name: tok.name }
    }
    throw this.fail(this.i === 0 ? "a column, a value or '('" : `a value${this.describePrevious()}`)
  }
}

/** Parses a membership predicate; throws MembershipError naming the column (character position) of the problem. */
export function parseMembership(text: string): Predicate {
  if (typeof text !== 'string') throw new MembershipError('the predicate must be a string')
  const root = new Parser(text, tokenize(text)).parse()
  return { source: text, root }
}

/** The columns a predicate reads, each once, in order of first appearance. */
export function predicateColumns(p: Predicate): string[] {
  const seen = new Set<string>()
  const walk = (e: Expr): void => {
    switch (e.kind) {
      case 'column':
        seen.add(e.name)
        return
      case 'literal':
        return
      case 'and':
      case 'or':
        e.args.forEach(walk)
        return
      case 'not':
      case 'isNull':
      case 'isBool':
        walk(e.arg)
        return
      case 'compare':
      case 'distinct':
        walk(e.left)
        walk(e.right)
        return
      case 'in':
        walk(e.arg)
        e.list.forEach(walk)
        return
      case 'between':
        walk(e.arg)
        walk(e.low)
        walk(e.high)
        return
    }
  }
  walk(p.root)
  return [...seen]
}
