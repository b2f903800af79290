// How turbopuffer counts the size of an attribute value and of a document, and its limits on them (one value ≤ 8 MiB,
// one document ≤ 64 MiB). One measure for both sides: the sink refuses a document over a limit before sending it
// (write-plan.ts), and the local server refuses the same write (local/rules.ts `value-size`, `document-size`).
import { Buffer } from 'node:buffer'

/** one attribute value */
export const VALUE_BYTES = 8 * 1024 * 1024
/** one document: its attribute values and its vector */
export const DOCUMENT_BYTES = 64 * 1024 * 1024
/** a vector is stored as f32: 4 bytes a dimension */
export const VECTOR_DIMENSION_BYTES = 4
/** numbers, bools and every other element that is not a string */
const SCALAR_BYTES = 8

/** A value's size: a string (or string element) by its UTF-8 bytes, anything else 8 bytes; null nothing. */
export function valueBytes(value: unknown): number {
  if (value === null || value === undefined) return 0
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8')
  if (!Array.isArray(value)) return SCALAR_BYTES
  let n = 0
  for (const v of value) {
    if (typeof v === 'string') n += Buffer.byteLength(v, 'utf8')
    else if (v !== null && v !== undefined) n += SCALAR_BYTES
  }
  return n
}

/** A vector's size: 4 bytes a dimension (as an array of numbers; base64 f32 is that many bytes already). */
export function vectorBytes(vector: unknown): number {
  if (Array.isArray(vector)) return vector.length * VECTOR_DIMENSION_BYTES
  return typeof vector === 'string' ? Math.floor(vector.length / 4) * 3 : 0
}
