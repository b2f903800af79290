// Backfill of a mapping with a namespace per tenant (issue 24): a page's re-check knows its rows by their keys only,
// which name no tenant. The write notes where each row went; the re-check deletes and sweeps there. A page an
// interrupted run left in the journal has no such note: its rows are looked for in every namespace of the mapping.
import type { Mapping } from '../config/load.ts'
import type { Intent } from '../pipeline/changes.ts'
import { intentNamespace } from '../pipeline/intent-namespace.ts'
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
