// delete_by_filter and patch_by_filter as turbopuffer applies them: first the deletes, then the patches, then the
// per-id operations, all in one atomic request; `*_condition` does not guard them (a version check belongs in the
// filter itself, docs/ARCHITECTURE.md, invariant 11); one request changes at most LIMITS.deleteByFilterRows /
// LIMITS.patchByFilterRows documents: more fails the whole request unless `*_allow_partial` is true, which applies
// the first documents by id up to the limit and answers `rows_remaining: true`.
import { show } from './errors.ts'
import { compareIds } from './ids.ts'
import type { Doc } from './namespace.ts'
import { LIMITS, violation } from './rules.ts'

export interface ByFilterLimits {
  /** documents one delete_by_filter may delete */
  deleteRows: number
  /** documents one patch_by_filter may patch */
  patchRows: number
}

export const BY_FILTER_LIMITS: ByFilterLimits = {
  deleteRows: LIMITS.deleteByFilterRows,
  patchRows: LIMITS.patchByFilterRows,
}

/** Checks a lowered limit (a server may only be stricter than the service). */
export function checkByFilterLimits(limits: Partial<ByFilterLimits> | undefined): ByFilterLimits {
  const out = { ...BY_FILTER_LIMITS, ...limits }
  for (const [key, most] of [['deleteRows', LIMITS.deleteByFilterRows], ['patchRows', LIMITS.patchByFilterRows]]) {
    const v = out[key as keyof ByFilterLimits]
    if (!Number.isInteger(v) || v < 1 || v > (most as number)) {
      throw new Error(`invalid byFilterLimits.${key} ${v}: expected an integer from 1 to ${most}`)
    }
  }
  return out
}

export type ByFilterKind = 'delete_by_filter' | 'patch_by_filter'

/** `*_allow_partial`: absent is false; anything but a boolean is refused. */
export function allowPartial(body: Record<string, unknown>, kind: ByFilterKind): boolean {
  const key = `${kind}_allow_partial`
  const v = body[key]
  if (v === undefined) return false
  if (typeof v !== 'boolean') {
    throw violation('by-filter-shape', `invalid ${key}: expected true or false, got ${show(v)}`)
  }
  return v
}

/** The `{filters, patch}` of a patch_by_filter, checked. */
export function patchByFilterParts(value: unknown): { filters: unknown; patch: Record<string, unknown> } {
  const pbf = value as { filters?: unknown; patch?: unknown }
  const isObj = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v)
  if (!isObj(pbf) || pbf.filters === undefined || !isObj(pbf.patch)) {
    throw violation('by-filter-shape', 'invalid patch_by_filter: expected {"filters": [...], "patch": {...}}')
  }
  const extra = Object.keys(pbf).filter((k) => k !== 'filters' && k !== 'patch')
  if (extra.length > 0) throw violation('by-filter-shape', `invalid patch_by_filter: unknown field ${show(extra[0])}`)
  const patch = { ...(pbf.patch as Record<string, unknown>) }
  if ('id' in patch) throw violation('by-filter-shape', 'invalid patch_by_filter: the patch cannot change "id"')
  if ('vector' in patch) {
    throw violation('patch-vector', 'invalid patch_by_filter: a vector cannot be patched; upsert the whole document')
  }
  return { filters: pbf.filters, patch }
}

/**
 * The documents one by-filter operation changes: every match, or with allow_partial the first `limit` by id and
 * whether more remain. Over the limit without allow_partial, the request fails whole.
 */
export function selectMatches(
  kind: ByFilterKind,
  matched: Doc[],
  limit: number,
  partial: boolean,
): { docs: Doc[]; remaining: boolean } {
  if (matched.length <= limit) return { docs: matched, remaining: false }
  if (!partial) {
    const verb = kind === 'delete_by_filter' ? 'delete' : 'patch'
    throw violation(
      'by-filter-limit',
      `${kind} matched ${matched.length} documents, more than the ${limit} one request may ${verb}: ` +
        `set ${kind}_allow_partial to true and repeat the request while rows_remaining is true`,
    )
  }
  return { docs: [...matched].sort((a, b) => compareIds(a.id, b.id)).slice(0, limit), remaining: true }
}
