// A row's documents as a transform returns them (src/pipeline/transform/documents.ts): several documents, the
// single-document form and the original's op/doc spellings, and one-line errors naming the document and field.
import { describe, expect, test } from 'bun:test'
import { chunkDocId, MAX_DOCUMENTS_PER_ROW, normalizeRowDocuments } from '../src/pipeline/transform/documents.ts'
import type { RowEvent } from '../src/types.ts'

const event = (id: string | number = 7): RowEvent => ({
  type: 'update',
  op: 'update',
  id,
  schema: 'public',
  table: 'articles',
  new: { id, body: 'x' },
  lsn: '0/16B3748',
  mapping: 'articles',
})
const norm = (raw: unknown, e = event()) => normalizeRowDocuments(raw, e, 'transform t.ts', String(e.id))
const error = (raw: unknown) => {
  const r = norm(raw)
  return r.ok ? 'accepted' : r.error
}

describe('normalizeRowDocuments', () => {
  test('several documents: ids default to <row key>#<n>, attributes checked as an upsert action', () => {
    expect(norm({
      type: 'upsert',
      documents: [
        { attributes: { chunk: 'a', n: 1 }, vector: [1, 0] },
        { doc: { chunk: 'b' } },
        { id: 'intro', document: { chunk: 'c' } },
      ],
    })).toEqual({
      ok: true,
      action: {
        type: 'documents',
        documents: [
          { type: 'upsert', id: '7#0', attributes: { chunk: 'a', n: 1 }, vector: [1, 0] },
          { type: 'upsert', id: '7#1', attributes: { chunk: 'b' } },
          { type: 'upsert', id: 'intro', attributes: { chunk: 'c' } },
        ],
      },
    })
    // the original's `op` spelling, and no documents at all
    expect(norm({ op: 'upsert', documents: [] })).toEqual({ ok: true, action: { type: 'documents', documents: [] } })
  })

  test('the single-document form stays: one document keeping the row id, as text', () => {
    expect(norm({ type: 'upsert', attributes: { t: 1 } })).toEqual({
      ok: true,
      action: { type: 'documents', documents: [{ type: 'upsert', id: '7', attributes: { t: 1 } }] },
    })
    expect(norm({ op: 'upsert', doc: { t: 1 } })).toMatchObject({ ok: true, action: { documents: [{ id: '7' }] } })
    expect(norm({ type: 'delete' })).toEqual({ ok: true, action: { type: 'delete' } })
    expect(norm({ op: 'skip' })).toEqual({ ok: true, action: { type: 'skip' } })
    expect(error('nope')).toMatch(/returned an invalid action for id 7: expected an action object/)
  })

  test('errors name the document and the field', () => {
    expect(error({ type: 'delete', documents: [] })).toBe(
      'transform t.ts returned invalid documents for id 7: documents go with type \'upsert\', got "delete"',
    )
    expect(error({ type: 'upsert', documents: {} })).toMatch(/documents: expected an array of documents$/)
    expect(error({ type: 'upsert', documents: [], vector: [1] })).toMatch(/vector: not allowed beside documents/)
    expect(error({ type: 'upsert', documents: [{ attributes: { ok: 1 } }, 5] })).toMatch(/documents\[1\]: expected/)
    expect(error({ type: 'upsert', documents: [{ attributes: { $x: 1 } }] })).toBe(
      "transform t.ts returned invalid documents for id 7: documents[0]: attributes.$x: attribute names cannot start with '$'",
    )
    expect(error({ type: 'upsert', documents: [{ type: 'upsert', attributes: {} }] })).toMatch(
      /documents\[0\]: a document has no type or op/,
    )
    expect(error({ type: 'upsert', documents: [{ id: 'a' }, { id: 'a' }] })).toMatch(
      /documents\[1\]: id "a" is given twice/,
    )
    // an explicit id that collides with a default one
    expect(error({ type: 'upsert', documents: [{}, { id: '7#0' }] })).toMatch(/id "7#0" is given twice/)
    expect(error({ type: 'upsert', documents: [{ id: 'x'.repeat(65) }] })).toMatch(/documents\[0\]: .*64 bytes/)
    expect(error({ type: 'upsert', documents: new Array(MAX_DOCUMENTS_PER_ROW + 1).fill({}) })).toMatch(
      /10001 documents, at most 10000 per row/,
    )
  })
})

describe('chunkDocId', () => {
  test('<row key>#<n>, hashed when over 64 bytes', () => {
    expect(chunkDocId('42', 0)).toBe('42#0')
    expect(chunkDocId('acme:7', 12)).toBe('acme:7#12')
    const long = 'k'.repeat(70)
    expect(chunkDocId(long, 3)).toMatch(/^h[0-9a-f]{40}#3$/)
    expect(chunkDocId(long, 3)).toBe(chunkDocId(long, 3))
    expect(chunkDocId(long, 3)).not.toBe(chunkDocId(long + 'x', 3))
    // 62 bytes + "#0" fits; multibyte keys are measured in bytes
    expect(chunkDocId('k'.repeat(62), 0)).toBe('k'.repeat(62) + '#0')
    expect(chunkDocId('é'.repeat(31), 0)).toBe('é'.repeat(31) + '#0')
    expect(chunkDocId('é'.repeat(32), 0)).toMatch(/^h/)
  })
})
