// The attribute schema sent with every write. turbopuffer infers a type from the first value it sees (5.00 would
// pin `int`, and a later 9.99 then fails), so every type puffgres knows is declared.
import type { Mapping } from '../config/load.ts'
import { tpufType } from '../postgres/values.ts'

export function namespaceSchema(
  mapping: Mapping,
  columns: readonly { name: string; typeOid: number; typeName?: string }[] | undefined,
): Record<string, unknown> {
  const schema: Record<string, unknown> = {}
  // without a transform the attributes are the row's columns, so their PostgreSQL types say what they are
  if (!mapping.transform && columns) {
    const wanted = mapping.columns ? new Set(mapping.columns) : undefined
    for (const c of columns) {
      if (c.name === 'id' || c.name === 'vector' || (wanted && !wanted.has(c.name))) continue
      const t = tpufType(c.typeOid, c.typeName)
      if (t) schema[c.name] = t
    }
  }
  return { ...schema, ...mapping.schemaHints }
}
