// Renders a parsed membership predicate as a PostgreSQL boolean expression for backfill's `WHERE (...)`, so that
// the rows backfill selects are the rows the stream's evaluation admits. Every node is parenthesized (no reliance
// on precedence), identifiers are quoted, strings are escaped.
import type { Expr, Literal } from './parse.ts'
import type { Predicate } from './parse.ts'

/** `"name"`, doubling embedded quotes. */
export function quoteIdentifier(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"'
}

/**
 * A string literal that means the same whatever standard_conforming_strings is: plain '...' when the text has no
 * backslash, otherwise an E'...' literal with backslashes escaped.
 */
export function quoteLiteral(s: string): string {
  if (s.includes('\0')) throw new Error('a PostgreSQL string cannot contain a NUL character')
  const q = s.replace(/'/g, "''")
  return s.includes('\\') ? "E'" + q.replace(/\\/g, '\\\\') + "'" : "'" + q + "'"
}

function literalSql(l: Literal): string {
  switch (l.type) {
    case 'string':
      return quoteLiteral(l.value)
    case 'number':
      // only digits, '.', 'e', signs reach here (the parser built it); a negative number is parenthesized so that it
      // never touches an operator character
      if (!/^-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/.test(l.text)) throw new Error(`bad number ${l.text}`)
      return l.text.startsWith('-') ? `(${l.text})` : l.text
    case 'bool':
      return l.value ? 'TRUE' : 'FALSE'
    case 'null':
      return 'NULL'
  }
}

/** The predicate as SQL, e.g. `(("status" = 'active') AND ("deleted_at" IS NULL))`. */
export function toSql(p: Predicate, quoteIdent: (name: string) => string = quoteIdentifier): string {
  const r = (e: Expr): string => {
    switch (e.kind) {
      case 'column':
        return quoteIdent(e.name)
      case 'literal':
        return literalSql(e.literal)
      case 'and':
        return '(' + e.args.map(r).join(' AND ') + ')'
      case 'or':
        return '(' + e.args.map(r).join(' OR ') + ')'
      case 'not':
        return `(NOT ${r(e.arg)})`
      case 'compare':
        return `(${r(e.left)} ${e.op} ${r(e.right)})`
      case 'in':
        return `(${r(e.arg)} ${e.negated ? 'NOT IN' : 'IN'} (${e.list.map(r).join(', ')}))`
      case 'between':
        return `(${r(e.arg)} ${e.negated ? 'NOT BETWEEN' : 'BETWEEN'} ${r(e.low)} AND ${r(e.high)})`
      case 'isNull':
        return `(${r(e.arg)} IS ${e.negated ? 'NOT ' : ''}NULL)`
      case 'isBool':
        return `(${r(e.arg)} IS ${e.negated ? 'NOT ' : ''}${e.value === null ? 'UNKNOWN' : e.value ? 'TRUE' : 'FALSE'})`
      case 'distinct':
        return `(${r(e.left)} IS ${e.negated ? 'NOT ' : ''}DISTINCT FROM ${r(e.right)})`
    }
  }
  return r(p.root)
}
