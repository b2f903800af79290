// Embeddings paid once (docs/ARCHITECTURE.md, "Embeddings paid once"; issue 25). Every embedded document records the
// hash of its text (`EMBED_HASH_ATTR`); before the provider is asked for a batch's texts, the in-memory cache is, then
// turbopuffer (one query for the documents that missed the cache): a document whose stored hash equals the new one
// already has the right vector, and is written without one (`stored`: a versioned patch keeps the stored vector).
// Shared by declarative embeddings (one document a row) and chunking (a document a chunk).
import { type Embedder, embedHash, isRetryableEmbeddingError } from '../../embeddings/embedder.ts'
import { EMBED_HASH_ATTR, type Id, idKey, type RowEvent, type StoredEmbedding } from '../../types.ts'
import type { TransformResult } from './action.ts'

/**
 * The stored `EMBED_HASH_ATTR` of the documents `ids` that have one, by `idKey`; rejects when it cannot ask. `rows[k]`
 * is the event of the row `ids[k]` belongs to (where the row's documents live, once a row's values choose it).
 */
export type StoredHashes = (ids: Id[], rows: RowEvent[]) => Promise<Map<string, string>>

/** One document to embed: its id, the text, and the document, which gets the hash and then a vector or `stored`. */
export interface EmbedSlot {
  id: Id
  /** the row's event */
  row: RowEvent
  text: string
  doc: { attributes: Record<string, unknown>; vector?: number[]; stored?: StoredEmbedding }
}

/** Why a batch's embedding failed, as the result of each row that needed it; `retryable` for a provider outage. */
export type EmbedFailure = Extract<TransformResult, { ok: false }>

/**
 * Gives every slot its hash, then its vector: from the cache, kept from the stored document (`stored` set, no vector),
 * or from the provider, in that order. `attribute` is where a vector goes (`vector`, or an attribute's name). Resolves
 * with a failure (never rejects) when the provider failed: then no slot is to be written. A lookup that fails costs
 * provider calls, not the batch.
 */
export async function embedOnce(
  slots: EmbedSlot[],
  attribute: string,
  embedder: Embedder,
  storedHashes: StoredHashes | undefined,
): Promise<EmbedFailure | undefined> {
  const put = (s: EmbedSlot, v: number[]) => {
    if (attribute === 'vector') s.doc.vector = v
    else s.doc.attributes[attribute] = v
  }
  let missed: EmbedSlot[] = []
  for (const s of slots) {
    s.doc.attributes[EMBED_HASH_ATTR] = embedHash(embedder.model, s.text, attribute)
    const v = embedder.cached(s.text)
    if (v) put(s, v)
    else missed.push(s)
  }
  if (missed.length && storedHashes) {
    // the sink retries an outage for as long as it lasts: what fails here retrying cannot change (or the process
    // stops), and the provider is asked instead, as without the lookup
    const ids = missed.map((s) => s.id)
    const stored = await storedHashes(ids, missed.map((s) => s.row)).catch(() => new Map<string, string>())
    const left: EmbedSlot[] = []
    for (const s of missed) {
      // a document that writes a vector of its own besides (a pgvector column named `vector`, a transform's, with the
      // embedding in another attribute) is never patched: a patch cannot set a vector, the stored one would stay
      const own = attribute !== 'vector' && s.doc.vector !== undefined
      if (!own && stored.get(idKey(s.id)) === s.doc.attributes[EMBED_HASH_ATTR]) {
        s.doc.stored = { text: s.text, attribute }
      } else left.push(s)
    }
    // counted by the writer once the patches are written (Embedder.storedHits): a batch retried after a provider
    // outage asks again, and a patch that did not apply is embedded after all
    missed = left
  }
  if (!missed.length) return undefined
  let vectors: number[][]
  try {
    vectors = await embedder.embed(missed.map((s) => s.text))
  } catch (err) {
    const error = (err as Error)?.message ?? String(err)
    return isRetryableEmbeddingError(err) ? { ok: false, error, retryable: true } : { ok: false, error }
  }
  missed.forEach((s, k) => put(s, vectors[k]))
  return undefined
}
