// Queries of documents by row key or by id that the writers make besides writing: the rows a racing writer must sweep
// (newerRowVersions), the documents of backfill pages an interrupted run left (documentsAtVersions) and the stored
// embedding hashes (embeddings paid once). The sink gives them its retried query.
import type { Filter, NamespaceQueryParams, Row } from '@turbopuffer/turbopuffer'
import { EMBED_HASH_ATTR, type Id, idKey, ROW_ATTR, VERSION_ATTR } from '../types.ts'
import { unmarkBigints } from './client.ts'
import { wireId } from './wire-ids.ts'
import type { VersionedDocument } from './types.ts'

/** One query of a namespace, retried; undefined when the namespace does not exist. */
export type RowQuery = (query: Omit<NamespaceQueryParams, 'namespace'>) => Promise<Row[] | undefined>

/** See Sink.newerRowVersions: 1,000 row keys a query, paged by id. */
export async function newerRowVersions(
  query: RowQuery,
  rowKeys: string[],
  version: string,
): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const limit = 1000
  for (let i = 0, after: Id | undefined; i < rowKeys.length;) {
    const clauses: Filter[] = [[ROW_ATTR, 'In', rowKeys.slice(i, i + limit)], [VERSION_ATTR, 'Gt', version]]
    if (after !== undefined) clauses.push(['id', 'Gt', after])
    const rows = await query({
      rank_by: ['id', 'asc'],
      limit,
      filters: ['And', clauses],
      include_attributes: [ROW_ATTR, VERSION_ATTR],
    })
    if (!rows) return out
    for (const row of rows) {
      const [key, v] = [row[ROW_ATTR] as string, row[VERSION_ATTR] as string]
      const seen = out.get(key)
      if (seen === undefined || seen < v) out.set(key, v)
    }
    if (rows.length < limit) [i, after] = [i + limit, undefined]
    else after = rows[rows.length - 1].id
  }
  return out
}

/**
 * See Sink.documentsAtVersions: `{"rank_by": ["id", "asc"], "limit": 1000, "filters": ["And", [["_puffgres_version",
 * "In", versions], ["id", "Gt", last]]]}`, a page at a time.
 */
export async function* documentsAtVersions(
  query: RowQuery,
  versions: string[],
  rowKeys: boolean,
): AsyncGenerator<VersionedDocument[]> {
  const limit = 1000
  const version: Filter = versions.length === 1 ? [VERSION_ATTR, 'Eq', versions[0]] : [VERSION_ATTR, 'In', versions]
  let after: Id | undefined
  for (;;) {
    const rows = await query({
      rank_by: ['id', 'asc'],
      limit,
      // a bigint id is marked and sent as a bare integer (client.ts)
      filters: after === undefined ? version : ['And', [version, ['id', 'Gt', wireId(after)]]],
      include_attributes: rowKeys ? [VERSION_ATTR, ROW_ATTR] : [VERSION_ATTR],
    })
    if (!rows?.length) return
    const docs = rows.map((row) => {
      const doc: VersionedDocument = { id: unmarkBigints(row).id as Id, version: row[VERSION_ATTR] as string }
      if (rowKeys) doc.row = row[ROW_ATTR] as string
      return doc
    })
    yield docs
    if (rows.length < limit) return
    after = docs[docs.length - 1].id
  }
}

/**
 * See Sink.embedHashes: `{"rank_by": ["id", "asc"], "limit": n, "filters": ["id", "In", ids], "include_attributes":
 * [EMBED_HASH_ATTR]}`, up to 10,000 ids a query (turbopuffer's most rows a query).
 */
export async function embedHashes(query: RowQuery, ids: Id[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const limit = 10_000
  for (let i = 0; i < ids.length; i += limit) {
    // a bigint id is marked and sent as a bare integer (client.ts)
    const part = ids.slice(i, i + limit).map(wireId)
    const rows = await query({
      rank_by: ['id', 'asc'],
      limit: part.length,
      filters: ['id', 'In', part],
      include_attributes: [EMBED_HASH_ATTR],
    })
    if (!rows) return out
    for (const row of rows) {
      const hash = row[EMBED_HASH_ATTR]
      if (typeof hash === 'string') out.set(idKey(unmarkBigints(row).id as Id), hash)
    }
  }
  return out
}
