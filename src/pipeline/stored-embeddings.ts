// Embeddings paid once, on the writer's side (docs/ARCHITECTURE.md, "Embeddings paid once"): a document whose stored
// hash equals its text's is written by patch (`stored`, embed-once.ts makes it), naming with null the attributes the
// row no longer has; a patch that did not apply (the document went away since its hash was read) is written again as
// an upsert with its vector.
import type { Mapping } from '../config/load.ts'
import { allSettled } from '../concurrency.ts'
import type { Embedder } from '../embeddings/embedder.ts'
import type { Sink } from '../turbopuffer/types.ts'
import {
  CHUNK_ATTR,
  type DistanceMetric,
  EMBED_HASH_ATTR,
  type Id,
  idKey,
  type Logger,
  ROW_ATTR,
  type RowEvent,
  type StoredEmbedding,
  VERSION_ATTR,
  type WriteOp,
} from '../types.ts'
import type { AttributeSpec } from './schema.ts'
import type { Intent } from './changes.ts'
import type { StoredHashes } from './transform/embed-once.ts'

/** Attributes every document carries whatever the mapping: never nulled by a patch. */
const RESERVED = new Set(['id', 'vector', VERSION_ATTR, ROW_ATTR, CHUNK_ATTR, EMBED_HASH_ATTR])

/**
 * A document written by patch (`stored`: its vector kept) keeps the attributes the patch does not name, so the ones
 * the row no longer has are named with null (every attribute of the mapping and of the namespace), as an upsert would
 * drop them. The stored vector's attribute is kept.
 */
export function clearDropped(
  op: WriteOp,
  declared: ReadonlyMap<string, unknown>,
  existing: ReadonlyMap<string, string>,
): void {
  const clear = (doc: { attributes: Record<string, unknown>; stored?: StoredEmbedding }) => {
    if (!doc.stored) return
    for (const names of [declared.keys(), existing.keys()]) {
      for (const name of names) {
        if (!RESERVED.has(name) && name !== doc.stored.attribute && !(name in doc.attributes)) {
          doc.attributes[name] = null
        }
      }
    }
  }
  if (op.kind === 'upsert') clear(op)
  else if (op.kind === 'row') op.documents.forEach(clear)
}

/**
 * The documents of `unpatched` written again as upserts with their vectors (cache, then the provider): their patch
 * did not apply, as the document went away after its stored hash was read. A row op keeps only those documents: its
 * delete filter takes nothing its first write left (that write's documents carry its version). Rejects when the
 * provider fails.
 */
async function withVectors(embedder: Embedder, unpatched: Array<{ op: WriteOp; ids: Id[] }>): Promise<WriteOp[]> {
  const docs: Array<{ attributes: Record<string, unknown>; vector?: number[]; stored?: StoredEmbedding }> = []
  const ops = unpatched.map(({ op, ids }): WriteOp => {
    const redo = <D extends { attributes: Record<string, unknown>; stored?: StoredEmbedding }>(d: D) => {
      const copy = { ...d, attributes: { ...d.attributes } }
      docs.push(copy)
      return copy
    }
    if (op.kind === 'upsert') return redo(op)
    if (op.kind !== 'row') return op
    const want = new Set(ids.map(idKey))
    return { ...op, documents: op.documents.filter((d) => want.has(idKey(d.id)) && d.stored).map(redo) }
  })
  const vectors = await embedder.embed(docs.map((d) => d.stored!.text))
  docs.forEach((d, k) => {
    const attribute = d.stored!.attribute
    delete d.stored
    if (attribute === 'vector') d.vector = vectors[k]
    else d.attributes[attribute] = vectors[k]
  })
  return ops
}

/** How many documents of `op` are written by patch (their vector kept). */
export function storedDocuments(op: WriteOp): number {
  if (op.kind === 'upsert') return op.stored ? 1 : 0
  return op.kind === 'row' ? op.documents.filter((d) => d.stored).length : 0
}

/** The `EMBED_HASH_ATTR` each document of `op` is patched with, by `idKey`. */
function patchedHashes(op: WriteOp): Map<string, unknown> {
  if (op.kind === 'upsert') return new Map([[idKey(op.id), op.attributes[EMBED_HASH_ATTR]]])
  if (op.kind !== 'row') return new Map()
  return new Map(op.documents.map((d) => [idKey(d.id), d.attributes[EMBED_HASH_ATTR]]))
}

/**
 * Writes again, with their vectors, the patched documents of `unpatched` that are not there or do not carry their
 * hash (another text's vector); what fails comes back
 * against the ops the first write was given (the writer dead-letters their intents).
 */
export async function redoUnpatched(
  route: { mapping: Mapping; embedder?: Embedder },
  namespace: string,
  schema: Record<string, AttributeSpec>,
  unpatched: Array<{ op: WriteOp; ids: Id[] }>,
  deps: { sink: Sink; log: Logger },
  metric: (m: Mapping, ops: readonly WriteOp[]) => DistanceMetric | undefined,
): Promise<{ failed: Array<{ op: WriteOp; error: string; status?: number }>; embedded: number }> {
  // a patch also fails over a version as new as its own (a replayed request that had applied, a newer write of the
  // same text that landed first): those documents carry this hash already, and are not redone. One that is missing,
  // or carries another hash (a write of another text landed between the lookup and the patch: its vector is not this
  // text's, PATCH_CONDITION), is redone; the upsert's version condition still turns it down over a newer version.
  const present = await deps.sink.embedHashes?.(namespace, unpatched.flatMap((u) => u.ids)).catch(() => undefined)
  if (present?.size) {
    unpatched = unpatched.map(({ op, ids }) => {
      const hashOf = patchedHashes(op)
      return { op, ids: ids.filter((id) => present.get(idKey(id)) !== hashOf.get(idKey(id))) }
    }).filter((u) => u.ids.length > 0)
  }
  if (!unpatched.length) return { failed: [], embedded: 0 }
  const documents = unpatched.reduce((n, u) => n + u.ids.length, 0)
  deps.log.info('a document to patch was not there; writing it with its vector', {
    mapping: route.mapping.name,
    documents,
  })
  if (!route.embedder) {
    return {
      failed: unpatched.map(({ op }) => ({ op, error: 'a patch did not apply, and no embedder is configured' })),
      embedded: 0,
    }
  }
  let ops: WriteOp[]
  try {
    ops = await withVectors(route.embedder, unpatched)
  } catch (err) {
    const error = `a patch did not apply and embedding again failed: ${(err as Error)?.message ?? err}`
    return { failed: unpatched.map(({ op }) => ({ op, error })), embedded: 0 }
  }
  const first = new Map(ops.map((op, k) => [op, unpatched[k].op]))
  const res = await deps.sink.write(namespace, ops, { schema, distanceMetric: metric(route.mapping, ops) })
  return { failed: res.failed.map((f) => ({ ...f, op: first.get(f.op) ?? f.op })), embedded: documents }
}

/**
 * The stored-hash lookup for one route's batch (embed-once.ts): the documents asked for grouped by the namespace their
 * row's intent writes to (`namespaces[k]` for `intents[k]`, as the writer found them), one query per namespace.
 * Undefined when the mapping embeds nothing or the sink cannot query.
 */
export function storedHashLookup(
  sink: Sink,
  mapping: Mapping,
  intents: readonly Intent[],
  namespaces: readonly string[],
): StoredHashes | undefined {
  if (!mapping.embedding || !sink.embedHashes) return undefined
  const namespaceOf = new Map<RowEvent, string>(intents.map((i, k) => [i.event, namespaces[k]]))
  return async (ids, rows) => {
    const byNamespace = new Map<string, Id[]>()
    ids.forEach((id, k) => {
      const ns = namespaceOf.get(rows[k])
      if (ns === undefined) return
      const list = byNamespace.get(ns)
      if (list) list.push(id)
      else byNamespace.set(ns, [id])
    })
    const out = new Map<string, string>()
    for (const found of await allSettled([...byNamespace].map(([ns, list]) => sink.embedHashes!(ns, list)))) {
      for (const [k, v] of found) out.set(k, v)
    }
    return out
  }
}
