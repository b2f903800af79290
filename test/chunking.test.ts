// The chunker (src/pipeline/chunking.ts): properties over many generated texts (every chunk within the size, the
// chunks cover the text in order, the overlap within bounds, no surrogate pair cut, deterministic) and the boundary
// preferences on hand-written texts.
import { describe, expect, test } from 'bun:test'
import {
  checkChunkOptions,
  type Chunk,
  type ChunkBoundary,
  chunkText,
  codePointLength,
} from '../src/pipeline/chunking.ts'

/** A small deterministic PRNG (mulberry32), so a failure reproduces. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const WORDS = [
  'the',
  'quick',
  'brown',
  'fox',
  'jumps',
  'über',
  'naïve',
  '日本語',
  '😀',
  '👩‍👩‍👧',
  'a',
  'x'.repeat(70),
  '𝄞𝄞',
]

function generate(rand: () => number): string {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]
  const paragraphs = Math.floor(rand() * 6)
  const out: string[] = []
  for (let p = 0; p < paragraphs; p++) {
    const sentences = 1 + Math.floor(rand() * 8)
    const parts: string[] = []
    for (let s = 0; s < sentences; s++) {
      const words = 1 + Math.floor(rand() * 25)
      parts.push(
        Array.from({ length: words }, () => pick(WORDS)).join(pick([' ', ' ', ' ', '  ', '\t'])) +
          pick(['.', '!', '?', '。', '...', '']),
      )
    }
    out.push(parts.join(pick([' ', ' ', '\n'])))
  }
  return out.join(pick(['\n\n', '\n \n', '\n\n\n']))
}

const splitsPair = (text: string, at: number) =>
  at > 0 && at < text.length && /[\uD800-\uDBFF]/.test(text[at - 1]) && /[\uDC00-\uDFFF]/.test(text[at])

function checkProperties(text: string, chunks: Chunk[], size: number, overlap: number, exactOverlap: boolean) {
  if (text === '') return expect(chunks).toEqual([])
  expect(chunks[0].start).toBe(0)
  expect(chunks[chunks.length - 1].end).toBe(text.length)
  let rebuilt = ''
  chunks.forEach((c, i) => {
    const what = { i, c, size, overlap }
    expect({ ...what, text: c.text }).toEqual({ ...what, text: text.slice(c.start, c.end) })
    expect(c.index).toBe(i)
    // every chunk holds at least one character and at most `size`
    expect(c.end).toBeGreaterThan(c.start)
    expect(codePointLength(c.text)).toBeLessThanOrEqual(size)
    expect(splitsPair(text, c.start) || splitsPair(text, c.end)).toBe(false)
    if (i === 0) rebuilt = c.text
    else {
      const prev = chunks[i - 1]
      // each chunk starts after the previous one started and no later than where it ended: no gap, progress
      expect(c.start).toBeGreaterThan(prev.start)
      expect(c.start).toBeLessThanOrEqual(prev.end)
      const repeated = codePointLength(text.slice(c.start, prev.end))
      expect(repeated).toBeLessThanOrEqual(overlap)
      if (exactOverlap && prev.end - prev.start > 0) {
        expect(repeated).toBe(Math.min(overlap, codePointLength(prev.text)))
      }
      rebuilt += text.slice(prev.end, c.end)
    }
  })
  // the chunks cover the text exactly
  expect(rebuilt).toBe(text)
}

describe('chunkText', () => {
  test('properties over 1,000 generated texts and options', () => {
    const rand = rng(25)
    for (let i = 0; i < 1000; i++) {
      const text = generate(rand)
      const size = 1 + Math.floor(rand() * 300)
      const overlap = rand() < 0.3 ? 0 : Math.floor(rand() * size)
      const all: ChunkBoundary[][] = [['paragraph', 'sentence', 'word'], ['sentence', 'word'], ['word'], []]
      const boundaries = all[Math.floor(rand() * all.length)]
      const chunks = chunkText(text, { size, overlap, boundaries })
      checkProperties(text, chunks, size, overlap, boundaries.length === 0)
      // deterministic
      expect(chunkText(text, { size, overlap, boundaries })).toEqual(chunks)
    }
  })

  test('empty, short and exactly-sized texts', () => {
    expect(chunkText('', { size: 10 })).toEqual([])
    expect(chunkText('hi', { size: 10, overlap: 5 })).toEqual([{ index: 0, text: 'hi', start: 0, end: 2 }])
    expect(chunkText('0123456789', { size: 10 }).map((c) => c.text)).toEqual(['0123456789'])
    expect(chunkText('0123456789a', { size: 10 }).map((c) => c.text)).toEqual(['0123456789', 'a'])
    expect(chunkText(' ', { size: 1 }).map((c) => c.text)).toEqual([' '])
  })

  test('a paragraph end is preferred to a sentence end, a sentence end to a word end', () => {
    const text = 'First sentence here. Second one follows.\n\nA new paragraph starts. And goes on for a while.'
    expect(chunkText(text, { size: 60 }).map((c) => c.text)).toEqual([
      'First sentence here. Second one follows.\n\n',
      'A new paragraph starts. And goes on for a while.',
    ])
    expect(chunkText(text, { size: 60, boundaries: ['sentence', 'word'] }).map((c) => c.text)).toEqual([
      'First sentence here. Second one follows.\n\n',
      'A new paragraph starts. And goes on for a while.',
    ])
    expect(chunkText('One two three. Four five six seven eight.', { size: 30 }).map((c) => c.text)).toEqual([
      'One two three. ',
      'Four five six seven eight.',
    ])
    expect(chunkText('alpha beta gamma delta epsilon', { size: 14 }).map((c) => c.text)).toEqual([
      'alpha beta ',
      'gamma delta ',
      'epsilon',
    ])
  })

  test('a boundary only in the first half of the window is not taken: chunks stay at least half full', () => {
    const text = 'Hi. ' + 'abcdefghij'.repeat(3)
    expect(chunkText(text, { size: 20 }).map((c) => c.text)).toEqual(['Hi. abcdefghijabcdef', 'ghijabcdefghij'])
  })

  test('overlap repeats whole words of the previous chunk', () => {
    const chunks = chunkText('alpha beta gamma delta epsilon zeta eta theta', { size: 20, overlap: 8 })
    expect(chunks.map((c) => c.text)).toEqual([
      'alpha beta gamma ',
      'gamma delta epsilon ',
      'epsilon zeta eta ',
      'eta theta',
    ])
  })

  test('a word longer than a chunk is cut at exactly size characters; overlap is then exact', () => {
    const chunks = chunkText('x'.repeat(25), { size: 10, overlap: 3 })
    expect(chunks.map((c) => [c.start, c.end])).toEqual([[0, 10], [7, 17], [14, 24], [21, 25]])
  })

  test('sizes count code points: an emoji is one character and a pair is never cut', () => {
    const text = '😀'.repeat(25)
    const chunks = chunkText(text, { size: 10, boundaries: [] })
    expect(chunks.map((c) => codePointLength(c.text))).toEqual([10, 10, 5])
    expect(chunks.map((c) => c.text).join('')).toBe(text)
    // an odd overlap never lands inside a pair either
    const over = chunkText(text, { size: 10, overlap: 3, boundaries: [] })
    for (const c of over) expect(c.text.startsWith('😀') && c.text.endsWith('😀')).toBe(true)
  })

  test('a huge text without whitespace stays linear enough', () => {
    const text = 'a'.repeat(2_000_000)
    const t = performance.now()
    const chunks = chunkText(text, { size: 1000, overlap: 100 })
    expect(chunks.length).toBe(Math.ceil((2_000_000 - 100) / 900))
    expect(performance.now() - t).toBeLessThan(20_000)
  })

  test('options are checked', () => {
    expect(checkChunkOptions({ size: 0 })).toMatch(/^size: expected a whole number of characters >= 1/)
    expect(checkChunkOptions({ size: 10, overlap: 10 })).toMatch(
      /^overlap: expected .* from 0 to size - 1 \(9\), got 10/,
    )
    expect(checkChunkOptions({ size: 10, boundaries: ['line' as ChunkBoundary] })).toMatch(/unknown boundary "line"/)
    expect(checkChunkOptions({ size: 10, overlap: 9, boundaries: [] })).toBeUndefined()
    expect(() => chunkText('x', { size: 1.5 })).toThrow('invalid chunking options: size')
  })
})
