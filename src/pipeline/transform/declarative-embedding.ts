// `[mapping.embedding] source = "col" | ["col1", "col2"], attribute = "vector"`: embeddings without code. The
// source columns of the row are joined into one text, and all upserts of a batch are embedded in one call.
import type { TransformResult } from './action.ts'
import type { RowEvent } from '../../types.ts'
import { type Embedder, isRetryableEmbeddingError } from '../../embeddings/embedder.ts'
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
 * Adds vectors to the successful upserts of a batch (`results[i]` belongs to `events[i]`). An upsert that already
 * carries a vector keeps it. A row without text, or a failed embedding request, fails that row only; provider
 * outages are marked `retryable`. Never throws.
 */
export async function applyEmbedding(
  results: TransformResult[],
  events: RowEvent[],
  spec: EmbeddingSpec,
  embedder: Embedder,
): Promise<TransformResult[]> {
  const attribute = spec.attribute ?? 'vector'
  const out = results.slice()
  const targets: number[] = []
  const texts: string[] = []
  for (let i = 0; i < results.length; i++) {
    const r = results[i]
    if (!r.ok || r.action.type !== 'upsert') continue
    if (attribute === 'vector' ? r.action.vector : r.action.attributes[attribute] !== undefined) continue
    const text = embeddingText(events[i].new, spec)
    if (typeof text === 'string') {
      targets.push(i)
      texts.push(text)
    } else {
      out[i] = { ok: false, error: `id ${showId(events[i].id)}: ${text.error}` }
    }
  }
  if (texts.length === 0) return out
  let vectors: number[][]
  try {
    vectors = await embedder.embed(texts)
  } catch (err) {
    const failure = { ok: false as const, error: (err as Error)?.message ?? String(err) }
    const retryable = isRetryableEmbeddingError(err)
    for (const i of targets) out[i] = retryable ? { ...failure, retryable } : failure
    return out
  }
  for (let k = 0; k < targets.length; k++) {
    const i = targets[k]
    const r = results[i] as Extract<TransformResult, { ok: true }>
    const action = r.action as Extract<typeof r.action, { type: 'upsert' }>
    out[i] = {
      ok: true,
      action: attribute === 'vector'
        ? { ...action, vector: vectors[k] }
        : { ...action, attributes: { ...action.attributes, [attribute]: vectors[k] } },
    }
  }
  return out
}
