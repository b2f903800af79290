// Backfill of a mapping with a namespace per tenant (issue 24): a page's re-check knows its rows by their keys only,
// which name no tenant. The write notes where each row went; the re-check deletes and sweeps there. A page an
// interrupted run left in the journal has no such note: its rows are looked for in every namespace of the mapping.
import type { Mapping } from '../config/load.ts'
import type postgres from 'postgres'
import type { Intent, MappingRoute } from '../pipeline/changes.ts'
import { intentNamespace } from '../pipeline/intent-namespace.ts'
import { docId } from '../pipeline/docid.ts'
import { deleteIntent } from '../pipeline/row-identity.ts'
import type { RowKey } from '../pipeline/row-key.ts'
import { rowNamespace } from '../pipeline/row-namespace.ts'
import { type ReadPlan, readRowsByKey } from '../source/mod.ts'
import { sweepRacedRows } from '../pipeline/writer.ts'
import { listMappingNamespaces } from '../turbopuffer/mapping-namespaces.ts'
import type { Sink } from '../turbopuffer/types.ts'
import { type Id, idKey } from '../types.ts'

/** The namespace each row of a written page went to (idKey of its id → namespace); kept until its re-check. */
export type Routed = { namespaces?: Map<string, string> }

/** Notes the namespaces of a page's written intents (a batch at a time) in `into`, made when absent. */
export function notePageNamespaces(intents: readonly Intent[], into = new Map<string, string>()): Map<string, string> {
  for (const i of intents) {
    const at = intentNamespace(i)
    if (at.ok) into.set(idKey(i.id), at.namespace)
  }
  return into
}

/** For a page's re-check: the namespace(s) a row of the page may be in (one fixed name without a template). */
export async function pageRowNamespaces(
  sink: Sink,
  m: Mapping,
  noted: Map<string, string> | undefined,
): Promise<(id: Id) => string[]> {
  if (!m.namespaceTemplate) return () => [m.namespace]
  if (!noted) {
    const all = await listMappingNamespaces(sink, m)
    return () => all
  }
  return (id) => {
    const n = noted.get(idKey(id))
    return n === undefined ? [] : [n]
  }
}

/**
 * Points a re-check's delete (whose old row is its key alone) at the namespace(s) the row may be in; none when there
 * is none (the row was never written: nothing to delete).
 */
export function placeDelete(m: Mapping, intent: Intent, where: string[]): Intent[] {
  if (!m.namespaceTemplate) return [intent]
  const [first, ...rest] = where
  if (first === undefined) return []
  intent.namespace = first
  if (rest.length) intent.leave = rest
  return [intent]
}

/** Row-documents mode: sweepRacedRows for a page's rows, in the namespace(s) each may be in. Returns rows swept. */
export async function sweepPage(sink: Sink, ids: Id[], whereOf: (id: Id) => string[], version: string) {
  const byNamespace = new Map<string, string[]>()
  for (const id of ids) {
    for (const n of whereOf(id)) {
      const list = byNamespace.get(n)
      if (list) list.push(String(id))
      else byNamespace.set(n, [String(id)])
    }
  }
  let swept = 0
  for (const [n, keys] of byNamespace) swept += await sweepRacedRows(sink, n, keys, version)
  return swept
}

/**
 * The re-check's deletes of a page's rows that moved to another tenant while the page was written. The stream's
 * delete in the old namespace may have landed before the page's write there (a delete leaves no tombstone), and the
 * anti-join of the re-check sees the row still there: the page's copy would stay in a namespace the row left, read in
 * two tenants. Each row's placeholder columns are read as they are now (decoded as the stream and the page decode
 * them); a row whose namespace is no longer the one the page wrote it to (or that is gone now) is deleted there, at
 * the re-check's `lsn` (taken before this read: a later write of the row in that namespace is newer and stays).
 * `keys`: the page's rows still there at the re-check (id defined).
 */
export async function movedRowDeletes(
  sql: postgres.Sql,
  plan: Pick<ReadPlan, 'columns' | 'keyTypes'>,
  route: MappingRoute,
  keys: readonly (RowKey & { id: Id })[],
  whereOf: (id: Id) => string[],
  lsn: bigint,
): Promise<Intent[]> {
  const m = route.mapping
  const template = m.namespaceTemplate
  if (!template || !keys.length) return []
  const columns = plan.columns.filter((c) => m.idColumns.includes(c.name) || template.columns.includes(c.name))
  const rows = await readRowsByKey(sql, m, columns, m.idColumns, plan.keyTypes, keys.map((k) => k.texts))
  const now = new Map<string, string | undefined>()
  for (const r of rows) {
    const id = docId(r, m.idColumns, m.idType === 'string')
    if (id === undefined) continue
    const at = rowNamespace(m, r)
    now.set(idKey(id), at.ok ? at.namespace : undefined)
  }
  const out: Intent[] = []
  for (const key of keys) {
    const current = now.get(idKey(key.id))
    const left = whereOf(key.id).filter((n) => n !== current)
    if (left.length) out.push(...placeDelete(m, deleteIntent(route, key, lsn), left))
  }
  return out
}
