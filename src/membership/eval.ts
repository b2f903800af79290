// Compiles a parsed membership predicate into a tree of closures evaluated per row with PostgreSQL's three-valued
// logic (true / false / null). Comparison semantics live in _values.ts;
// how one comparison is compiled, in _compare.ts; column kinds, in _operand.ts.
//
// Column types: pass them (type OIDs from the relation, or type names) and every comparison is resolved once, at
// compile time, exactly as PostgreSQL resolves it — including a type mismatch PostgreSQL would reject, which is
// then a MembershipError at compile time. Without a column's type, its JS value decides per row: a safe integer,
// bigint or numeric-looking string compared with a number is exact, any other number is float8, a string compared
// with a string literal is text, a boolean is bool. That guess is wrong in these cases, which need the types:
// numeric/date/timestamp columns compared with a *string* literal not written in the decoder's canonical form
// (`price = '10.0'` against '10.00'), two numeric-string columns compared with each other, an integer-valued float8
// compared with a literal of more than 15 significant digits, float4 columns (compared as float8).
import { type Expr, MembershipError, type Predicate } from './parse.ts'
import { parseBoolText } from './_values.ts'
import {
  type Cat,
  type ColumnTypes,
  type CompiledPredicate,
  describeCat,
  describeValue,
  kindOf,
  type Operand,
  type Row,
} from './_operand.ts'
import { BOTH_NULL, compileOrder, ONE_NULL, testOrder } from './_compare.ts'

export type { ColumnType, ColumnTypes, CompiledPredicate, Row } from './_operand.ts'

// ---- the expression tree

class Compiler {
  constructor(private types: ColumnTypes | undefined) {}

  column(name: string): Operand {
    const label = `column ${JSON.stringify(name)}`
    const get = (row: Row) => {
      const v = row[name]
      if (v === undefined) throw new MembershipError(`${label} is not in the row`)
      return v
    }
    const t = this.types?.[name]
    if (t === undefined) return { get, cat: 'dynamic', label }
    return { get, cat: kindOf(t), label, typeName: typeof t === 'number' ? `oid ${t}` : t }
  }

  operand(e: Expr): Operand {
    if (e.kind === 'column') return this.column(e.name)
    if (e.kind === 'literal') {
      const l = e.literal
      const value = l.type === 'null' ? null : l.type === 'number' ? l.text : l.value
      const cat: Cat = l.type === 'null'
        ? 'null'
        : l.type === 'number'
        ? 'number'
        : l.type === 'string'
        ? 'string'
        : 'bool'
      return { get: () => value, cat, label: 'literal', literal: l }
    }
    return { get: this.bool(e), cat: 'bool', label: 'a condition' }
  }

  bool(e: Expr): CompiledPredicate {
    switch (e.kind) {
      case 'column': {
        const o = this.column(e.name)
        if (o.cat !== 'dynamic' && o.cat !== 'bool') {
          throw new MembershipError(`${o.label} has type ${o.typeName}, not boolean; compare it with a value`)
        }
        return (row) => {
          const v = o.get(row)
          if (v === null || typeof v === 'boolean') return v
          throw new MembershipError(`${o.label} is used as a condition but holds ${describeValue(v)}`)
        }
      }
      case 'literal': {
        const l = e.literal
        let v: boolean | null | undefined
        if (l.type === 'null') v = null
        else if (l.type === 'bool') v = l.value
        else if (l.type === 'string') v = parseBoolText(l.value)
        if (v === undefined) throw new MembershipError(`${describeCat(this.operand(e))} is not a condition`)
        const c = v
        return () => c
      }
      case 'and':
      case 'or': {
        // three-valued: the deciding value (false for AND, true for OR) wins; else NULL if any was NULL
        const args = e.args.map((a) => this.bool(a))
        const decisive = e.kind === 'or'
        return (row) => {
          let sawNull = false
          for (const f of args) {
            const v = f(row)
            if (v === decisive) return decisive
            if (v === null) sawNull = true
          }
          return sawNull ? null : !decisive
        }
      }
      case 'not': {
        const f = this.bool(e.arg)
        return (row) => {
          const v = f(row)
          return v === null ? null : !v
        }
      }
      case 'compare': {
        const op = e.op
        const order = compileOrder(this.operand(e.left), this.operand(e.right), op !== '=' && op !== '<>')
        return (row) => testOrder(op, order(row))
      }
      case 'in': {
        // x IN (a, b) is x = a OR x = b; NOT IN is its negation
        const x = this.operand(e.arg)
        // PostgreSQL compares an IN list with two or more constants in the common type of the left side and the
        // constants. It differs from pairwise `=` only for float4: `r IN (1.1, 2)` casts 1.1 to float4, while
        // `r = 1.1` widens r to float8. Reading such numbers as unknown-typed literals gives exactly the cast.
        const constants = e.list.filter((item) => item.kind === 'literal').length
        const asFloat4 = x.cat === 'float4' && constants >= 2
        const orders = e.list.map((item) => {
          const o = this.operand(item)
          if (asFloat4 && o.literal?.type === 'number') {
            const text = o.literal.text
            return compileOrder(x, { ...o, cat: 'string', literal: { type: 'string', value: text } }, false)
          }
          return compileOrder(x, o, false)
        })
        const negated = e.negated
        return (row) => {
          let sawNull = false
          for (const order of orders) {
            const c = order(row)
            if (c === 0) return !negated
            if (c > 1) sawNull = true
          }
          return sawNull ? null : negated
        }
      }
      case 'between': {
        // x BETWEEN a AND b is x >= a AND x <= b
        const x = this.operand(e.arg)
        const low = compileOrder(x, this.operand(e.low), true)
        const high = compileOrder(x, this.operand(e.high), true)
        const negated = e.negated
        return (row) => {
          const l = testOrder('>=', low(row))
          if (l === false) return negated
          const h = testOrder('<=', high(row))
          if (h === false) return negated
          if (l === null || h === null) return null
          return !negated
        }
      }
      case 'isNull': {
        const o = this.operand(e.arg)
        const negated = e.negated
        return (row) => (o.get(row) === null) !== negated
      }
      case 'isBool': {
        const f = this.bool(e.arg)
        const want = e.value
        const negated = e.negated
        return (row) => (f(row) === want) !== negated
      }
      case 'distinct': {
        const order = compileOrder(this.operand(e.left), this.operand(e.right), false)
        const negated = e.negated
        return (row) => {
          const c = order(row)
          const distinct = c === ONE_NULL || (c !== BOTH_NULL && c !== 0)
          return distinct !== negated
        }
      }
    }
  }
}

/**
 * Compiles a predicate once into a closure for the hot path. With `types` (column → type OID or name), type
 * errors surface here and every comparison follows PostgreSQL's rules exactly (see the header comment).
 */
export function compileMembership(p: Predicate, types?: ColumnTypes): CompiledPredicate {
  return new Compiler(types).bool(p.root)
}

const untyped = new WeakMap<Predicate, CompiledPredicate>()

/** The predicate's value for a row: true, false or null (SQL's unknown). Compiles on first use and caches. */
export function evaluate(p: Predicate, row: Row): boolean | null {
  let f = untyped.get(p)
  if (!f) {
    f = compileMembership(p)
    untyped.set(p, f)
  }
  return f(row)
}

/** A row belongs to the namespace only when the predicate is true (null, like false, means no — as in WHERE). */
export function isMember(p: Predicate, row: Row): boolean {
  return evaluate(p, row) === true
}
