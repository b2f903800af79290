// Deletes of documents known by their own id (`verify --repair`'s extra and misplaced documents): written with the
// sink as the writer writes a delete, versioned like every delete, and never passed through the transform.
//
// The transform names the documents of a row from the row's values. A document found where no row puts it has no
// row to give the transform: its id as a delete event's id made a renaming transform (`'n' + event.id`) aim the
// delete at another document (`nn1`), and a transform that reads `event.new` failed on it. So the delete names the
// document itself (in row-documents mode, every document of its row key, `_puffgres_row`), in the namespace it was
// found in.
import type { Mapping } from '../config/load.ts'
import { allSettled } from '../concurrency.ts'
import type { Sink } from '../turbopuffer/types.ts'
import type { Id, WriteOp } from '../types.ts'
import { deleteOp } from './leaves.ts'

/** A document (in row-documents mode: a row key, all of its documents) to delete from the namespace it was found in. */
export interface FoundDocument {
  id: Id
  namespace: string
}

export interface DocumentDeletes {
  /** deletes written (a document already gone, or newer than `version`, is also counted in `skipped`) */
  deleted: number
  /** turned down by the version condition, or nothing there to delete: the sink's count */
  skipped: number
  /** refused for good: each with turbopuffer's error (not dead letters: no row of the table makes the document) */
  failed: Array<FoundDocument & { error: string }>
}

/** documents deleted per write (the sink splits a write that breaks turbopuffer's limits) */
const DELETES_PER_WRITE = 1000

/**
 * Deletes `found`, each in its namespace, at `version`: a document written at `version` or later (a change streamed
 * after the judgement that found it) stays. Namespaces are written in parallel, the sink pacing each.
 */
export async function deleteDocuments(
  sink: Sink,
  mapping: Mapping,
  found: readonly FoundDocument[],
  version: string,
): Promise<DocumentDeletes> {
  const out: DocumentDeletes = { deleted: 0, skipped: 0, failed: [] }
  for (let i = 0; i < found.length; i += DELETES_PER_WRITE) {
    const byNamespace = new Map<string, { ops: WriteOp[]; of: Map<WriteOp, FoundDocument> }>()
    for (const f of found.slice(i, i + DELETES_PER_WRITE)) {
      // the same op the writer makes of a delete: by id, or the row's documents older than `version` by row key
      const op = deleteOp(mapping, f.id, version)
      let entry = byNamespace.get(f.namespace)
      if (!entry) byNamespace.set(f.namespace, entry = { ops: [], of: new Map() })
      entry.ops.push(op)
      entry.of.set(op, f)
    }
    await allSettled([...byNamespace].map(async ([namespace, { ops, of }]) => {
      const res = await sink.write(namespace, ops)
      out.deleted += ops.length - res.failed.length
      out.skipped += res.skipped
      for (const f of res.failed) {
        const error = f.status ? `turbopuffer refused the delete (${f.status}): ${f.error}` : `not sent: ${f.error}`
        out.failed.push({ ...of.get(f.op)!, error })
      }
    }))
  }
  return out
}
