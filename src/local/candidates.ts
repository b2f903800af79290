// Narrows the documents a filter can match through equality lookups, so that a write by filter or a query on
// `["_puffgres_row", "Eq", X]` (a row's chunks, docs/ARCHITECTURE.md "A row's documents") costs the row's documents,
// not a pass over the whole namespace. Only exact cases narrow: `id` Eq/In, and Eq/In of string literals on an
// attribute of type `string` (where the filter's equality is plain string equality); an `And` narrows by its
// narrowest part, an `Or` when all of its parts narrow. Anything else answers undefined: test every document. The
// caller applies the filter to the candidates in every case.
import type { Namespace } from './namespace.ts'
import type { Schema } from './schema.ts'

/** The keys of the documents that can match `filter`, or undefined when it does not narrow. */
export function candidateKeys(filter: unknown, ns: Namespace, schema: Schema): ReadonlySet<string> | undefined {
  if (!Array.isArray(filter)) return undefined
  if (filter.length === 2 && (filter[0] === 'And' || filter[0] === 'Or') && Array.isArray(filter[1])) {
    const parts = (filter[1] as unknown[]).map((f) => candidateKeys(f, ns, schema))
    if (filter[0] === 'And') {
      let best: ReadonlySet<string> | undefined
      for (const p of parts) if (p && (!best || p.size < best.size)) best = p
      return best
    }
    if (parts.length === 0 || parts.some((p) => p === undefined)) return undefined
    const union = new Set<string>()
    for (const p of parts) for (const k of p!) union.add(k)
    return union
  }
  if (filter.length !== 3) return undefined
  const [attr, op, value] = filter
  if (op !== 'Eq' && op !== 'In') return undefined
  const values: unknown[] | undefined = op === 'Eq' ? [value] : Array.isArray(value) ? value : undefined
  if (!values) return undefined
  const out = new Set<string>()
  if (attr === 'id') {
    if (!ns.meta.idType) return undefined
    for (const v of values) {
      const ok = typeof v === 'string' || typeof v === 'bigint' || (typeof v === 'number' && Number.isSafeInteger(v))
      if (!ok) return undefined
      const key = ns.key(v as string | number | bigint)
      if (ns.docs.has(key)) out.add(key)
    }
    return out
  }
  if (typeof attr !== 'string' || !Object.hasOwn(schema, attr) || schema[attr].type !== 'string') return undefined
  if (!values.every((v) => typeof v === 'string')) return undefined
  for (const v of values as string[]) for (const k of ns.keysWhere(attr, v)) out.add(k)
  return out
}
