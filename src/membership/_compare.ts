// Compiles one comparison of two operands as PostgreSQL resolves it: the domain both sides are compared in, how a
// row value or a literal is coerced into it, and the ordering closure. Comparison semantics per domain live in
// _values.ts. Private to membership/ (see eval.ts).
import { type CompareOp, type Literal, MembershipError } from './parse.ts'
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
} from './_values.ts'
import { type Cat, describeCat, describeValue, mismatch, type Operand, type Row } from './_operand.ts'

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
export const ONE_NULL = 2
export const BOTH_NULL = 3

/** Compiles `a <op> b` into a closure returning -1/0/1, or ONE_NULL / BOTH_NULL. */
export function compileOrder(a: Operand, b: Operand, ordering: boolean): (row: Row) => number {
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

export function testOrder(op: CompareOp, c: number): boolean | null {
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
