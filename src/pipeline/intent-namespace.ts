// Where an intent's write goes (issue 24, docs/ARCHITECTURE.md "One write of a row: one request per namespace"): an
// upsert to the namespace of the row's new values, a delete (or a row leaving the membership) to the one of its old
// values. A fixed namespace is the mapping's name whatever the row.
import type { Intent } from './changes.ts'
import { type RowNamespace, rowNamespace } from './row-namespace.ts'

/** The namespace the intent writes to, or why the row has none (a dead letter naming the row, value and fix). */
export function intentNamespace(i: Intent): RowNamespace {
  const m = i.route.mapping
  if (!m.namespaceTemplate) return { ok: true, namespace: m.namespace }
  const row = i.kind === 'upsert' ? i.event.new : i.event.old ?? i.event.new
  return rowNamespace(m, row, i.id)
}
