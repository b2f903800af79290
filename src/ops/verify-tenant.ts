// `verify --tenant` (ops/verify.ts): one tenant's namespace checked without reading the other tenants' rows.
//
// The tenant's rows are read with a filter (pipeline/tenant-values.ts tenantFilter: the placeholder columns compared
// in SQL), so `expected` holds this namespace's documents only. A document found there that it does not expect (a
// "stray") is the stale copy of a row that moved to another tenant (misplaced), a document of a row that is gone or
// no member (extra), or one of a row whose documents cannot be judged (the DLQ has it). Telling which needs that
// row: strays are looked up by key (the row key their id names: the id itself, or `_puffgres_row` of a chunk) and
// projected like the pages, keeping only the strays' own ids. A transform may name documents otherwise (its id is no
// key), and a key text the id column's type refuses cannot be looked up: strays still unplaced then are placed by
// one read of the whole table, keeping nothing but them.
import { rowDocumentsMode } from '../config/row-documents.ts'
import type { Intent } from '../pipeline/changes.ts'
import { currentStateIntents } from '../pipeline/row-identity.ts'
import { documentKey, type RowKey, textKey } from '../pipeline/row-key.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import { stableLsn } from '../postgres/stable-lsn.ts'
import { keyTextRefused, readPage } from '../source/mod.ts'
import { type Id, idKey, type Logger } from '../types.ts'
import type { MappingRuntime } from './mapping-runtime.ts'
import type { Projection } from './verify-projection.ts'
import type { Expected, VerifyDeps } from './verify-repair.ts'

/** rows read by key per query */
const KEYS_AT_ONCE = 500

/** A document found in the checked namespace that the namespace's rows do not make. */
export interface Stray {
  id: Id
  /** its row's id text: the document id, or a chunk's `_puffgres_row` */
  row: string
}

export type Placement =
  | { kind: 'extra' }
  | { kind: 'misplaced'; belongs: string }
  /** its row's documents cannot be judged (a failure: the DLQ has it) */
  | { kind: 'unjudged' }
  /** its row routes here now: it moved in after the namespace's rows were read (changed while verify ran) */
  | { kind: 'changed' }

export interface Placed {
  placements: Placement[]
  /** rows looked up by key */
  lookedUp: number
  /** rows read by the whole-table read for the strays that no key found (0 when none was needed) */
  scanned: number
}

/** Where each stray of namespace `only` belongs (same order as `strays`). */
export async function placeStrays(
  deps: VerifyDeps,
  rt: MappingRuntime,
  projection: Projection,
  only: string,
  strays: readonly Stray[],
  opts: { pageSize: number; log: Logger },
): Promise<Placed> {
  const m = rt.mapping
  if (!strays.length) return { placements: [], lookedUp: 0, scanned: 0 }
  const wanted = new Set(strays.map((s) => idKey(s.id)))
  const elsewhere = new Map<string, Expected>()
  /** rows (id texts) whose documents cannot be judged */
  const unjudged = new Set<string>()
  const target = {
    keep: (k: string, e: Expected) => wanted.has(k) && elsewhere.set(k, e),
    failed: (id: string) => unjudged.add(id),
    unjudged: (id: string) => unjudged.add(id),
  }
  const lsn = await stableLsn(deps.sql, { log: opts.log })

  // by key: each row once, not the checked namespace's own rows (a chunk of one of them is extra: the row was read)
  const keys = new Map<string, RowKey>()
  /** some stray's row could not be looked up by key */
  let unlooked = false
  for (const s of strays) {
    if (keys.has(s.row) || projection.rowKeys.has(s.row)) continue
    const key = textKey(m, rt.plan.columns, documentKey(m, rowDocumentsMode(m) ? s.row : s.id).texts)
    // a key text that does not decode back to the same id names no row of this table by key
    if (key.id === undefined || String(key.id) !== s.row) unlooked = true
    else keys.set(s.row, key)
  }
  const all = [...keys.values()]
  for (let i = 0; i < all.length; i += KEYS_AT_ONCE) {
    const chunk = all.slice(i, i + KEYS_AT_ONCE)
    const dead: DeadLetter[] = []
    let current: (Intent | undefined)[]
    try {
      current = await currentStateIntents(deps.sql, rt.route, rt.plan.columns, chunk, lsn, dead)
    } catch (e) {
      // a text the id column's type refuses (22P02, out of range, ...): a document a transform named, no key
      if (!keyTextRefused(e)) throw e
      unlooked = true
      continue
    }
    for (const d of dead) target.failed(d.docId ?? '?')
    await projection.intents(current.filter((x): x is Intent => x?.kind === 'upsert'), target)
  }

  let scanned = 0
  const unplaced = () => strays.some((s) => !elsewhere.has(idKey(s.id)) && !unjudged.has(s.row))
  // a transform names the documents (not a chunk's row): its id need not be the row's key
  const named = !rowDocumentsMode(m) && m.transform !== undefined
  if ((named || unlooked) && unplaced()) {
    let after: string[] | undefined
    for (;;) {
      const page = await readPage(deps.sql, rt.plan, after, opts.pageSize, opts.log)
      scanned += page.rows.length
      await projection.bad(page.bad, page.lsn, target)
      await projection.page(page.rows, page.keys, page.lsn, target)
      if (page.count < opts.pageSize || !page.lastKey) break
      after = page.lastKey
    }
  }

  const counted = new Set<string>()
  const placements = strays.map((s): Placement => {
    const exp = elsewhere.get(idKey(s.id))
    if (unjudged.has(s.row)) {
      if (!counted.has(s.row)) projection.failed(s.row)
      counted.add(s.row)
      return { kind: 'unjudged' }
    }
    if (!exp) return { kind: 'extra' }
    return exp.namespace === only ? { kind: 'changed' } : { kind: 'misplaced', belongs: exp.namespace }
  })
  return { placements, lookedUp: all.length, scanned }
}
