// Canonical forms of documents for comparing what a namespace holds with what the mapping would write: null
// attributes dropped (turbopuffer does not keep them), keys sorted, datetimes as ISO instants, vectors at float32
// precision (turbopuffer stores f32), bytes as base64, integers beyond 2^53 as numbers on both sides.
import { createHash } from 'node:crypto'
import { Buffer } from 'node:buffer'

function canonical(v: unknown, type?: string): unknown {
  if (v === null || v === undefined) return undefined
  if (typeof v === 'bigint') return Number(v)
  if (v instanceof Date) return v.toISOString()
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64')
  if (Array.isArray(v)) {
    const el = type?.startsWith('[]') ? type.slice(2) : undefined
    return v.map((x) => canonical(x, el) ?? null)
  }
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(v as object).sort()) {
      const c = canonical((v as Record<string, unknown>)[k])
      if (c !== undefined) out[k] = c
    }
    return out
  }
  if (type === 'datetime' && typeof v === 'string') {
    const t = Date.parse(v)
    return Number.isNaN(t) ? v : new Date(t).toISOString()
  }
  return v
}

function schemaType(schema: Record<string, unknown>, attr: string): string | undefined {
  const t = schema[attr]
  if (typeof t === 'string') return t
  if (t && typeof t === 'object' && typeof (t as { type?: unknown }).type === 'string') {
    return (t as { type: string }).type
  }
  return undefined
}

/** Attribute name → canonical JSON of its value; absent (null) attributes are left out. */
export function canonicalAttributes(
  doc: Record<string, unknown>,
  schema: Record<string, unknown>,
): Map<string, string> {
  const out = new Map<string, string>()
  for (const k of Object.keys(doc).sort()) {
    let v = doc[k]
    if (k === 'vector' && Array.isArray(v)) v = v.map((x) => (typeof x === 'number' ? Math.fround(x) : x))
    const c = canonical(v, schemaType(schema, k))
    if (c !== undefined) out.set(k, JSON.stringify(c))
  }
  return out
}

function hashText(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 16)
}

/** Per-attribute hashes and the document's content hash (over sorted names and values). */
export function contentHash(attrs: Map<string, string>): { hash: string; attrs: Record<string, string> } {
  const per: Record<string, string> = {}
  let all = ''
  for (const [k, v] of attrs) {
    per[k] = hashText(v)
    all += JSON.stringify(k) + ':' + v + ','
  }
  return { hash: hashText(all), attrs: per }
}
