// Where an intent's write goes (issue 24, docs/ARCHITECTURE.md "One write of a row: one request per namespace"): an
// upsert to the namespace of the row's new values, a delete (or a row leaving the membership) to the one of its old
// values; and the namespaces the row leaves first (a tenant move: its old values named another). A fixed namespace is
// the mapping's name whatever the row.
import type { Intent } from './changes.ts'
import type { Row } from '../types.ts'
import { type RowNamespace, rowNamespace } from './row-namespace.ts'

/** The namespace the intent writes to, or why the row has none (a dead letter naming the row, value and fix). */
export function intentNamespace(i: Intent): RowNamespace {
  const m = i.route.mapping
  if (!m.namespaceTemplate) return { ok: true, namespace: m.namespace }
  if (i.namespace !== undefined) return { ok: true, namespace: i.namespace }
  const row = i.kind === 'upsert' ? i.event.new : i.event.old ?? i.event.new
  return rowNamespace(m, row, i.id)
}

const NO_LEAVES: readonly string[] = Object.freeze([])

/**
 * The namespaces the row leaves before this write, by a versioned delete in each: `i.leave` without the namespace
 * written to (a row that moved back needs no delete where its replacement goes).
 */
export function leavingNamespaces(i: Intent, target: RowNamespace): readonly string[] {
  // most rows leave nothing: one shared empty list, not one per row of every batch
  if (!i.leave?.length) return NO_LEAVES
  return i.leave.filter((n, k) => (!target.ok || n !== target.namespace) && i.leave!.indexOf(n) === k)
}

/**
 * A pending change of a row replaced by a later one of the same row (stream/inflight.ts collapses them): the later
 * one must still take the row out of every namespace the earlier one would have left or written to, or a tenant
 * move collapsed into the next change would leave a copy behind. Returns whether the later one now leaves a namespace
 * it would not leave on its own: then the earlier change's commit must not be confirmed before the later write
 * lands (a restart would replay the later change alone, and the copy would stay).
 */
export function carryLeaves(earlier: Intent, later: Intent): boolean {
  if (!earlier.route.mapping.namespaceTemplate) return false
  const at = intentNamespace(earlier)
  const own = later.leave ?? []
  const all = [...own, ...(earlier.leave ?? []), ...(at.ok ? [at.namespace] : [])]
  const target = intentNamespace(later)
  const leave = [...new Set(all)].filter((n) => !target.ok || n !== target.namespace)
  later.leave = leave.length ? leave : undefined
  // a transform may name the document after the values (the tenant in its id): the earlier change's values go along,
  // so that the transform names the document each namespace left had (leaves.ts)
  if (leave.length && earlier.route.mapping.transform) later.leftRows = leftRowsOf(earlier, later, leave)
  return leave.some((n) => !own.includes(n))
}

/**
 * The values the row had in the namespaces it `leave`s, one row per namespace (the earliest that names it): a row
 * changed many times while pending (a hot row, held behind its write in flight) would otherwise carry every version
 * it had, copied at each change (quadratic) and each transformed when written. Values naming the namespace written
 * to, or none, name no document to delete.
 */
function leftRowsOf(earlier: Intent, later: Intent, leave: readonly string[]): Row[] | undefined {
  const m = earlier.route.mapping
  const kept = new Map<string, Row>()
  const keep = (row: Row | undefined) => {
    if (!row) return
    const at = rowNamespace(m, row)
    if (at.ok && !kept.has(at.namespace) && leave.includes(at.namespace)) kept.set(at.namespace, row)
  }
  for (const row of earlier.leftRows ?? []) keep(row)
  keep(earlier.event.old)
  keep(earlier.event.new)
  for (const row of later.leftRows ?? []) keep(row)
  return kept.size ? [...kept.values()] : undefined
}
