// Embeddings paid once (docs/ARCHITECTURE.md): which of a request's patches did not apply. A document sent as a patch
// keeps its stored vector; one that went away since its hash was read is not patched (a patch never creates a
// document), and the writer sends it again as an upsert with its vector.
import { type Id, idKey, type WriteOp } from '../types.ts'
import type { PreparedOp } from './write-plan.ts'
import { BIGINT_MARK } from './wire-ids.ts'

/**
 * The patches of a request that did not apply (embeddings paid once): each op with the ids of its patched documents
 * the response does not list in `patched_ids` (all of them when it lists none and `rows_patched` is short).
 */
export function unappliedPatches(
  chunk: PreparedOp[],
  res: { rows_patched?: number; patched_ids?: unknown[] },
): Array<{ op: WriteOp; ids: Id[] }> {
  const sent: Array<{ op: WriteOp; ids: Id[] }> = []
  let count = 0
  for (const p of chunk) {
    const ids = p.patch ? [p.row!.id as Id] : p.patches?.map((r) => r.id as Id)
    if (ids?.length) {
      sent.push({ op: p.op, ids })
      count += ids.length
    }
  }
  if (!count || (res.rows_patched ?? 0) >= count) return []
  const applied = new Set((res.patched_ids ?? []).map((id) => idKey(id as Id)))
  const out: Array<{ op: WriteOp; ids: Id[] }> = []
  for (const s of sent) {
    const ids = s.ids.filter((id) => !applied.has(idKey(unmark(id))))
    if (ids.length) out.push({ op: s.op, ids: ids.map(unmark) })
  }
  return out
}

/** An id as the op holds it (a bigint id was marked for the wire). */
function unmark(id: Id): Id {
  return typeof id === 'string' && id.startsWith(BIGINT_MARK) ? BigInt(id.slice(BIGINT_MARK.length)) : id
}
