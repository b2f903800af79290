// Compiles a parsed membership predicate into a tree of closures evaluated per row with PostgreSQL's three-valued
// logic (true / false / null). Comparison semantics live in membership-values.ts.
//
// Column types: pass them (type OIDs from the relation, or type names) and every comparison is resolved once, at
// compile time, exactly as PostgreSQL resolves it — including a type mismatch PostgreSQL would reject, which is
// then a MembershipError at compile time. Without a column's type, its JS value decides per row: a safe integer,
// bigint or numeric-looking string compared with a number is exact, any other number is float8, a string compared
// with a string literal is text, a boolean is bool. That guess is wrong in these cases, which need the types:
// numeric/date/timestamp columns compared with a *string* literal not written in the decoder's canonical form
// (`price = '10.0'` against '10.00'), two numeric-string columns compared with each other, an integer-valued float8
// compared with a literal of more than 15 significant digits, float4 columns (compared as float8).
import { type CompareOp, type Expr, type Literal, MembershipError, type Predicate } from './membership-parse.ts'
import {
  canonicalUuid,
  compareBool,
  compareDecimal,
  compareFloat,
  compareInstant,
  compareText,
  type Decimal,
  type Domain,
  parseBoolText,
  parseDecimal,
  parseInstant,
} from './membership-values.ts'

/** A column's PostgreSQL type: its OID (as in a pgoutput Relation message) or its name (`int4`, `numeric(10,2)`). */
export type ColumnType = number | string
export type ColumnTypes = Record<string, ColumnType>

export type Row = Record<string, unknown>
export type CompiledPredicate = (row: Row) => boolean | null

type Kind =
  | 'int'
  | 'numeric'
  | 'float8'
  | 'float4'
  | 'text'
  | 'uuid'
  | 'bool'
  | 'date'
  | 'timestamp'
  | 'timestamptz'
  /** blank-padded char(n): compared without its trailing spaces */
  | 'bpchar'
  /** a type puffgres does not know (enums, domains, extension types): its text, for = / <> / IN only */
  | 'other'
  /** json, jsonb, bytea, citext, arrays: IS NULL only */
  | 'unsupported'

const KIND_BY_OID: Record<number, Kind> = {
  16: 'bool',
  20: 'int',
  21: 'int',
  23: 'int',
  26: 'int',
  25: 'text',
  1043: 'text',
  19: 'text',
  1042: 'bpchar',
  114: 'unsupported',
  3802: 'unsupported',
  17: 'unsupported',
  700: 'float4',
  701: 'float8',
  1700: 'numeric',
  2950: 'uuid',
  1082: 'date',
  1114: 'timestamp',
  1184: 'timestamptz',
}

const KIND_BY_NAME: Record<string, Kind> = {
  bool: 'bool',
  boolean: 'bool',
  int2: 'int',
  int4: 'int',
  int8: 'int',
  smallint: 'int',
  integer: 'int',
  int: 'int',
  bigint: 'int',
  oid: 'int',
  smallserial: 'int',
  serial: 'int',
  bigserial: 'int',
  numeric: 'numeric',
  decimal: 'numeric',
  float4: 'float4',
  real: 'float4',
  float8: 'float8',
  'double precision': 'float8',
  text: 'text',
  varchar: 'text',
  'character varying': 'text',
  name: 'text',
  uuid: 'uuid',
  date: 'date',
  timestamp: 'timestamp',
  'timestamp without time zone': 'timestamp',
  timestamptz: 'timestamptz',
  'timestamp with time zone': 'timestamptz',
  bpchar: 'bpchar',
  char: 'bpchar',
  character: 'bpchar',
  json: 'unsupported',
  jsonb: 'unsupported',
  bytea: 'unsupported',
  citext: 'unsupported',
}

const ARRAY_OIDS = new Set([
  199,
  143,
  1000,
  1001,
  1002,
  1003,
  1005,
  1007,
  1009,
  1014,
  1015,
  1016,
  1021,
  1022,
  1028,
  1115,
  1182,
  1183,
  1185,
  1187,
  1231,
  1270,
  2951,
  3807,
  791,
])

function kindOf(t: ColumnType): Kind {
  // array types: OIDs of the builtin ones lie in these ranges; names start with '_' or end with '[]'
  if (typeof t === 'number') return KIND_BY_OID[t] ?? (ARRAY_OIDS.has(t) ? 'unsupported' : 'other')
  if (t.startsWith('_') || t.endsWith('[]')) return 'unsupported'
  const name = t.trim().toLowerCase().replace(/\s*\(.*\)\s*/, ' ').trim().replace(/^pg_catalog\./, '')
  return KIND_BY_NAME[name] ?? 'other'
}

/**
 * What an operand of a comparison is, before any row is seen: a known kind of column or expression, a literal
 * ('number', 'string' = PostgreSQL's unknown-typed literal, 'null'), or 'dynamic' (a column of unknown type).
 */
type Cat = Kind | 'number' | 'string' | 'null' | 'dynamic'

interface Operand {
  get: (row: Row) => unknown
  cat: Cat
  label: string
  literal?: Literal
  typeName?: string
}

const DOMAIN_OF_KIND: Partial<Record<Cat, Domain>> = {
  int: 'exact',
  numeric: 'exact',
  number: 'exact',
  float8: 'float',
  float4: 'float',
  text: 'text',
  uuid: 'text',
  bpchar: 'text',
  other: 'text',
  bool: 'bool',
  date: 'date',
  timestamp: 'timestamp',
  timestamptz: 'timestamptz',
}

const NUMERIC = new Set<Cat>(['int', 'numeric', 'number', 'float4', 'float8'])

/** The domain PostgreSQL would compare two operands in, or undefined when it has no such operator. */
function resolveDomain(a: Cat, b: Cat): Domain | undefined {
  if (a === 'string' && b === 'string') return 'text'
  if (a === 'string') return DOMAIN_OF_KIND[b]
  if (b === 'string') return DOMAIN_OF_KIND[a]
  if (NUMERIC.has(a) && NUMERIC.has(b)) {
    return a === 'float4' || a === 'float8' || b === 'float4' || b === 'float8' ? 'float' : 'exact'
  }
  if (a === b) return DOMAIN_OF_KIND[a]
  // char(n) against text is compared as text (the cast drops the padding)
  if ((a === 'bpchar' && b === 'text') || (a === 'text' && b === 'bpchar')) return 'text'
  return undefined
}

function describeCat(o: Operand): string {
  if (o.literal) {
    const l = o.literal
    return l.type === 'string'
      ? `'${l.value}'`
      : l.type === 'number'
      ? l.text
      : l.type === 'bool'
      ? String(l.value)
      : 'NULL'
  }
  if (o.typeName) return `${o.label} (${o.typeName})`
  return o.cat === 'dynamic' ? o.label : `${o.label} (holding ${o.cat === 'string' ? 'text' : o.cat})`
}

function mismatch(a: Operand, b: Operand): MembershipError {
  return new MembershipError(`cannot compare ${describeCat(a)} with ${describeCat(b)}`)
}

function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)
  if (typeof v === 'bigint') return `${v}n`
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object'
  return String(v)
}

// ---- exact numbers: a safe integer as a JS number (fast path), anything else as a Decimal

type Exact = number | Decimal

function decimalToExact(d: Decimal): Exact {
  if (d.rank === 1 && (d.sign === 0 || (d.exp >= d.digits.length && d.exp <= 15))) {
    return d.sign === 0 ? 0 : d.sign * Number(d.digits + '0'.repeat(d.exp - d.digits.length))
  }
  return d
}

function asDecimal(x: Exact): Decimal {
  return typeof x === 'number' ? parseDecimal(String(x))! : x
}

function compareExact(a: Exact, b: Exact): number {
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : a > b ? 1 : 0
  return compareDecimal(asDecimal(a), asDecimal(b))
}

function decimalToFloat(d: Decimal, text: string): number {
  if (d.rank === 3) return NaN
  if (d.rank !== 1) return d.rank === 2 ? Infinity : -Infinity
  return Number(text.trim())
}

// ---- converting row values (decoded by postgres/values.ts) into a domain

function valueIn(v: unknown, domain: Domain, o: Operand): unknown {
  switch (domain) {
    case 'exact':
      if (typeof v === 'number') return Number.isSafeInteger(v) ? v : parseDecimal(String(v))!
      if (typeof v === 'bigint') return decimalToExact(parseDecimal(v.toString())!)
      if (typeof v === 'string') {
        const d = parseDecimal(v)
        if (d) return decimalToExact(d)
      }
      break
    case 'float':
      if (typeof v === 'number') return o.cat === 'float4' ? Math.fround(v) : v
      if (typeof v === 'bigint') return Number(v)
      if (typeof v === 'string') {
        const d = parseDecimal(v)
        if (d) return decimalToFloat(d, v)
      }
      break
    case 'text':
      if (typeof v === 'string') return v
      break
    case 'bool':
      if (typeof v === 'boolean') return v
      break
    default: {
      if (typeof v === 'string') {
        const t = parseInstant(v, domain)
        if (t) return t
      }
    }
  }
  throw new MembershipError(`${o.label} holds ${describeValue(v)}, which cannot be compared as ${DOMAIN_NAME[domain]}`)
}

const DOMAIN_NAME: Record<Domain, string> = {
  exact: 'a number',
  float: 'a float',
  text: 'text',
  bool: 'a boolean',
  date: 'a date',
  timestamp: 'a timestamp',
  timestamptz: 'a timestamptz',
}

/** A literal's value in a domain, coerced as PostgreSQL coerces a literal to the other operand's type. */
function literalIn(lit: Literal, domain: Domain, self: Operand, other: Operand): unknown {
  const bad = () => mismatch(self, other)
  const invalid = (what: string) =>
    new MembershipError(`${describeCat(self)} is not a valid ${what} (compared with ${describeCat(other)})`)
  if (lit.type === 'bool') {
    if (domain !== 'bool') throw bad()
    return lit.value
  }
  if (lit.type === 'number') {
    if (domain === 'exact') return decimalToExact(parseDecimal(lit.text)!)
    if (domain === 'float') return Number(lit.text)
    throw bad()
  }
  if (lit.type === 'null') throw new Error('unreachable: NULL literals are folded before conversion')
  const s = lit.value
  switch (domain) {
    case 'exact': {
      // an int column takes integer input only ('5.0' is an error for PostgreSQL's int4in)
      if (other.cat === 'int' && !/^\s*[+-]?\d+\s*$/.test(s)) throw invalid('integer')
      const d = parseDecimal(s)
      if (!d) throw invalid('number')
      return decimalToExact(d)
    }
    case 'float': {
      const d = parseDecimal(s)
      if (!d) throw invalid('number')
      const f = decimalToFloat(d, s)
      // the literal takes the column's type: float4 input rounds to float4
      return other.cat === 'float4' ? Math.fround(f) : f
    }
    case 'text':
      if (other.cat === 'uuid') {
        const u = canonicalUuid(s)
        if (u === undefined) throw invalid('uuid')
        return u
      }
      return other.cat === 'bpchar' ? trimPadding(s) : s
    case 'bool': {
      const b = parseBoolText(s)
      if (b === undefined) throw invalid('boolean')
      return b
    }
    default: {
      const t = parseInstant(s, domain)
      if (!t) throw invalid(domain === 'date' ? 'date' : 'timestamp (relative words like now are not supported)')
      return t
    }
  }
}

const COMPARATOR: Record<Domain, (a: any, b: any) => number> = {
  exact: compareExact,
  float: compareFloat,
  text: compareText,
  bool: compareBool,
  date: compareInstant,
  timestamp: compareInstant,
  timestamptz: compareInstant,
}

// ---- comparisons

/** Result codes of an ordering besides -1/0/1 */
const ONE_NULL = 2
const BOTH_NULL = 3

/** Compiles `a <op> b` into a closure returning -1/0/1, or ONE_NULL / BOTH_NULL. */
function compileOrder(a: Operand, b: Operand, ordering: boolean): (row: Row) => number {
  if (a.cat === 'null' || b.cat === 'null') {
    if (a.cat === 'null' && b.cat === 'null') return () => BOTH_NULL
    const other = a.cat === 'null' ? b : a
    return (row) => (other.get(row) === null ? BOTH_NULL : ONE_NULL)
  }
  for (const o of [a, b]) {
    if (o.cat === 'unsupported' || (o.cat === 'other' && ordering)) {
      throw new MembershipError(
        `${o.label} has type ${o.typeName}, which membership ${
          o.cat === 'other' ? 'can only test with =, <>, IN or IS DISTINCT FROM' : 'comparisons do not support'
        } (IS NULL works)`,
      )
    }
  }
  if (a.cat !== 'dynamic' && b.cat !== 'dynamic') {
    const domain = resolveDomain(a.cat, b.cat)
    if (!domain) throw mismatch(a, b)
    const cmp = COMPARATOR[domain]
    const ca = staticConverter(a, b, domain)
    const cb = staticConverter(b, a, domain)
    return (row) => {
      const x = a.get(row)
      const y = b.get(row)
      if (x === null || y === null) return x === null && y === null ? BOTH_NULL : ONE_NULL
      return cmp(ca(x), cb(y))
    }
  }
  // at least one side's type is known only from its values
  const cacheA = new Map<Domain, unknown>()
  const cacheB = new Map<Domain, unknown>()
  return (row) => {
    const x = a.get(row)
    const y = b.get(row)
    if (x === null || y === null) return x === null && y === null ? BOTH_NULL : ONE_NULL
    const ka = a.cat === 'dynamic' ? runtimeCat(x, a) : a.cat
    const kb = b.cat === 'dynamic' ? runtimeCat(y, b) : b.cat
    const domain = resolveDomain(ka, kb)
    if (!domain) throw mismatch({ ...a, cat: ka }, { ...b, cat: kb })
    return COMPARATOR[domain](dynamicValue(a, b, x, domain, cacheA), dynamicValue(b, a, y, domain, cacheB))
  }
}

function staticConverter(self: Operand, other: Operand, domain: Domain): (v: unknown) => unknown {
  if (self.literal) {
    const c = literalIn(self.literal, domain, self, other)
    return () => c
  }
  if (self.cat === 'bpchar') return (v) => trimPadding(valueIn(v, domain, self) as string)
  // a boolean expression already yields booleans; text and bool values are used as they are
  if (domain === 'bool' || domain === 'text') {
    const isBool = domain === 'bool'
    return (v) => {
      if (isBool ? typeof v !== 'boolean' : typeof v !== 'string') valueIn(v, domain, self)
      return v
    }
  }
  if (domain === 'exact') {
    return (v) => (typeof v === 'number' && Number.isSafeInteger(v) ? v : valueIn(v, domain, self))
  }
  return (v) => valueIn(v, domain, self)
}

function trimPadding(s: string): string {
  let end = s.length
  while (end > 0 && s.charCodeAt(end - 1) === 32) end--
  return end === s.length ? s : s.slice(0, end)
}

function dynamicValue(self: Operand, other: Operand, v: unknown, domain: Domain, cache: Map<Domain, unknown>) {
  if (!self.literal) return valueIn(v, domain, self)
  let c = cache.get(domain)
  if (c === undefined) {
    c = literalIn(self.literal, domain, self, other)
    cache.set(domain, c)
  }
  return c
}

/** The category of a value from a column of unknown type. */
function runtimeCat(v: unknown, o: Operand): Cat {
  switch (typeof v) {
    // 'numeric' rather than 'int': an integer value of an untyped column may be a float8 that happens to be whole
    case 'number':
      return Number.isSafeInteger(v) ? 'numeric' : 'float8'
    case 'bigint':
      return 'numeric'
    case 'string':
      // a numeric-looking string next to a number is numeric (numeric and big int8 arrive as text)
      return 'string'
    case 'boolean':
      return 'bool'
  }
  throw new MembershipError(`${o.label} holds ${describeValue(v)}, which membership comparisons do not support`)
}

function testOrder(op: CompareOp, c: number): boolean | null {
  if (c > 1) return null
  switch (op) {
    case '=':
      return c === 0
    case '<>':
      return c !== 0
    case '<':
      return c < 0
    case '<=':
      return c <= 0
    case '>':
      return c > 0
    case '>=':
      return c >= 0
  }
}

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
      case 'and': {
        const args = e.args.map((a) => this.bool(a))
        return (row) => {
          let sawNull = false
          for (const f of args) {
            const v = f(row)
            if (v === false) return false
            if (v === null) sawNull = true
          }
          return sawNull ? null : true
        }
      }
      case 'or': {
        const args = e.args.map((a) => this.bool(a))
        return (row) => {
          let sawNull = false
          for (const f of args) {
            const v = f(row)
            if (v === true) return true
            if (v === null) sawNull = true
          }
          return sawNull ? null : false
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
