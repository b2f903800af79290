// The conditions and filters of a write request that keep an older version from overwriting or deleting a newer one
// (docs/ARCHITECTURE.md, invariants 2 and 11): per-id upsert, delete and patch conditions, and the row filter of
// row-documents mode.
import type { Filter } from '@turbopuffer/turbopuffer'
import { EMBED_HASH_ATTR, type Id, ROW_ATTR, VERSION_ATTR } from '../types.ts'
import { wireId } from './wire-ids.ts'

/** Applies when the stored document is older, or when there is none (docs/ARCHITECTURE.md, invariant 2). */
export const UPSERT_CONDITION: Filter = ['Or', [[VERSION_ATTR, 'Lt', { $ref_new: VERSION_ATTR }], [
  VERSION_ATTR,
  'Eq',
  null,
]]]

/** Deletes of one transaction (same commit LSN: the version's first 16 hex digits) share one clause. */
export function deleteGroup(version: string): string {
  return version.slice(0, 16)
}

/**
 * A request has one delete_condition, evaluated against each targeted document, and `$ref_new` is null for deletes,
 * so versions appear as literals. Deletes are grouped by transaction (commit LSN) and each group is compared with the
 * highest version in it: `Or(And(id In [ids of the group], v Lt max), ...)`, or plain `[v, Lt, max]` for one group.
 * (`delete_by_filter` cannot do this: it is unconditional per document.)
 *
 * Comparing a delete at (C, s) with (C, max) instead of its own version is safe for the batches puffgres sends: a
 * document whose version lies between the two was written by a later change of the same id in the same transaction,
 * which falls inside the same contiguous, per-id-coalesced batch, so no delete of that id would be in the batch at
 * all. This keeps a bulk DELETE to one clause instead of one per row; `Limits.maxDeleteVersions` bounds the clauses.
 */
export function deleteCondition(deletes: Array<{ id: Id; version: string }>): Filter {
  const groups = new Map<string, { max: string; ids: Id[] }>()
  for (const d of deletes) {
    const key = deleteGroup(d.version)
    const g = groups.get(key)
    if (!g) groups.set(key, { max: d.version, ids: [d.id] })
    else {
      g.ids.push(d.id)
      if (d.version > g.max) g.max = d.version
    }
  }
  if (groups.size === 1) return [VERSION_ATTR, 'Lt', [...groups.values()][0].max]
  const clauses: Filter[] = []
  for (const { max, ids } of groups.values()) {
    const wire = ids.map(wireId)
    const idFilter: Filter = wire.length === 1 ? ['id', 'Eq', wire[0]] : ['id', 'In', wire]
    clauses.push(['And', [idFilter, [VERSION_ATTR, 'Lt', max]]])
  }
  return ['Or', clauses]
}

/**
 * Row-documents mode: the filter that deletes each row's documents older than its version, grouped by transaction
 * like `deleteCondition` and for the same reason: `Or(And(_puffgres_row In [keys of the group], v Lt max), ...)`.
 * The version is in the filter because no condition guards `delete_by_filter` (docs/ARCHITECTURE.md, invariant 11):
 * a late write of an older version deletes nothing newer. A row at (C, s) compared with (C, max): a document of the
 * row with a version between is a later change of the same row in the same transaction, collapsed into this batch.
 */
export function rowsFilter(rows: Array<{ id: Id; version: string; spare?: Id[] }>): Filter {
  const groups = new Map<string, { max: string; keys: string[]; spare: Id[] }>()
  for (const r of rows) {
    const key = deleteGroup(r.version)
    const g = groups.get(key)
    if (!g) groups.set(key, { max: r.version, keys: [String(r.id)], spare: [...r.spare ?? []] })
    else {
      g.keys.push(String(r.id))
      if (r.spare) g.spare.push(...r.spare)
      if (r.version > g.max) g.max = r.version
    }
  }
  const clauses: Filter[] = []
  for (const { max, keys, spare } of groups.values()) {
    const row: Filter = keys.length === 1 ? [ROW_ATTR, 'Eq', keys[0]] : [ROW_ATTR, 'In', keys]
    const clause: Filter[] = [row, [VERSION_ATTR, 'Lt', max]]
    // embeddings paid once: the documents patched in the same request must not be deleted before the patch (the
    // filter runs first); sparing ids of other rows of the group is harmless, they are patched too
    if (spare.length) clause.push(['id', 'NotIn', spare.map(wireId)])
    clauses.push(['And', clause])
  }
  return clauses.length === 1 ? clauses[0] : ['Or', clauses]
}

/**
 * A patch applies only over an older version, and never creates a document: one that went away since its stored
 * hash was read comes back short in `rows_patched` and is redone as an upsert with its vector (pipeline/writer.ts).
 * It also applies only while the document still carries the hash it was chosen for: a write of another text that
 * landed between the lookup and the patch (a racing writer at a version between the two) left that text's vector,
 * which the patch would otherwise keep under the new text's hash; such a patch is redone as an upsert too.
 */
export const PATCH_CONDITION: Filter = [
  'And',
  [[VERSION_ATTR, 'Lt', { $ref_new: VERSION_ATTR }], [EMBED_HASH_ATTR, 'Eq', { $ref_new: EMBED_HASH_ATTR }]],
]
