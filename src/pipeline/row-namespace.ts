// The namespace of one row of a mapping (issue 24, docs/ARCHITECTURE.md "A row's documents"): the fixed name, or the
// `[target] namespace` template filled from the row's values. The one function every writer asks (the stream for a
// change's new and old values, backfill, `dlq retry`, `verify`), so that a row's namespace has one definition.
import type { Mapping } from '../config/load.ts'
import { renderNamespace } from '../config/row-documents.ts'
import type { Id, Row } from '../types.ts'

export type RowNamespace = { ok: true; namespace: string } | { ok: false; error: string }

/**
 * The namespace `row` belongs in. A fixed namespace needs no row. With a template: a NULL, a value that is not text
 * or a whole number, or a name turbopuffer does not take is `{ ok: false }` with one line naming the mapping, the row
 * (`id`, when known), the placeholder values and the fix: the caller dead-letters the row with it.
 */
export function rowNamespace(
  m: Pick<Mapping, 'name' | 'namespace' | 'namespaceTemplate'>,
  row: Row | undefined,
  id?: Id,
): RowNamespace {
  const template = m.namespaceTemplate
  if (!template) return { ok: true, namespace: m.namespace }
  const r = renderNamespace(template, '', (column) => row?.[column])
  if (r.ok) return r
  const values = template.columns.map((c) => `${c} = ${showValue(row?.[c])}`).join(', ')
  const which = id === undefined ? 'a row' : `row ${typeof id === 'string' ? JSON.stringify(id) : String(id)}`
  return { ok: false, error: `mapping ${m.name}: ${which} (${values}): ${r.error}` }
}

/** Whether the mapping routes rows to namespaces by their values (a `{column}` template). */
export function isTenantMapping(m: Pick<Mapping, 'namespaceTemplate'>): boolean {
  return m.namespaceTemplate !== undefined
}

function showValue(v: unknown): string {
  if (v === null || v === undefined) return 'NULL'
  if (typeof v === 'bigint') return String(v)
  const text = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v)
  return text.length > 80 ? text.slice(0, 77) + '...' : text
}
