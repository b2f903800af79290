// `[mapping.chunking]`'s step after the transform (src/pipeline/transform/chunk-documents.ts): a row's upsert becomes
// its chunk documents, each embedded when asked; what cannot be chunked fails that row only.
import { describe, expect, test } from 'bun:test'
import { chunkingSchema } from '../src/config/row-documents.ts'
import { EmbeddingError } from '../src/embeddings/embedder.ts'
import type { Embedder } from '../src/embeddings/embedder.ts'
import type { TransformResult } from '../src/pipeline/transform/action.ts'
import { chunkResults, chunkSourceText } from '../src/pipeline/transform/chunk-documents.ts'
import { CHUNK_ATTR, type RowEvent } from '../src/types.ts'

const event = (id: number, row: Record<string, unknown> | undefined, type: RowEvent['type'] = 'insert'): RowEvent =>
  ({ type, op: type, id, schema: 'public', table: 't', new: row, lsn: '0/1', mapping: 'm' }) as RowEvent
const upsert = (id: number, attributes: Record<string, unknown>): TransformResult => ({
  ok: true,
  action: { type: 'upsert', id, attributes },
})

function fakeEmbedder(fail?: Error): Embedder & { calls: string[][] } {
  const calls: string[][] = []
  return {
    calls,
    model: 'fake',
    cached: () => undefined,
    storedHits: () => {},
    embed: (texts: string[]) => {
      calls.push(texts)
      if (fail) return Promise.reject(fail)
      return Promise.resolve(texts.map((t) => [t.length, 1]))
    },
  } as unknown as Embedder & { calls: string[][] }
}

describe('chunkResults', () => {
  const chunking = chunkingSchema.parse({ source: 'body', size: 10, boundaries: [] })

  test('chunks each upsert, keeps the other attributes on every chunk, drops the source column', async () => {
    const out = await chunkResults(
      [upsert(1, { title: 't', body: 'x'.repeat(25) }), { ok: true, action: { type: 'delete', id: 2 } }],
      [event(1, { id: 1, title: 't', body: 'x'.repeat(25) }), event(2, undefined, 'delete')],
      chunking,
    )
    expect(out[0]).toEqual({
      ok: true,
      action: {
        type: 'documents',
        documents: [0, 1, 2].map((n) => ({
          type: 'upsert',
          id: `1#${n}`,
          attributes: { title: 't', chunk: 'x'.repeat(n < 2 ? 10 : 5), [CHUNK_ATTR]: n },
        })),
      },
    })
    expect(out[1]).toEqual({ ok: true, action: { type: 'delete', id: 2 } })
  })

  test('several source columns are joined with a blank line; NULL and empty ones are left out', () => {
    expect(chunkSourceText({ a: 'one', b: null, c: '', d: 'two' }, ['a', 'b', 'c', 'd'])).toBe('one\n\ntwo')
    expect(chunkSourceText({ a: null }, ['a'])).toBe('')
    expect(chunkSourceText({ a: 'x' }, ['a', 'gone'])).toEqual({
      error: 'chunking source column "gone" is not in the row (unknown column or unchanged TOAST value)',
    })
  })

  test('an empty text makes no documents; a missing column or too many chunks fail that row only', async () => {
    const tiny = chunkingSchema.parse({ source: 'body', size: 1, boundaries: [] })
    const out = await chunkResults(
      [upsert(1, {}), upsert(2, {}), upsert(3, {}), upsert(4, {})],
      [event(1, { body: null }), event(2, {}), event(3, { body: 'y'.repeat(10_001) }), event(4, { body: 'ok' })],
      tiny,
    )
    expect(out[0]).toEqual({ ok: true, action: { type: 'documents', documents: [] } })
    expect(out[1]).toMatchObject({ ok: false, error: expect.stringContaining('id 2: chunking source column "body"') })
    expect(out[2]).toMatchObject({
      ok: false,
      error: 'id 3: the text makes 10001 chunks of 1 characters, at most 10000 per row; raise [mapping.chunking] size',
    })
    expect(out[3]).toMatchObject({ ok: true, action: { type: 'documents' } })
  })

  test('each chunk is embedded, all chunks of a batch in one call; a provider outage is retryable', async () => {
    const embedder = fakeEmbedder()
    const spec = { source: 'chunk' }
    const out = await chunkResults(
      [upsert(1, {}), upsert(2, {})],
      [event(1, { body: 'a'.repeat(15) }), event(2, { body: 'b'.repeat(3) })],
      chunking,
      { spec, embedder },
    )
    expect(embedder.calls).toEqual([['a'.repeat(10), 'a'.repeat(5), 'bbb']])
    const docs = (r: TransformResult) => (r as { action: { documents: { vector?: number[] }[] } }).action.documents
    expect(docs(out[0]).map((d) => d.vector)).toEqual([[10, 1], [5, 1]])
    expect(docs(out[1]).map((d) => d.vector)).toEqual([[3, 1]])

    const down = fakeEmbedder(new EmbeddingError('provider unavailable (503)', true))
    const failed = await chunkResults(
      [upsert(1, {}), upsert(2, {})],
      [event(1, { body: 'abc' }), event(2, { body: '' })],
      chunking,
      {
        spec,
        embedder: down,
      },
    )
    expect(failed[0]).toEqual({ ok: false, error: 'provider unavailable (503)', retryable: true })
    // a row without chunks needs no embedding, so it does not fail with the others
    expect(failed[1]).toEqual({ ok: true, action: { type: 'documents', documents: [] } })
    const refused = fakeEmbedder(new EmbeddingError('bad request (400)', false))
    const bad = await chunkResults([upsert(1, {})], [event(1, { body: 'abc' })], chunking, { spec, embedder: refused })
    expect(bad[0]).toEqual({ ok: false, error: 'bad request (400)' })
  })
})
