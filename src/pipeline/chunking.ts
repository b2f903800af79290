// Splits a long text into chunks for chunk documents (docs/ARCHITECTURE.md, "A row's documents"; issue 25). Sizes
// are in characters — Unicode code points, so an emoji counts once and a chunk never ends inside a surrogate pair —
// not in tokens: a token count depends on the embedding model's tokenizer, a character count does not, and the same
// text must always give the same chunks (chunk ids and the embedding content hash rely on it). For English text a
// token is about 4 characters; to stay under a model's limit of T tokens, a size of 3·T is a safe choice.
//
// Each chunk ends at the best boundary in the second half of its window: the end of a paragraph (a blank line) if
// there is one, else the end of a sentence, else the end of a word, else exactly `size` characters (a word longer
// than a chunk is cut). A paragraph ends at a blank line; a sentence at `.`, `!`, `?` or `…` (closing quotes and
// brackets included) before whitespace, or at CJK `。！？` — a heuristic: "e.g. " ends a sentence too. A boundary
// ends after the whitespace that follows it, so the next chunk starts at a word.
// The chunks are exact slices of the text: without overlap they concatenate back to it. With overlap each chunk
// after the first starts at the first word start among the last `overlap` characters of the previous chunk (whole
// words only, so the overlap may be shorter), or exactly `overlap` characters back when those hold no whitespace
// (inside a word longer than the overlap) or when `boundaries` is empty.

// the boundary names are the configuration's ([mapping.chunking] boundaries), so they live in config/
import { CHUNK_BOUNDARIES, type ChunkBoundary } from '../config/row-documents.ts'
export { CHUNK_BOUNDARIES, type ChunkBoundary }

export interface ChunkOptions {
  /** most characters (code points) in one chunk, ≥ 1 */
  size: number
  /** characters the next chunk repeats from the end of the previous one, 0 ≤ overlap < size (default 0) */
  overlap?: number
  /** where a chunk may end, most preferred first (default: paragraph, sentence, word); [] cuts at `size` */
  boundaries?: readonly ChunkBoundary[]
}

export interface Chunk {
  /** 0, 1, 2, … in text order */
  index: number
  /** `source.slice(start, end)` */
  text: string
  /** UTF-16 offsets into the source text */
  start: number
  end: number
}

// Each pattern's match ends where a chunk may end: after the whitespace that closes a paragraph, a sentence or a word.
const PATTERNS: Record<ChunkBoundary, RegExp> = {
  paragraph: /\n[^\S\n]*\n\s*/g,
  sentence: /[.!?…。！？]+["'”’)\]]*\s+|[。！？]+/gu,
  word: /\s+/g,
}

/** Why the options cannot chunk, or undefined. */
export function checkChunkOptions(opts: ChunkOptions): string | undefined {
  const { size, overlap = 0, boundaries = CHUNK_BOUNDARIES } = opts
  if (!Number.isInteger(size) || size < 1) return `size: expected a whole number of characters >= 1, got ${size}`
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= size) {
    return `overlap: expected a whole number of characters from 0 to size - 1 (${size - 1}), got ${overlap}`
  }
  for (const b of boundaries) {
    if (!CHUNK_BOUNDARIES.includes(b)) return `boundaries: unknown boundary "${b}" (paragraph, sentence or word)`
  }
  return undefined
}

const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff

/** The offset `count` code points after `from` (or the text's end). */
function forward(text: string, from: number, count: number): number {
  let i = from
  for (let n = 0; n < count && i < text.length; n++) {
    i += isHigh(text.charCodeAt(i)) && i + 1 < text.length && isLow(text.charCodeAt(i + 1)) ? 2 : 1
  }
  return i
}

/** The offset `count` code points before `from` (or 0). */
function backward(text: string, from: number, count: number): number {
  let i = from
  for (let n = 0; n < count && i > 0; n++) {
    i -= i >= 2 && isLow(text.charCodeAt(i - 1)) && isHigh(text.charCodeAt(i - 2)) ? 2 : 1
  }
  return i
}

/** Characters (code points) of a string. */
export function codePointLength(text: string): number {
  let n = 0
  for (let i = 0; i < text.length; i++) if (!(isLow(text.charCodeAt(i)) && i > 0 && isHigh(text.charCodeAt(i - 1)))) n++
  return n
}

/** The last end of a `kind` boundary in [from, to], or -1. */
function lastBoundary(text: string, kind: ChunkBoundary, from: number, to: number): number {
  // a slice, so that a pattern finding nothing stops at the window; a little wider on both sides: a boundary that
  // starts before `from` may end inside the window, and one whose whitespace runs past `to` does not end inside it
  const offset = Math.max(0, from - 16)
  const window = text.slice(offset, Math.min(text.length, to + 16))
  const re = new RegExp(PATTERNS[kind].source, PATTERNS[kind].flags)
  let best = -1
  for (let m = re.exec(window); m !== null; m = re.exec(window)) {
    const end = offset + m.index + m[0].length
    if (end > to) break
    if (end >= from) best = end
  }
  return best
}

/**
 * Where the chunk after one ending at `end` starts: the first word start among the last `overlap` characters
 * (whole words, so the overlap may be shorter), or exactly `overlap` back when they hold no whitespace or `exact`.
 */
function overlapStart(text: string, end: number, overlap: number, exact: boolean): number {
  const back = backward(text, end, overlap)
  if (exact || back === 0 || /\s/.test(text[back - 1]) && !/\s/.test(text[back])) return back
  const m = /\s+/.exec(text.slice(back, end))
  return m ? back + m.index + m[0].length : back
}

/** Splits `text` into chunks; an empty text has none. Deterministic: the same text and options, the same chunks. */
export function chunkText(text: string, opts: ChunkOptions): Chunk[] {
  const bad = checkChunkOptions(opts)
  if (bad) throw new Error(`invalid chunking options: ${bad}`)
  const { size, overlap = 0, boundaries = CHUNK_BOUNDARIES } = opts
  const chunks: Chunk[] = []
  let start = 0
  while (start < text.length) {
    const limit = forward(text, start, size)
    let end = limit
    if (limit < text.length) {
      // a boundary counts only in the second half of the window, so chunks stay at least half full
      const half = forward(text, start, Math.ceil(size / 2))
      for (const kind of boundaries) {
        const b = lastBoundary(text, kind, half, limit)
        if (b > start) {
          end = b
          break
        }
      }
    }
    chunks.push({ index: chunks.length, text: text.slice(start, end), start, end })
    if (end >= text.length) break
    const next = overlap > 0 ? overlapStart(text, end, overlap, boundaries.length === 0) : end
    // always move forward, whatever the overlap
    start = next > start ? next : forward(text, start, 1)
  }
  return chunks
}
