// What an operand of a membership comparison is: a column's PostgreSQL type mapped to the kind of value it holds,
// and how operands and values are described in error messages. Private to membership/ (see eval.ts).
import { type Literal, MembershipError } from './parse.ts'

/** A column's PostgreSQL type: its OID (as in a pgoutput Relation message) or its name (`int4`, `numeric(10,2)`). */
export type ColumnType = number | string
export type ColumnTypes = Record<string, ColumnType>

export type Row = Record<string, unknown>
export type CompiledPredicate = (row: Row) => boolean | null

export type Kind =
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

export function kindOf(t: ColumnType): Kind {
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
export type Cat = Kind | 'number' | 'string' | 'null' | 'dynamic'

export interface Operand {
  get: (row: Row) => unknown
  cat: Cat
  label: string
  literal?: Literal
  typeName?: string
}

export function describeCat(o: Operand): string {
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

export function mismatch(a: Operand, b: Operand): MembershipError {
  return new MembershipError(`cannot compare ${describeCat(a)} with ${describeCat(b)}`)
}

export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)
  if (typeof v === 'bigint') return `${v}n`
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object'
  return String(v)
}
