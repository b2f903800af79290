// The attribute schema of a mapping's namespace, derived from the source table's column TYPES (never from a value),
// the same way for backfill and the stream, then overridden by `[target.schema]`. turbopuffer infers a type from
// the first value it sees (5.00 would pin `int`, and a later 9.99 then fails), so every type puffgres knows is
// declared. See README "How PostgreSQL types map to turbopuffer".
import type { Mapping } from '../config/load.ts'
import { CHUNK_ATTR, EMBED_HASH_ATTR } from '../types.ts'
import type { ColumnType } from '../source/mod.ts'
import { arrayElementOid, OID, resolveTypeOid, tpufType } from '../postgres/values.ts'
import { FIRST_NON_BUILTIN_OID } from '../postgres/type-oids.ts'

export type { ColumnType }

/** One attribute's entry in a write's `schema`. */
export interface AttributeSpec {
  type: string
  filterable?: boolean
  full_text_search?: unknown
  [option: string]: unknown
}

/** How a column's values are sent, besides its declared type. */
export type ValueForm = 'value' | 'json-text'

export interface ColumnAttribute {
  column: string
  /** the PostgreSQL type as shown to users (`varchar(20)`, `jsonb`, `citext`, `_int4`, ...) */
  pgType: string
  spec: AttributeSpec
  form: ValueForm
  /** came from `[target.schema]` */
  overridden?: true
}

/** turbopuffer refuses filterable string values over this many bytes. */
export const MAX_FILTERABLE_BYTES = 4096

/** Extension types whose values have no length bound (others, e.g. enums, are short labels). */
const UNBOUNDED_EXTENSION_TYPES = new Set(['citext', 'hstore', 'ltree', 'tsvector', 'geometry', 'geography'])

/** Builtin types with text of a bounded, short length: filterable as strings. */
const BOUNDED_BUILTINS = new Set<number>([
  OID.name,
  OID.char,
  OID.numeric,
  OID.date,
  OID.time,
  OID.timetz,
  OID.interval,
  OID.money,
  OID.uuid,
  869, // inet
  650, // cidr
  829, // macaddr
  774, // macaddr8
  1560, // bit
  1562, // varbit (bounded by typmod in practice; values are 0/1 digits)
])

const VARHDRSZ = 4

/**
 * Whether a string column's values stay within turbopuffer's 4096-byte limit for filterable strings by TYPE:
 * varchar(n)/char(n) when 4·n ≤ 4096 (UTF-8 takes at most 4 bytes a character), short builtin types and extension
 * types that are labels (enums). text, varchar/char without a length, bytea, json, jsonb, xml, citext: no.
 */
function boundedText(oid: number, typeName: string | undefined, typmod: number): boolean {
  if (oid === OID.varchar || oid === OID.bpchar) return typmod >= VARHDRSZ && (typmod - VARHDRSZ) * 4 <= 4096
  if (BOUNDED_BUILTINS.has(oid)) return true
  if (oid < FIRST_NON_BUILTIN_OID) return false
  return !(typeName && UNBOUNDED_EXTENSION_TYPES.has(typeName))
}

/** The attribute a column becomes (no transform), or undefined when none (pgvector vectors: the document vector). */
export function columnAttribute(c: ColumnType): ColumnAttribute | undefined {
  const type = tpufType(c.typeOid, c.typeName)
  const oid = resolveTypeOid(c.typeOid, c.typeName)
  const typmod = c.typmod ?? -1
  const pgType = pgTypeLabel(c)
  const element = arrayElementOid(oid, c.typeName)
  if (element !== undefined) {
    // arrays of json have no turbopuffer array type: the array is sent as its JSON text
    if (element === OID.json || element === OID.jsonb || type === undefined) {
      if (type === undefined && !(element === OID.json || element === OID.jsonb)) return undefined
      return { column: c.name, pgType, spec: { type: 'string', filterable: false }, form: 'json-text' }
    }
    const elementName = c.typeName?.startsWith('_') ? c.typeName.slice(1) : undefined
    const spec: AttributeSpec = { type }
    if (type === '[]string' && !boundedText(element, elementName, typmod)) spec.filterable = false
    return { column: c.name, pgType, spec, form: 'value' }
  }
  if (oid === OID.json || oid === OID.jsonb) {
    return { column: c.name, pgType, spec: { type: 'string', filterable: false }, form: 'json-text' }
  }
  if (type === undefined) return undefined
  const spec: AttributeSpec = { type }
  if (type === 'string' && !boundedText(oid, c.typeName, typmod)) spec.filterable = false
  return { column: c.name, pgType, spec, form: 'value' }
}

/** type OID → its name in OID (the first, where two names share an OID); built once: labels are per batch */
let oidNames: Map<number, string> | undefined

function pgTypeLabel(c: ColumnType): string {
  const oid = resolveTypeOid(c.typeOid, c.typeName)
  if (!oidNames) {
    oidNames = new Map()
    for (const [n, o] of Object.entries(OID)) if (!oidNames.has(o)) oidNames.set(o, n)
  }
  const name = oidNames.get(oid) ?? c.typeName ?? `oid ${c.typeOid}`
  const typmod = c.typmod ?? -1
  if ((oid === OID.varchar || oid === OID.bpchar) && typmod >= VARHDRSZ) return `${name}(${typmod - VARHDRSZ})`
  return name
}

/** `"float"` or `{ type = "float", ... }` → one spec. */
export function normalizeSpec(hint: unknown): AttributeSpec {
  if (typeof hint === 'string') return { type: hint }
  return { ...(hint as AttributeSpec) }
}

/**
 * The attributes of a mapping: without a transform, one per column the mapping copies (typed from the column's
 * PostgreSQL type); then `[target.schema]`, which overrides a column's entry or declares a transform's attribute.
 */
export function mappingAttributes(
  mapping: Pick<Mapping, 'transform' | 'columns' | 'schemaHints' | 'chunking'> & Partial<Pick<Mapping, 'embedding'>>,
  columns: readonly ColumnType[] | undefined,
): Map<string, ColumnAttribute> {
  const out = new Map<string, ColumnAttribute>()
  if (!mapping.transform && columns) {
    const wanted = mapping.columns ? new Set(mapping.columns) : undefined
    for (const c of columns) {
      if (c.name === 'id' || c.name === 'vector' || (wanted && !wanted.has(c.name))) continue
      const a = columnAttribute(c)
      if (a) out.set(c.name, a)
    }
  }
  const chunking = mapping.chunking
  if (chunking) {
    // chunk documents (pipeline/transform/chunk-documents.ts): the chunk's text instead of the source columns (a
    // chunk may pass 4 KiB: not filterable unless [target.schema] says otherwise), and its number
    for (const source of typeof chunking.source === 'string' ? [chunking.source] : chunking.source) out.delete(source)
    const text: AttributeSpec = { type: 'string', filterable: false }
    out.set(chunking.attribute, { column: chunking.attribute, pgType: '(chunk text)', spec: text, form: 'value' })
    out.set(CHUNK_ATTR, { column: CHUNK_ATTR, pgType: '(chunk number)', spec: { type: 'uint' }, form: 'value' })
  }
  if (mapping.embedding) {
    // embeddings paid once: the hash of the text each document's vector was embedded from (filterable: a short hex)
    out.set(EMBED_HASH_ATTR, {
      column: EMBED_HASH_ATTR,
      pgType: '(embedded text hash)',
      spec: { type: 'string' },
      form: 'value',
    })
  }
  for (const [name, hint] of Object.entries(mapping.schemaHints ?? {})) {
    const base = out.get(name)
    const spec = normalizeSpec(hint)
    out.set(name, {
      column: name,
      pgType: base?.pgType ?? '(transform)',
      spec,
      form: base?.form ?? 'value',
      overridden: true,
    })
  }
  return out
}

/** The `schema` a write declares for the mapping. */
export function namespaceSchema(
  mapping: Pick<Mapping, 'transform' | 'columns' | 'schemaHints' | 'chunking'> & Partial<Pick<Mapping, 'embedding'>>,
  columns: readonly ColumnType[] | undefined,
): Record<string, AttributeSpec> {
  const schema: Record<string, AttributeSpec> = {}
  for (const [name, a] of mappingAttributes(mapping, columns)) schema[name] = a.spec
  return schema
}

/** One line per attribute, for `migrate --dry-run` and `status`: `body text → string (filterable: false)`. */
export function describeAttribute(name: string, a: ColumnAttribute): string {
  const opts = Object.entries(a.spec).filter(([k]) => k !== 'type').map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
  const form = a.form === 'json-text' ? ', JSON text' : ''
  return `${name} ${a.pgType} → ${a.spec.type}${opts.length ? ` (${opts.join(', ')})` : ''}${form}${
    a.overridden ? ' [target.schema]' : ''
  }`
}
