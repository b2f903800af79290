// `[mapping.embedding] source = "col" | ["col1", "col2"], attribute = "vector"`: embeddings without code. The
// source columns of the row are joined into one text, and all upserts of a batch are embedded in one call.
import type { TransformResult } from './action.ts'
import type { RowEvent } from '../../types.ts'
import type { Embedder } from '../../embeddings/embedder.ts'
import { embedOnce, type EmbedSlot, type StoredHashes } from './embed-once.ts'
import { showId } from '../docid.ts'

export interface EmbeddingSpec {
  /** column(s) of the PostgreSQL row whose text is embedded; several are joined with a blank line */
  source: string | string[]
  /** `vector` (default) sets the document's vector; another name stores the vector in that attribute */
  attribute?: string
}

function textOf(value: unknown): string {
  if (typeof value === 'string') return value
  if (value instanceof Date) return value.toISOString()
  if (typeof value === 'object') return JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? String(v) : v)
  return String(value)
}

/**
 * The text to embed for a row: the non-null source columns, joined. Returns an error string when a column is
 * missing from the row (not selected, or an unchanged TOASTed value that PostgreSQL did not send) or when every
 * source column is empty.
 */
export function embeddingText(
  row: Record<string, unknown> | undefined,
  spec: EmbeddingSpec,
): string | { error: string } {
  const columns = typeof spec.source === 'string' ? [spec.source] : spec.source
  if (!row) return { error: 'the event has no new row to embed' }
  const parts: string[] = []
  for (const col of columns) {
    if (!Object.hasOwn(row, col)) {
      return { error: `embedding source column "${col}" is not in the row (unknown column or unchanged TOAST value)` }
    }
    const v = row[col]
    if (v === null || v === undefined) continue
    const t = textOf(v)
    if (t.trim() !== '') parts.push(t)
  }
  if (parts.length === 0) return { error: `embedding source ${columns.map((c) => `"${c}"`).join(', ')} is empty` }
  return parts.join('\n\n')
}

/**
 * Adds vectors to the successful upserts of a batch (`results[i]` belongs to `events[i]`), each with the hash of its
 * text; a document whose stored hash is the same is marked `stored` instead (embed-once.ts). An upsert that already
 * carries a vector keeps it. A row without text fails that row only; a failed embedding request (or lookup) fails the
 * rows that needed it, marked `retryable` for an outage. Never throws.
 */
export async function applyEmbedding(
  results: TransformResult[],
  events: RowEvent[],
  spec: EmbeddingSpec,
  embedder: Embedder,
  storedHashes?: StoredHashes,
): Promise<TransformResult[]> {
  const attribute = spec.attribute ?? 'vector'
  const out = results.slice()
  const targets: number[] = []
  const slots: EmbedSlot[] = []
  for (let i = 0; i < results.length; i++) {
    const r = results[i]
    if (!r.ok || r.action.type !== 'upsert') continue
    if (attribute === 'vector' ? r.action.vector : r.action.attributes[attribute] !== undefined) continue
    const text = embeddingText(events[i].new, spec)
    if (typeof text === 'string') {
      const action = { ...r.action, attributes: { ...r.action.attributes } }
      out[i] = { ok: true, action }
      targets.push(i)
      slots.push({ id: action.id, row: events[i], text, doc: action })
    } else {
      out[i] = { ok: false, error: `id ${showId(events[i].id)}: ${text.error}` }
    }
  }
  if (slots.length === 0) return out
  const failure = await embedOnce(slots, attribute, embedder, storedHashes)
  if (failure) { for (const i of targets) out[i] = failure }
  return out
}
