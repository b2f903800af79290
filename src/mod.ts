// The public API for transform authors: `import type { RowEvent, Action, TransformContext } from 'puffgres'`.
// Type-only imports are erased at run time, so a transform that only imports types works wherever puffgres runs
// (installed package, JSR, or the single-file binary).
// every type a transform sees (RowEvent, Action, TransformContext, Transform, …): the module whose text init writes
export type * from './transform-types.ts'
export type { NormalizedAction, TransformResult } from './pipeline/transform/mod.ts'
import type { BatchTransform, Transform } from './transform-types.ts'

/**
 * Identity helper that types a per-event transform: `export default defineTransform((event, ctx) => …)`.
 * Unlike the type imports above, this is a value: the module 'puffgres' must resolve when the transform is loaded.
 */
export function defineTransform<T extends Transform>(fn: T): T {
  return fn
}

/** Identity helper for the batch form; the module must also `export const batch = true`. */
export function defineBatchTransform<T extends BatchTransform>(fn: T): T {
  return fn
}
