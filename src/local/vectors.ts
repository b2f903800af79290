// Vectors arrive as arrays of numbers or as base64 of little-endian f32; distances are exact (no index here).
import { Buffer } from 'node:buffer'
import type { DistanceMetric } from '../types.ts'
import { badRequest, show } from './errors.ts'
import { LIMITS, violation } from './rules.ts'

export const DISTANCE_METRICS: DistanceMetric[] = ['cosine_distance', 'euclidean_squared']

export function parseVector(value: unknown, what = 'vector'): number[] {
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'base64')
    if (bytes.length === 0 || bytes.length % 4 !== 0) throw badRequest(`invalid ${what}: bad base64 f32 data`)
    checkDims(bytes.length / 4, what)
    const out: number[] = []
    for (let i = 0; i < bytes.length; i += 4) out.push(bytes.readFloatLE(i))
    return out
  }
  if (!Array.isArray(value) || value.length === 0) {
    throw badRequest(`invalid ${what} ${show(value)}: expected a non-empty array of numbers`)
  }
  for (const x of value) {
    if (typeof x !== 'number' || !Number.isFinite(x)) throw badRequest(`invalid ${what}: ${show(x)} is not a number`)
  }
  checkDims(value.length, what)
  return value as number[]
}

export function checkDims(dims: number, what = 'vector'): void {
  if (dims > LIMITS.vectorDimensions) {
    throw violation(
      'vector-dimensions',
      `invalid ${what}: ${dims} dimensions, at most ${LIMITS.vectorDimensions}`,
    )
  }
}

export function encodeVectorBase64(v: number[]): string {
  const bytes = Buffer.alloc(v.length * 4)
  v.forEach((x, i) => bytes.writeFloatLE(x, i * 4))
  return bytes.toString('base64')
}

export function distance(metric: DistanceMetric, a: number[], b: number[]): number {
  if (metric === 'euclidean_squared') {
    let sum = 0
    for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) ** 2
    return sum
  }
  let dot = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i]
    na += a[i] * a[i]
    nb += b[i] * b[i]
  }
  // a zero vector has no direction; call it maximally far rather than NaN
  if (na === 0 || nb === 0) return 1
  return 1 - dot / Math.sqrt(na * nb)
}
