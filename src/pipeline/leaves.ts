// A row that leaves namespaces before its write (issue 24, a tenant move; docs/ARCHITECTURE.md "One write of a row"):
// the versioned delete of its document(s) in each namespace it leaves, sent before the batch's writes.
import type { Mapping } from '../config/load.ts'
import { rowDocumentsMode } from '../config/row-documents.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import type { Sink } from '../turbopuffer/types.ts'
import type { WriteOp } from '../types.ts'
import { type Intent, intentDeadLetter } from './changes.ts'

/** A row leaving namespaces before its write (a tenant move): the versioned delete of its document(s) in each. */
export interface Leave {
  namespaces: readonly string[]
  intent: Intent
  op: WriteOp
}

/** The delete of a row's document(s) at the intent's version: by row key in row-documents mode, else by id. */
export function leaveOp(m: Mapping, intent: Intent, id: WriteOp['id']): WriteOp {
  return rowDocumentsMode(m)
    ? { kind: 'row', id: String(intent.id), version: intent.version, documents: [] }
    : { kind: 'delete', id, version: intent.version }
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
  await Promise.all([...byNamespace].map(async ([namespace, list]) => {
    const res = await sink.write(namespace, list.map((l) => l.op))
    const byOp = res.failed.length ? new Map(list.map((l) => [l.op, l])) : undefined
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
