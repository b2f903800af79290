// Backfill of a mapping with a namespace per tenant (issue 24): a page's re-check knows its rows by their keys only,
// which name no tenant. The write notes where each row went; the re-check deletes and sweeps there. A page an
// interrupted run left in the journal has no such note: where its documents are is found again, by asking each
// namespace of the mapping for its documents at the page's version (findPageCopies).
import type { Mapping } from '../config/load.ts'
import type postgres from 'postgres'
import { forEachLimited } from '../concurrency.ts'
import { rowDocumentsMode } from '../config/row-documents.ts'
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

/** namespaces asked at once for the documents of pages an interrupted run left (one query page each) */
const SEARCHED_AT_ONCE = 16

/** Where the documents of a page an interrupted run left are: idKey of a row's id → the namespace(s) holding one. */
export type Found = Map<string, string[]>

/**
 * What a page's re-check knows of where its rows were written: `namespaces`, noted by the write (idKey of each row's
 * id → its namespace), kept until its re-check; or `found` again for a page an interrupted run left.
 */
export type Routed = { namespaces?: Map<string, string>; found?: Found }

/** Notes the namespaces of a page's written intents (a batch at a time) in `into`, made when absent. */
export function notePageNamespaces(intents: readonly Intent[], into = new Map<string, string>()): Map<string, string> {
  for (const i of intents) {
    const at = intentNamespace(i)
    if (at.ok) into.set(idKey(i.id), at.namespace)
  }
  return into
}

/** Where a page's re-check looks for its rows. */
export interface PagePlaces {
  /** the namespace(s) a row of the page may have a document in: where its deletes and sweeps go */
  whereOf: (id: Id) => string[]
  /**
   * a tenant mapping: the namespace(s) the page's copy of a row is known to be in (noted, or found); absent when not
   * known, and then a row that moved meanwhile cannot be told from one that did not (every namespace would do)
   */
  wrote?: (id: Id) => string[]
}

/** For a page's re-check: the namespace(s) a row of the page may be in (one fixed name without a template). */
export async function pageRowNamespaces(sink: Sink, m: Mapping, page: Routed): Promise<PagePlaces> {
  if (!m.namespaceTemplate) return { whereOf: () => [m.namespace] }
  const { namespaces: noted, found } = page
  if (noted) {
    const whereOf = (id: Id) => {
      const n = noted.get(idKey(id))
      return n === undefined ? [] : [n]
    }
    return { whereOf, wrote: whereOf }
  }
  const wrote = found && ((id: Id) => found.get(idKey(id)) ?? [])
  // found by document id, which a transform may choose otherwise than the row's: its deletes go everywhere, as before
  if (wrote && exactlyFound(m)) return { whereOf: wrote, wrote }
  const all = await listMappingNamespaces(sink, m)
  return { whereOf: () => all, wrote }
}

/** Whether a page's documents name their rows: by row key (row-documents mode), or by the row's id (no transform). */
function exactlyFound(m: Mapping): boolean {
  return rowDocumentsMode(m) || !m.transform
}

/**
 * The pages an interrupted run left in the journal (tenant mapping): where their documents are. Every document a page
 * wrote carries the page's version until a newer write replaces it, so each namespace of the mapping is asked for its
 * documents at the pages' versions (16 namespaces at once, a query page of 1,000 at a time: one pass over the
 * namespaces for all the pages), and those of the pages' rows are kept. Memory is bounded by the pages' rows whatever
 * the number of namespaces. A document is known by its row key (row-documents mode) or its id, so with a transform
 * that names documents otherwise only the rows it names by their id are found. Undefined when the sink cannot ask.
 */
export async function findPageCopies(
  sink: Sink,
  m: Mapping,
  pages: readonly { version: string; ids: readonly Id[] }[],
): Promise<Found[] | undefined> {
  if (!sink.documentsAtVersions || !m.namespaceTemplate || !pages.length) return undefined
  const rowKeys = rowDocumentsMode(m)
  // a document's name for its row: the row key (String of the id, pipeline/writer.ts) or the document id's idKey
  const nameOf = (id: Id) => rowKeys ? String(id) : idKey(id)
  const byVersion = new Map<string, { rows: Map<string, string>; found: Found }[]>()
  const out = pages.map((p) => {
    const entry = { rows: new Map(p.ids.map((id) => [nameOf(id), idKey(id)])), found: new Map<string, string[]>() }
    const list = byVersion.get(p.version)
    if (list) list.push(entry)
    else byVersion.set(p.version, [entry])
    return entry.found
  })
  const versions = [...byVersion.keys()]
  const namespaces = await listMappingNamespaces(sink, m)
  await forEachLimited(namespaces, SEARCHED_AT_ONCE, async (ns) => {
    for await (const docs of sink.documentsAtVersions!(ns, versions, rowKeys)) {
      for (const d of docs) {
        const name = rowKeys ? d.row : idKey(d.id)
        if (name === undefined) continue
        for (const { rows, found } of byVersion.get(d.version) ?? []) {
          const key = rows.get(name)
          if (key === undefined) continue
          const where = found.get(key)
          // a row's chunks: one namespace, once
          if (!where) found.set(key, [ns])
          else if (!where.includes(ns)) where.push(ns)
        }
      }
    }
  })
  return out
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
