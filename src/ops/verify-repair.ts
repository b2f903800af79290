// `verify --repair` (ops/verify.ts): rewrites the drifted rows through the one write path (pipeline/writer.ts
// writeIntents) and deletes the extra documents by their ids (pipeline/document-deletes.ts), versioned so that a change
// streamed meanwhile still wins.
import type postgres from 'postgres'
import { rowDocumentsMode } from '../config/row-documents.ts'
import type { ColumnType } from '../source/mod.ts'
import type { Intent } from '../pipeline/changes.ts'
import { type RouteRuntime, sweepRacedRows, writeIntents, type WriteSummary } from '../pipeline/writer.ts'
import { currentStateIntents, recheckWritten } from '../pipeline/row-identity.ts'
import type { RowKey } from '../pipeline/row-key.ts'
import { deleteDocuments, type FoundDocument } from '../pipeline/document-deletes.ts'
import { intentNamespace } from '../pipeline/intent-namespace.ts'
import { formatLsn } from '../postgres/lsn.ts'
import { stableLsn } from '../postgres/stable-lsn.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import type { TurbopufferSink } from '../turbopuffer/sink.ts'
import { encodeVersion, type Id, idKey, type Logger } from '../types.ts'
import type { DriftReport } from './verify-report.ts'

export interface VerifyDeps {
  sql: postgres.Sql
  sink: TurbopufferSink
}

/** A document the projection expects: its id, content hash, attributes (for the report) and its row. */
export interface Expected {
  id: Id
  hash: string
  attrs: Record<string, string>
  key: RowKey
  /** the namespace the row's documents belong in */
  namespace: string
  /** the attribute of a vector kept from the stored document (its embed hash matches): not compared */
  kept?: string
}

/** A document (or, in row-documents mode, a row's documents) to delete from one namespace. */
export type Extra = FoundDocument

/**
 * Rewrites the drifted documents from their rows' current state, versioned with an L = stableLsn() taken before the
 * rows are read again (a change streamed meanwhile carries a higher version and wins), through the stream's writer;
 * and deletes the extra ones by their ids (pipeline/document-deletes.ts) at `judged`, the position they were judged
 * extra at: a row inserted since then is streamed with a higher version, so its document is never deleted by a
 * judgement that did not see it. An extra document of a tenant mapping is deleted from the namespace it was found
 * in, wherever its row lives now.
 */
export async function repair(
  deps: VerifyDeps,
  route: RouteRuntime,
  columns: readonly ColumnType[],
  rewrite: Expected[],
  extra: Extra[],
  judged: bigint,
  log: Logger,
): Promise<NonNullable<DriftReport['repair']>> {
  const lsn = await stableLsn(deps.sql, { log })
  const result = { lsn: formatLsn(lsn), upserted: 0, deleted: 0, skipped: 0, failed: 0 }
  const writer = { sink: deps.sink, sql: deps.sql, log }
  const m = route.mapping
  const add = (w: WriteSummary | undefined) => {
    if (!w) return
    result.upserted += w.upserted
    result.deleted += w.deleted
    result.skipped += w.skipped
    result.failed += w.deadLettered
  }
  for (let i = 0; i < rewrite.length; i += 500) {
    const chunk = rewrite.slice(i, i + 500)
    const rowKeys = chunk.map((e) => e.key)
    const dead: DeadLetter[] = []
    // a row with a value that cannot be decoded: a dead letter (written with the others), not a failed repair
    const all = await currentStateIntents(deps.sql, route, columns, rowKeys, lsn, dead)
    add(await writeIntents(all.filter((x) => x !== undefined), dead, writer))
    // where each upsert went (a tenant mapping: the namespace of the row's values, idKey of the id → namespace)
    const writtenTo = new Map<string, string>()
    for (const x of all) {
      const at = x?.kind === 'upsert' ? intentNamespace(x) : undefined
      if (at?.ok) writtenTo.set(idKey(x!.id), at.namespace)
    }
    if (rowDocumentsMode(m)) {
      // chunks a newer version streamed before these writes landed lacks (docs/ARCHITECTURE.md, invariant 11), in
      // the namespace each row was written to
      const written = all.filter((x) => x?.kind === 'upsert') as Intent[]
      const byNamespace = new Map<string, string[]>()
      for (const x of written) {
        const ns = writtenTo.get(idKey(x.id))
        if (ns !== undefined) byNamespace.set(ns, [...byNamespace.get(ns) ?? [], String(x.id)])
      }
      for (const [ns, keys] of byNamespace) await sweepRacedRows(deps.sink, ns, keys, written[0].version)
    }
    // rows deleted while they were transformed: their streamed delete may have landed before this upsert
    // (a tenant mapping: and rows that moved to another tenant meanwhile, deleted where they were written)
    const upserted = rowKeys.filter((_r, k) => all[k]?.kind === 'upsert')
    const again = await recheckWritten(route, columns, upserted, writer, writtenTo)
    if (again) add({ ...again, upserted: 0 })
  }
  // each extra document deleted by its own id (row-documents mode: its row key) where it was found, at the position
  // it was judged at: never through the transform, which names the documents of rows, not of documents
  const gone = await deleteDocuments(deps.sink, m, extra, encodeVersion(judged, 0))
  result.deleted += gone.deleted
  result.skipped += gone.skipped
  result.failed += gone.failed.length
  for (const f of gone.failed) {
    log.warn('verify --repair could not delete a document', {
      mapping: m.name,
      namespace: f.namespace,
      id: f.id,
      error: f.error,
    })
  }
  for (const e of rewrite) log.debug('verify --repair: rewrote', { mapping: m.name, id: e.id })
  return result
}
