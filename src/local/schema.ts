// Attribute types: inferred from the first value written unless declared, then enforced on every write.
import { badRequest, show } from './errors.ts'
import { isUuid } from './ids.ts'

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
const encoder = new TextEncoder()
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
  if (name.length === 0) throw badRequest('invalid attribute name "": names must not be empty')
  if (name.startsWith('$')) throw badRequest(`invalid attribute name ${show(name)}: names must not start with '$'`)
  // Plain objects hold documents here; this one name would set their prototype instead of an attribute.
  if (name === '__proto__') throw badRequest('invalid attribute name "__proto__": not supported by the local server')
  if (encoder.encode(name).length > 128) throw badRequest(`invalid attribute name ${show(name)}: at most 128 bytes`)
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
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float'
  if (Array.isArray(value)) {
    const first = value.find((v) => v !== null)
    if (first === undefined) return undefined
    const t = inferType(name, first)
    if (t === undefined || t.startsWith('[]')) throw unsupported(name, value)
    return '[]' + t
  }
  throw unsupported(name, value)
}

function unsupported(name: string, value: unknown) {
  return badRequest(`invalid value for attribute ${show(name)}: unsupported value ${show(value)}`)
}

/** Whether a non-null value fits a type. */
export function fitsType(type: string, value: unknown): boolean {
  if (type.startsWith('[]')) {
    const inner = type.slice(2)
    return Array.isArray(value) && value.every((v) => v !== null && fitsType(inner, v))
  }
  switch (type) {
    case 'string':
      return typeof value === 'string'
    // integers beyond 2^53 are valid 64-bit values on the wire; JSON.parse rounds them here (documented)
    case 'int':
      return typeof value === 'number' && Number.isInteger(value) && Math.abs(value) <= 2 ** 63
    case 'uint':
      return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < 2 ** 64
    case 'float':
      return typeof value === 'number' && Number.isFinite(value)
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

export function checkValue(name: string, type: string, value: unknown): void {
  if (value === null) return
  if (!fitsType(type, value)) {
    throw badRequest(`invalid value for attribute ${show(name)} of type ${type}: ${show(value)}`)
  }
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
