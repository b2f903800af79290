// `[mapping.chunking]`: a row's upsert becomes its chunk documents (docs/ARCHITECTURE.md, "A row's documents";
// issue 25). Runs after the transform (or the identity) and before nothing else: with `[mapping.embedding]` each
// chunk's text is embedded here, all chunks of a batch in one call to the embedder (which splits by its batch size).
//
// Each chunk document carries the attributes the transform gave (without the source columns: the chunk attribute
// holds the text, and a 50 KB body repeated on every chunk would cost 50 KB a chunk), the chunk's text, its number
// (`_puffgres_chunk`) and, added by the sink, the row key (`_puffgres_row`) and the version. Ids: `<row key>#<n>`.
// A row whose source text is empty or NULL has no documents.
import type { ChunkingConfig } from '../../config/row-documents.ts'
import type { EmbeddingSpec } from './declarative-embedding.ts'
import type { Embedder } from '../../embeddings/embedder.ts'
import { embedOnce, type EmbedSlot, type StoredHashes } from './embed-once.ts'
import { CHUNK_ATTR, type RowEvent } from '../../types.ts'
import { chunkText } from '../chunking.ts'
import { showId } from '../docid.ts'
import type { RowDocumentsAction, TransformResult } from './action.ts'
import { chunkDocId, MAX_DOCUMENTS_PER_ROW } from './documents.ts'

/** The columns `[mapping.chunking] source` names, in order. */
export function chunkSources(c: ChunkingConfig): string[] {
  return typeof c.source === 'string' ? [c.source] : c.source
}

function textOf(value: unknown): string {
  if (typeof value === 'string') return value
  if (value instanceof Date) return value.toISOString()
  if (typeof value === 'object') return JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? String(v) : v)
  return String(value)
}

/**
 * The text a row's chunks are cut from: its non-empty source columns, joined with a blank line; an error when a
 * source column is not in the row (an unchanged TOASTed value the stream did not re-read).
 */
export function chunkSourceText(
  row: Record<string, unknown> | undefined,
  sources: string[],
): string | { error: string } {
  if (!row) return { error: 'the event has no new row to chunk' }
  const parts: string[] = []
  for (const col of sources) {
    if (!Object.hasOwn(row, col)) {
      return { error: `chunking source column "${col}" is not in the row (unknown column or unchanged TOAST value)` }
    }
    const v = row[col]
    if (v === null || v === undefined) continue
    const t = textOf(v)
    if (t !== '') parts.push(t)
  }
  return parts.join('\n\n')
}

/**
 * Turns the successful upserts of a batch (`results[i]` belongs to `events[i]`) into their chunk documents, embedded
 * when `embedding` is given. Deletes and skips pass through. A row whose embedding request failed fails (marked
 * `retryable` for a provider outage, so the writer retries it). Never throws.
 */
export async function chunkResults(
  results: TransformResult[],
  events: RowEvent[],
  chunking: ChunkingConfig,
  embedding?: { spec: EmbeddingSpec; embedder: Embedder },
  storedHashes?: StoredHashes,
): Promise<TransformResult[]> {
  const sources = chunkSources(chunking)
  const out = results.slice()
  // rows whose chunks are to be embedded: index into out, and the chunks' texts (in document order)
  const targets: Array<{ i: number; action: RowDocumentsAction }> = []
  const slots: EmbedSlot[] = []
  for (let i = 0; i < results.length; i++) {
    const r = results[i]
    if (!r.ok || r.action.type !== 'upsert') continue
    const event = events[i]
    const text = chunkSourceText(event.new, sources)
    if (typeof text !== 'string') {
      out[i] = { ok: false, error: `id ${showId(event.id)}: ${text.error}` }
      continue
    }
    const chunks = chunkText(text, chunking)
    if (chunks.length > MAX_DOCUMENTS_PER_ROW) {
      out[i] = {
        ok: false,
        error: `id ${showId(event.id)}: the text makes ${chunks.length} chunks of ${chunking.size} characters, ` +
          `at most ${MAX_DOCUMENTS_PER_ROW} per row; raise [mapping.chunking] size`,
      }
      continue
    }
    const shared: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(r.action.attributes)) if (!sources.includes(k)) shared[k] = v
    const rowKey = String(event.id)
    const action: RowDocumentsAction = {
      type: 'documents',
      documents: chunks.map((c) => ({
        type: 'upsert',
        id: chunkDocId(rowKey, c.index),
        attributes: { ...shared, [chunking.attribute]: c.text, [CHUNK_ATTR]: c.index },
      })),
    }
    out[i] = { ok: true, action }
    if (embedding && chunks.length) {
      targets.push({ i, action })
      const [documents, row] = [action.documents, event]
      chunks.forEach((c, k) => slots.push({ id: documents[k].id, row, text: c.text, doc: documents[k] }))
    }
  }
  if (!embedding || slots.length === 0) return out
  // each chunk's vector: from the cache, kept from the stored chunk of the same text, or from the provider
  const failure = await embedOnce(slots, embedding.spec.attribute ?? 'vector', embedding.embedder, storedHashes)
  if (failure) { for (const { i } of targets) out[i] = failure }
  return out
}
