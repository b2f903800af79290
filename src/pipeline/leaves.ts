// A row that leaves namespaces before its write (issue 24, a tenant move; docs/ARCHITECTURE.md "One write of a row"):
// the versioned delete of its document(s) in each namespace it leaves, sent before the batch's writes.
import type { Mapping } from '../config/load.ts'
import { allSettled } from '../concurrency.ts'
import { rowDocumentsMode } from '../config/row-documents.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import type { Sink } from '../turbopuffer/types.ts'
import { idKey, type Row, type WriteOp } from '../types.ts'
import { type Intent, intentDeadLetter } from './changes.ts'
import { deleteEvent } from './row-event.ts'

/** A row leaving namespaces before its write (a tenant move): the versioned delete of its document(s) in each. */
export interface Leave {
  namespaces: readonly string[]
  intent: Intent
  ops: WriteOp[]
}

/**
 * The deletes of a row's document(s) at the intent's version: by row key in row-documents mode, else by id: each of
 * `ids` (a transform may have named the document the row had there otherwise than the one it has now).
 */
export function leaveOps(m: Mapping, intent: Intent, ids: readonly WriteOp['id'][]): WriteOp[] {
  if (rowDocumentsMode(m)) return [deleteOp(m, intent.id, intent.version)]
  const seen = new Set<string>()
  const ops: WriteOp[] = []
  for (const id of ids) {
    const k = idKey(id)
    if (seen.has(k)) continue
    seen.add(k)
    ops.push(deleteOp(m, id, intent.version))
  }
  return ops
}

/**
 * The versioned delete of a document by its id, or in row-documents mode of every document of a row key older than
 * `version` (the row op with no documents): what the writer sends for a row that is gone from a namespace.
 */
export function deleteOp(m: Mapping, id: WriteOp['id'], version: string): WriteOp {
  return rowDocumentsMode(m) ? { kind: 'row', id: String(id), version, documents: [] } : { kind: 'delete', id, version }
}

/**
 * A moving row's earlier values (its old row, and those of changes collapsed into it) as deletes, for the transform
 * to name the document each had: a transform whose document id names the tenant gave the row another id there.
 */
export function leftRowDeletes(intent: Intent): Intent[] {
  const rows = [intent.event.old, ...intent.leftRows ?? []]
  const out: Intent[] = []
  for (const old of rows) if (old) out.push(deleteOf(intent, old))
  return out
}

/** The intent as the delete of its row with the values `row` (the namespace they name, the id a transform gives). */
export function deleteOf(intent: Intent, row: Row | undefined): Intent {
  const e = intent.event
  return { ...intent, kind: 'delete', event: deleteEvent(intent.id, e.schema, e.table, e.mapping, e.lsn, row) }
}

/**
 * The first step of a batch with tenant moves: each row's versioned delete in the namespaces it leaves, all of them
 * in parallel (one request per namespace). Returns the intents whose delete was refused for good: dead-lettered
 * (with the namespaces to leave, for `dlq retry`), and not written in their new namespace either, so the row is
 * never readable in two tenants' namespaces (docs/ARCHITECTURE.md, "One write of a row").
 */
export async function writeLeaves(leaves: Leave[], dead: DeadLetter[], sink: Sink): Promise<Set<Intent>> {
  const refused = new Set<Intent>()
  if (!leaves.length) return refused
  const byNamespace = new Map<string, Leave[]>()
  for (const l of leaves) {
    for (const n of l.namespaces) {
      const list = byNamespace.get(n)
      if (list) list.push(l)
      else byNamespace.set(n, [l])
    }
  }
  await allSettled([...byNamespace].map(async ([namespace, list]) => {
    const res = await sink.write(namespace, list.flatMap((l) => l.ops))
    const byOp = res.failed.length ? new Map(list.flatMap((l) => l.ops.map((op) => [op, l]))) : undefined
    for (const f of res.failed) {
      const l = byOp!.get(f.op)
      if (!l || refused.has(l.intent)) continue
      refused.add(l.intent)
      const why = f.status ? `turbopuffer refused it (${f.status})` : 'not sent'
      dead.push(intentDeadLetter(
        l.intent,
        `could not delete the row from namespace "${namespace}" it moved out of ` +
          `(${why}): ${f.error}; it was not written to its new namespace either`,
      ))
    }
  }))
  return refused
}
