// Puts a document's attribute values in the form its declared types (and the namespace's existing types) take:
// json as its PostgreSQL text, `[target.schema]` overrides converted exactly, values that cannot be sent refused
// with the column, the types and the fix. Nothing here looks at one value to choose a type.
import { Buffer } from 'node:buffer'
import type { Row } from '../types.ts'
import { sourceText } from '../postgres/values.ts'
import { type ColumnAttribute, MAX_FILTERABLE_BYTES } from './schema.ts'

export type Converted = { ok: true; value: unknown } | { ok: false; error: string }

const INT = /^[+-]?\d+$/
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/
const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i
const MIN_INT64 = -(1n << 63n)
const MAX_INT64 = (1n << 63n) - 1n
const MAX_UINT64 = (1n << 64n) - 1n

function show(v: unknown): string {
  const s = typeof v === 'bigint' ? v.toString() : typeof v === 'string' ? JSON.stringify(v) : jsonText(v)
  return s.length > 60 ? s.slice(0, 60) + '…' : s
}

/** JSON with bigints as bare integers (exact). */
export function jsonText(v: unknown): string {
  const marked = JSON.stringify(v, (_k, x) => typeof x === 'bigint' ? `\u0000big:${x}` : x)
  return marked.includes('\\u0000big:') ? marked.replace(/"\\u0000big:(-?\d+)"/g, '$1') : marked
}

function integer(v: unknown, min: bigint, max: bigint): bigint | undefined {
  let b: bigint | undefined
  if (typeof v === 'bigint') b = v
  else if (typeof v === 'number' && Number.isInteger(v)) b = BigInt(v)
  else if (typeof v === 'string' && INT.test(v.trim())) b = BigInt(v.trim())
  return b !== undefined && b >= min && b <= max ? b : undefined
}

const small = (b: bigint): number | bigint => b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : b

/** `v` as a value of turbopuffer type `type`, only when that is exact; an error saying why not otherwise. */
export function convertValue(v: unknown, type: string): Converted {
  if (v === null || v === undefined) return { ok: true, value: v }
  if (type.startsWith('[]')) {
    if (!Array.isArray(v)) return { ok: false, error: `${show(v)} is not an array` }
    const inner = type.slice(2)
    const out: unknown[] = []
    for (const x of v) {
      if (x === null) continue // turbopuffer arrays hold no nulls
      if (Array.isArray(x)) return { ok: false, error: 'a multi-dimensional array has no turbopuffer type' }
      const c = convertValue(x, inner)
      if (!c.ok) return c
      out.push(c.value)
    }
    return { ok: true, value: out }
  }
  const fail = (): Converted => ({ ok: false, error: `${show(v)} is not exactly a ${type}` })
  switch (type) {
    case 'string':
      if (typeof v === 'string') return { ok: true, value: v }
      if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') {
        return { ok: true, value: String(v) }
      }
      return { ok: true, value: jsonText(v) }
    case 'int': {
      const b = integer(v, MIN_INT64, MAX_INT64)
      return b === undefined ? fail() : { ok: true, value: small(b) }
    }
    case 'uint': {
      const b = integer(v, 0n, MAX_UINT64)
      return b === undefined ? fail() : { ok: true, value: small(b) }
    }
    case 'float': {
      if (typeof v === 'number') return Number.isFinite(v) ? { ok: true, value: v } : fail()
      if (typeof v === 'bigint') return BigInt(Number(v)) === v ? { ok: true, value: Number(v) } : fail()
      if (typeof v === 'string' && DECIMAL.test(v.trim())) {
        const n = Number(v.trim())
        return Number.isFinite(n) ? { ok: true, value: n } : fail()
      }
      return fail()
    }
    case 'bool':
      if (typeof v === 'boolean') return { ok: true, value: v }
      if (v === 't' || v === 'true') return { ok: true, value: true }
      if (v === 'f' || v === 'false') return { ok: true, value: false }
      return fail()
    case 'uuid':
      return typeof v === 'string' && UUID.test(v) ? { ok: true, value: v } : fail()
    case 'datetime':
      return typeof v === 'string' && /^\d{4}-\d\d-\d\d/.test(v) && !Number.isNaN(Date.parse(v))
        ? { ok: true, value: v }
        : fail()
    default:
      return { ok: true, value: v }
  }
}

function tooLongForFilter(v: unknown): boolean {
  if (typeof v === 'string') return v.length > MAX_FILTERABLE_BYTES / 4 && Buffer.byteLength(v) > MAX_FILTERABLE_BYTES
  return Array.isArray(v) && v.some(tooLongForFilter)
}

/**
 * Shapes an upsert's attributes in place: json columns as their PostgreSQL text, overridden attributes converted to
 * their declared type, and attributes whose type in the namespace differs from the declared one (`conflicts`:
 * name → the namespace's type, after an ALTER COLUMN TYPE) converted to the namespace's type. Returns an error for
 * a value that cannot be sent, naming the column, the types and the fix.
 */
export function shapeAttributes(
  attributes: Record<string, unknown>,
  row: Row | undefined,
  declared: ReadonlyMap<string, ColumnAttribute>,
  conflicts: ReadonlyMap<string, string> | undefined,
  identity: boolean,
): { error: string; conflict: boolean } | undefined {
  for (const name in attributes) {
    const a = declared.get(name)
    if (!a) continue
    let v = attributes[name]
    // json's text: a JSON null is the text "null" (a SQL NULL has no text and stays null)
    if (identity && a.form === 'json-text' && row) v = sourceText(row, name) ?? (v == null ? v : jsonText(row[name]))
    if (v === null || v === undefined) continue
    // decoded values already have their column's type; a multi-dimensional array arrives as JSON text
    if (a.overridden || a.form === 'json-text' || (typeof v === 'string' && a.spec.type.startsWith('[]'))) {
      const c = convertValue(v, a.spec.type)
      if (!c.ok) {
        const error =
          `column "${name}" (${a.pgType}, declared ${a.spec.type}${a.overridden ? ' in [target.schema]' : ''}): ` +
          `${c.error}; fix: declare the attribute's type in [target.schema] (e.g. ${name} = "string")`
        return { error, conflict: false }
      }
      v = c.value
    }
    const nsType = conflicts?.get(name)
    if (nsType !== undefined) {
      const c = convertValue(v, nsType)
      if (!c.ok) {
        const error = `column "${name}" is ${a.pgType} (${a.spec.type}) but the namespace's attribute "${name}" is ` +
          `${nsType}, and ${c.error}; fix: a new mapping version into a new namespace, built by puffgres reindex ` +
          `<mapping>, or ${name} = "${nsType}" in [target.schema]`
        return { error, conflict: true }
      }
      v = c.value
    }
    if (
      a.spec.filterable !== false && !a.spec.full_text_search &&
      (a.spec.type === 'string' || a.spec.type === '[]string')
    ) {
      if (tooLongForFilter(v)) {
        const error = `column "${name}" (${a.pgType}): a value over ${MAX_FILTERABLE_BYTES} bytes in a filterable ` +
          `attribute; fix: ${name} = { type = "${a.spec.type}", filterable = false } in [target.schema]`
        return { error, conflict: false }
      }
    }
    attributes[name] = v
  }
  return undefined
}
