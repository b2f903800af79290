// Attribute types: inferred from the first value written unless declared, then enforced on every write.
import { badRequest, show } from './errors.ts'
import { LIMITS, utf8Bytes, violation } from './rules.ts'
import { isUuid } from './ids.ts'
import { valueBytes } from '../turbopuffer/sizes.ts'

export interface AttrConfig {
  type: string
  filterable?: boolean
  full_text_search?: unknown
  [option: string]: unknown
}

export type Schema = Record<string, AttrConfig>

const SCALARS = new Set(['string', 'int', 'uint', 'float', 'uuid', 'datetime', 'bool'])
const OPTIONS = new Set([
  'type',
  'filterable',
  'full_text_search',
  'regex',
  'glob',
  'fuzzy',
  'ann',
  'embed',
  'sparse_knn',
])
// ISO 8601 with a mandatory date and an optional time and zone, as turbopuffer accepts for datetime.
const DATETIME = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/

export function isKnownType(type: string): boolean {
  return SCALARS.has(type) || (type.startsWith('[]') && SCALARS.has(type.slice(2)))
}

/** `[1536]f32` → 1536; undefined for anything else. */
export function vectorDims(type: string): number | undefined {
  const m = /^\[(\d+)\]f(16|32)$/.exec(type)
  return m ? Number(m[1]) : undefined
}

export function checkAttrName(name: string): void {
  if (name.length === 0) throw violation('attribute-name', 'invalid attribute name "": names must not be empty')
  if (name.startsWith('$')) {
    throw violation('attribute-name', `invalid attribute name ${show(name)}: names must not start with '$'`)
  }
  // Plain objects hold documents here; this one name would set their prototype instead of an attribute.
  if (name === '__proto__') throw badRequest('invalid attribute name "__proto__": not supported by the local server')
  if (utf8Bytes(name) > LIMITS.attributeNameBytes) {
    throw violation(
      'attribute-name',
      `invalid attribute name ${show(name)}: at most ${LIMITS.attributeNameBytes} bytes`,
    )
  }
}

/** Normalises one entry of a `schema` object (`"uint"` or `{ type, filterable, ... }`). */
export function parseAttrSchema(name: string, spec: unknown): AttrConfig {
  if (typeof spec === 'string') spec = { type: spec }
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw badRequest(`invalid schema for attribute ${show(name)}: expected a type name or an object with "type"`)
  }
  const cfg = spec as Record<string, unknown>
  if (typeof cfg.type !== 'string') {
    throw badRequest(`invalid schema for attribute ${show(name)}: "type" is required when options are given`)
  }
  for (const key of Object.keys(cfg)) {
    if (!OPTIONS.has(key)) throw badRequest(`invalid schema for attribute ${show(name)}: unknown option ${show(key)}`)
  }
  if (name === 'vector') {
    if (vectorDims(cfg.type) === undefined) {
      throw badRequest(`invalid schema for attribute "vector": type must look like "[768]f32", got ${show(cfg.type)}`)
    }
  } else if (!isKnownType(cfg.type)) {
    throw badRequest(`invalid schema for attribute ${show(name)}: unknown type ${show(cfg.type)}`)
  }
  return { ...cfg, type: cfg.type } as AttrConfig
}

/** The type turbopuffer infers from a first value; undefined when it cannot tell (null, empty array). */
export function inferType(name: string, value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined
  if (typeof value === 'string') return 'string'
  if (typeof value === 'boolean') return 'bool'
  if (typeof value === 'bigint') return 'int'
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float'
  if (Array.isArray(value)) {
    let type: string | undefined
    for (const v of value) {
      if (Array.isArray(v)) throw nested(name, value)
      const t = inferType(name, v)
      if (t === undefined) continue
      type ??= t
      if (t !== type) {
        throw violation(
          'array-element-type',
          `invalid value for attribute ${show(name)}: an array holds one element type, got ${type} and ${t}`,
        )
      }
    }
    return type && '[]' + type
  }
  throw nested(name, value)
}

function nested(name: string, value: unknown) {
  const what = Array.isArray(value) ? 'nested arrays are' : 'objects are'
  return violation('nested-value', `invalid value for attribute ${show(name)}: ${what} not attribute values`)
}

const INT_MIN = -(2n ** 63n)
const INT_MAX = 2n ** 63n - 1n
const UINT_MAX = 2n ** 64n - 1n

/** Whether a non-null value fits a type. Integers beyond 2^53 are bigints (json.ts). */
export function fitsType(type: string, value: unknown): boolean {
  if (type.startsWith('[]')) {
    const inner = type.slice(2)
    return Array.isArray(value) && value.every((v) => v !== null && fitsType(inner, v))
  }
  switch (type) {
    case 'string':
      return typeof value === 'string'
    case 'int':
      if (typeof value === 'bigint') return value >= INT_MIN && value <= INT_MAX
      return typeof value === 'number' && Number.isSafeInteger(value)
    case 'uint':
      if (typeof value === 'bigint') return value >= 0n && value <= UINT_MAX
      return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
    case 'float':
      return (typeof value === 'number' && Number.isFinite(value)) || typeof value === 'bigint'
    case 'bool':
      return typeof value === 'boolean'
    case 'uuid':
      return typeof value === 'string' && isUuid(value)
    case 'datetime':
      return typeof value === 'string' && DATETIME.test(value) && !Number.isNaN(datetimeMs(value))
    default:
      return false
  }
}

/** Whether an attribute is indexed for filtering: by default yes, unless it has full-text search. */
export function isFilterable(cfg: AttrConfig): boolean {
  return cfg.filterable ?? !cfg.full_text_search
}

/** Checks a value against its attribute: type, then the size rules. Returns its size (turbopuffer/sizes.ts). */
export function checkValue(name: string, cfg: AttrConfig, value: unknown): number {
  if (value === null || value === undefined) return 0
  const type = cfg.type
  if (!fitsType(type, value)) {
    const got = inferType(name, value) // throws for nested arrays, objects and mixed arrays
    const shown = typeof value === 'bigint' ? String(value) : show(value)
    // same kind of value, out of its range (a negative uint, an int beyond 64 bits): not a type change
    if (got === undefined || got === type.replace('uint', 'int')) {
      throw violation('attribute-type', `invalid value for attribute ${show(name)} of type ${type}: ${shown}`)
    }
    throw violation('attribute-type', `invalid value for attribute ${show(name)}: cannot change type ${type} to ${got}`)
  }
  // strings count their UTF-8 bytes (measured once: for the filterable limit and the value's size); numbers, bools
  // and other elements 8 bytes each
  let bytes: number
  if (type === 'string' || type === '[]string') {
    const limit = isFilterable(cfg) ? LIMITS.filterableValueBytes : Infinity
    bytes = 0
    for (const s of typeof value === 'string' ? [value] : value as string[]) {
      const b = valueBytes(s)
      if (b > limit) {
        throw violation(
          'filterable-value-size',
          `invalid value for filterable attribute ${show(name)}: ${b} bytes, the limit is ${limit}; ` +
            'declare it {"filterable": false} or full_text_search to store longer text',
        )
      }
      bytes += b
    }
  } else bytes = valueBytes(value)
  if (bytes > LIMITS.valueBytes) {
    throw violation(
      'value-size',
      `invalid value for attribute ${show(name)}: ${bytes} bytes, the limit is ${LIMITS.valueBytes}`,
    )
  }
  return bytes
}

/** Turns a stored value into something `compareScalars` orders correctly (datetimes by instant). */
export function orderKey(type: string | undefined, value: unknown): unknown {
  if (typeof value !== 'string') return value
  if (type === 'datetime' || type === '[]datetime') return datetimeMs(value)
  if (type === 'uuid' || type === '[]uuid') return value.toLowerCase().replaceAll('-', '')
  return value
}

/** Milliseconds since the epoch; a datetime without a zone is UTC (JavaScript would read it as local time). */
export function datetimeMs(value: string): number {
  const s = value.replace(' ', 'T')
  const hasZone = /(Z|[+-]\d{2}:?\d{2})$/.test(s) && s.includes('T')
  return Date.parse(s.includes('T') && !hasZone ? s + 'Z' : s)
}
