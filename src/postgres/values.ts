// Text-format PostgreSQL values → JS values for turbopuffer attributes, and the turbopuffer attribute type that
// declares each PostgreSQL type in a namespace schema.
//
// Decisions (each one keeps a value exact or makes a loss visible):
// - int8 (and int8[] elements): a JS number when |v| ≤ 2^53-1, otherwise a bigint. turbopuffer's `int` is 64-bit
//   and a string would not match the declared type, so a bigint keeps the exact value; the JSON writer must emit
//   it as a bare integer (JSON.stringify throws on a bigint instead of rounding it, so nothing is lost silently).
// - numeric: the exact decimal text, as a string (never rounded through a float).
// - float4/float8 NaN and ±Infinity: null (JSON and turbopuffer `float` cannot represent them).
// - timestamp (read as UTC) and timestamptz: ISO 8601 in UTC with a `Z`, millisecond precision
//   (`2024-01-02T03:04:05.123Z`). turbopuffer datetimes hold milliseconds, so microseconds are truncated here,
//   once, and every path (stream, backfill, verify) sees the same value. ±infinity → null. The text is kept
//   (SOURCE_TEXT) so that a timestamp id or key part keeps its microseconds (timestampIdText).
// - domains: decoded as their base type (pgoutput's Type message, and the read plan, name the base type).
// - char(n): trailing padding removed (as `::text` does).
// - date, time, timetz, interval, money, inet, ...: PostgreSQL's own text (dates are `YYYY-MM-DD` under DateStyle
//   ISO, which the replication connection sets).
// - bytea: base64. json/jsonb: parsed (for transforms), the text kept (SOURCE_TEXT): attributes send the text.
//   pgvector `vector`/`halfvec`: number[]. Enums and unknown types: the text.
import type { Row } from '../types.ts'
import type { RelationColumn, Tuple } from './pgoutput.ts'
import { ARRAY_ELEMENT, FIRST_NON_BUILTIN_OID, OID, resolveTypeOid, VECTOR_TYPES } from './type-oids.ts'
import {
  decodeBool,
  decodeBytea,
  decodeFloat,
  decodeInt8,
  decodeTimestamp,
  decodeVector,
  trimPadding,
} from './scalar-text.ts'

// the type tables moved to type-oids.ts; importers of values.ts keep finding them here
export { arrayElementOid, EXTENSION_ELEMENT, OID, resolveTypeOid, tpufType } from './type-oids.ts'

/**
 * Session settings under which PostgreSQL prints values in the text format this module reads. The replication
 * connection passes them as startup parameters; any other connection whose `::text` output is decoded here (e.g.
 * backfill) must use the same (`SET TimeZone = 'UTC'`, ...).
 */
export const TEXT_FORMAT_SETTINGS = {
  DateStyle: 'ISO, MDY',
  TimeZone: 'UTC',
  IntervalStyle: 'postgres',
  extra_float_digits: '3',
  bytea_output: 'hex',
} as const

/**
 * Decodes one value in PostgreSQL's text format. `typeName` (from a Type message) identifies non-builtin types
 * whose OIDs differ between databases (pgvector's `vector`; `_name` for arrays of them). null stays null.
 */
export function decodeValue(text: string | null, typeOid: number, typeName?: string): unknown {
  if (text === null) return null
  if (typeOid >= FIRST_NON_BUILTIN_OID) typeOid = resolveTypeOid(typeOid, typeName)
  switch (typeOid) {
    case OID.bpchar:
      // char(n) padding carries no meaning in PostgreSQL (and `::text` drops it): drop it so every path agrees
      return trimPadding(text)
    case OID.text:
    case OID.varchar:
    case OID.name:
    case OID.char:
    case OID.uuid:
    case OID.numeric:
    case OID.date:
    case OID.time:
    case OID.timetz:
    case OID.interval:
    case OID.money:
    case OID.xml:
      return text
    case OID.int2:
    case OID.int4:
    case OID.oid:
      return parseInt(text, 10)
    case OID.int8:
      return decodeInt8(text)
    case OID.float4:
    case OID.float8:
      return decodeFloat(text)
    case OID.bool:
      return decodeBool(text)
    case OID.timestamp:
      return decodeTimestamp(text, false)
    case OID.timestamptz:
      return decodeTimestamp(text, true)
    case OID.json:
    case OID.jsonb:
      return JSON.parse(text)
    case OID.bytea:
      return decodeBytea(text)
  }
  const element = ARRAY_ELEMENT[typeOid]
  if (element !== undefined) return simpleArray(text, element) ?? parseArray(text, (s) => decodeValue(s, element))
  if (typeName !== undefined) {
    if (VECTOR_TYPES.has(typeName)) return decodeVector(text, typeName)
    if (typeName.startsWith('_') && text.startsWith('{')) {
      const elementName = typeName.slice(1)
      return parseArray(text, (s) => decodeValue(s, 0, elementName))
    }
  }
  // enums, citext, domains over text, and every type we do not know: the text itself
  return text
}

/** The builtin scalar types decodeValue turns into something else than their text (char(n): its padding dropped). */
const NOT_AS_TEXT = new Set<number>([
  ...[OID.bpchar, OID.int2, OID.int4, OID.oid, OID.int8, OID.float4, OID.float8, OID.bool],
  ...[OID.timestamp, OID.timestamptz, OID.json, OID.jsonb, OID.bytea],
])

/**
 * Whether decodeValue gives a value of this type as its PostgreSQL text itself (a string equal to what the type's
 * output function prints): what a read may compare in SQL (`format('%s', col)`) to select the rows whose decoded
 * value is a given string. False for numbers, booleans, json, arrays, vectors, timestamps (ISO) and char(n).
 */
export function decodesAsItsText(typeOid: number, typeName?: string): boolean {
  if (typeOid >= FIRST_NON_BUILTIN_OID) typeOid = resolveTypeOid(typeOid, typeName)
  if (NOT_AS_TEXT.has(typeOid) || ARRAY_ELEMENT[typeOid] !== undefined) return false
  // a vector, or what may be an array of a non-builtin type: decoded otherwise (decodeValue's last cases)
  return typeName === undefined || !(VECTOR_TYPES.has(typeName) || typeName.startsWith('_'))
}

const NONE: readonly string[] = Object.freeze([])
const NO_ERRORS: ReadonlyMap<string, string> = new Map()

/** Decodes a pgoutput tuple against its relation's columns; TOAST-unchanged columns are left out of `row`. */
export function decodeTuple(
  columns: readonly RelationColumn[],
  tuple: Tuple,
): { row: Row; unchanged: readonly string[] } {
  const { row, unchanged, errors } = decodeColumns(columns, tuple)
  for (const [column, error] of errors) throw new Error(`column "${column}": ${error}`)
  return { row, unchanged }
}

/** Which columns of a relation keep their text when decoded: 1 json, 2 timestamp (resolved once per relation). */
const KEPT_KINDS = new WeakMap<readonly RelationColumn[], Uint8Array>()
const KEEP_JSON = 1
const KEEP_TIMESTAMP = 2

function keptKinds(columns: readonly RelationColumn[]): Uint8Array {
  let kinds = KEPT_KINDS.get(columns)
  if (!kinds) {
    kinds = new Uint8Array(columns.length)
    columns.forEach((c, i) => {
      if (keepsSourceText(c.typeOid, c.typeName)) {
        kinds![i] = isJsonType(c.typeOid, c.typeName) ? KEEP_JSON : KEEP_TIMESTAMP
      }
    })
    KEPT_KINDS.set(columns, kinds)
  }
  return kinds
}

/**
 * Decodes the columns of a pgoutput tuple that `only` names (all when undefined); the others are left out of
 * `row`, so a value nobody reads cannot fail anything. A value that cannot be decoded is left out too, its reason
 * in `errors` (column → reason): the caller decides whose row it breaks. TOAST-unchanged columns go to `unchanged`.
 * json keeps its text always (it is the attribute); a timestamp only in `timestampTexts` (id columns: the id keeps
 * its microseconds), all when undefined: keeping a text costs a row a side-table entry, most of decoding's time.
 */
export function decodeColumns(
  columns: readonly RelationColumn[],
  tuple: Tuple,
  only?: ReadonlySet<string>,
  timestampTexts?: ReadonlySet<string>,
): { row: Row; unchanged: readonly string[]; errors: ReadonlyMap<string, string> } {
  const row: Row = {}
  let unchanged: string[] | undefined
  // almost every row decodes whole: its errors map is made only when a value fails
  let errors: Map<string, string> | undefined
  const kinds = keptKinds(columns)
  for (let i = 0; i < columns.length; i++) {
    const col = columns[i]
    if (only && !only.has(col.name)) continue
    const v = tuple[i]
    if (v.kind === 'text') {
      try {
        row[col.name] = decodeValue(v.value, col.typeOid, col.typeName)
        const kind = kinds[i]
        if (kind === KEEP_JSON) keepSourceText(row, col.name, keptText(v.value, col.typeOid, col.typeName))
        else if (kind === KEEP_TIMESTAMP && (!timestampTexts || timestampTexts.has(col.name))) {
          keepSourceText(row, col.name, v.value)
        }
      } catch (e) {
        ;(errors ??= new Map()).set(col.name, (e as Error).message)
      }
    } else if (v.kind === 'null') row[col.name] = null
    else if (v.kind === 'unchanged') (unchanged ??= []).push(col.name)
    else if (v.kind === 'invalid') {
      ;(errors ??= new Map()).set(
        col.name,
        `the value is not valid UTF-8 (${v.value.length} bytes; a SQL_ASCII database?)`,
      )
    } else (errors ??= new Map()).set(col.name, `binary values are not supported (stream with binary 'false')`)
  }
  return { row, unchanged: unchanged ?? NONE, errors: errors ?? NO_ERRORS }
}

/** The whitespace PostgreSQL's array input skips around an unquoted element (and array_out quotes): not Unicode's. */
const isArraySpace = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d)

function trimArraySpace(s: string): string {
  let from = 0
  let to = s.length
  while (from < to && isArraySpace(s.charCodeAt(from))) from++
  while (to > from && isArraySpace(s.charCodeAt(to - 1))) to--
  return from === 0 && to === s.length ? s : s.slice(from, to)
}

/**
 * A one-dimensional array with no quoted or escaped element (`{a,b,NULL}`: what array_out prints for most arrays),
 * split in one pass without a parser: what parseArray gives for it. Undefined for anything else (quotes,
 * backslashes, nested braces, whitespace), which parseArray handles.
 */
function simpleArray(text: string, element: number): unknown[] | undefined {
  const last = text.length - 1
  if (last < 1 || text.charCodeAt(0) !== 0x7b || text.charCodeAt(last) !== 0x7d) return undefined
  if (last === 1) return []
  const out: unknown[] = []
  let start = 1
  for (let i = 1; i <= last; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x2c || i === last) {
      const raw = text.slice(start, i)
      out.push(raw.length === 4 && raw.toUpperCase() === 'NULL' ? null : decodeValue(raw, element))
      start = i + 1
    } else if (c === 0x22 || c === 0x5c || c === 0x7b || c === 0x7d || isArraySpace(c)) return undefined
  }
  return out
}

/**
 * Parses an array literal (`{1,2,NULL}`, `{"a \"b\"",c}`, nested `{{1,2},{3,4}}`, optional `[0:1]=` bounds) and
 * decodes each element with `element`. An unquoted NULL is null; quoted "NULL" is the string.
 */
export function parseArray(text: string, element: (s: string) => unknown): unknown[] {
  let i = 0
  if (text[0] === '[') {
    // explicit bounds, e.g. [0:2]={1,2,3}
    i = text.indexOf('=') + 1
    if (i === 0) throw new Error(`invalid array literal ${JSON.stringify(text.slice(0, 40))}`)
  }
  const bad = () => new Error(`invalid array literal ${JSON.stringify(text.slice(0, 60))}`)
  const parseLevel = (): unknown[] => {
    if (text[i] !== '{') throw bad()
    i++
    const out: unknown[] = []
    if (text[i] === '}') {
      i++
      return out
    }
    for (;;) {
      if (text[i] === '{') out.push(parseLevel())
      else if (text[i] === '"') {
        let s = ''
        let start = ++i
        for (;;) {
          const c = text[i]
          if (c === undefined) throw bad()
          if (c === '"') break
          if (c === '\\') {
            s += text.slice(start, i)
            start = ++i
          }
          i++
        }
        s += text.slice(start, i)
        i++
        out.push(element(s))
      } else {
        const start = i
        let s = ''
        let escaped = false
        while (i < text.length && text[i] !== ',' && text[i] !== '}') {
          if (text[i] === '\\') {
            escaped = true
            i++
          }
          s += text[i]
          i++
        }
        if (i >= text.length) throw bad()
        const raw = trimArraySpace(text.slice(start, i))
        out.push(!escaped && raw.toUpperCase() === 'NULL' ? null : element(escaped ? trimArraySpace(s) : raw))
      }
      if (text[i] === ',') i++
      else if (text[i] === '}') {
        i++
        return out
      } else throw bad()
    }
  }
  const result = parseLevel()
  if (i !== text.length) throw bad()
  return result
}

/**
 * The PostgreSQL text of a row's json/jsonb and timestamp columns, kept beside their decoded values in a side table
 * (rows compare, spread, print and serialize as their columns alone; a property would also cost every row a slower
 * shape): json attributes are sent as this text, so integers beyond 2^53 inside stay exact, and timestamp ids and key
 * parts keep their microseconds (decoded values hold milliseconds).
 */
const SOURCE_TEXT = new WeakMap<Row, Record<string, string>>()

/** Whether decoding a column of this type keeps its text (see SOURCE_TEXT). */
export function keepsSourceText(typeOid: number, typeName?: string): boolean {
  const t = resolveTypeOid(typeOid, typeName)
  return t === OID.json || t === OID.jsonb || t === OID.timestamp || t === OID.timestamptz ||
    t === OID._json || t === OID._jsonb
}

/** json or jsonb, or an array of them (domains over them included): the text kept is JSON (keptText) */
export function isJsonType(typeOid: number, typeName?: string): boolean {
  const t = resolveTypeOid(typeOid, typeName)
  return t === OID.json || t === OID.jsonb || t === OID._json || t === OID._jsonb
}

/**
 * The text decoding keeps for a column (keepsSourceText): PostgreSQL's own, except for an array of json, whose
 * array literal becomes one JSON text built from its elements' own texts (big integers inside stay exact; the
 * decoded elements went through JSON.parse).
 */
export function keptText(text: string, typeOid: number, typeName?: string): string {
  const t = resolveTypeOid(typeOid, typeName)
  return t === OID._json || t === OID._jsonb ? jsonArrayText(text) : text
}

/** `{"{\"n\": 1}",NULL}` → `[{"n": 1},null]`: each element's JSON text as PostgreSQL printed it. */
export function jsonArrayText(text: string): string {
  const json = (v: unknown): string =>
    Array.isArray(v) ? '[' + v.map(json).join(',') + ']' : v === null ? 'null' : v as string
  return json(parseArray(text, (s) => s))
}

/** Records a column's PostgreSQL text on a decoded row (for columns where keepsSourceText). */
export function keepSourceText(row: Row, name: string, text: string): void {
  const texts = SOURCE_TEXT.get(row)
  if (texts) texts[name] = text
  else SOURCE_TEXT.set(row, { [name]: text })
}

/** Decodes one column's text onto `row`, keeping the text where keepsSourceText says. */
export function decodeColumn(row: Row, name: string, text: string | null, typeOid: number, typeName?: string): void {
  row[name] = decodeValue(text, typeOid, typeName)
  if (text !== null && keepsSourceText(typeOid, typeName)) keepSourceText(row, name, keptText(text, typeOid, typeName))
}

/** A column's PostgreSQL text as decoding kept it, if it did. */
/**
 * A deep copy of a decoded row, with the texts it keeps (SOURCE_TEXT): what each mapping's transform gets when
 * several mappings read one change, so that one transform mutating its row cannot change what another one sees.
 */
export function copyRow(row: Row): Row {
  const copy = structuredClone(row)
  const texts = SOURCE_TEXT.get(row)
  if (texts) SOURCE_TEXT.set(copy, { ...texts })
  return copy
}

export function sourceText(row: Row, name: string): string | undefined {
  return SOURCE_TEXT.get(row)?.[name]
}

/**
 * A timestamp's text as an id part with all of its microseconds: ISO 8601 in UTC with six fractional digits
 * (`2024-01-02T03:04:05.123456Z`). ±infinity stay as PostgreSQL prints them.
 */
export function timestampIdText(text: string, withZone: boolean): string {
  const iso = decodeTimestamp(text, withZone)
  if (iso === null) return text
  // an offset is whole seconds, so the fraction PostgreSQL printed is the fraction in UTC
  const frac = /\d\d:\d\d:\d\d\.(\d{1,6})/.exec(text)?.[1] ?? ''
  return iso.slice(0, -1) + frac.padEnd(6, '0').slice(3) + 'Z'
}
