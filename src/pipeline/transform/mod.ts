// Transforms: what a mapping's rows become in turbopuffer.
//   const spec = parseTransformSpec('transforms/product.ts', configDir)   // at config load (config/transform-spec.ts)
//   await validateTransform(spec)                                         // `migrate`: fails early, naming the file
//   const runner = await createTransformRunner(spec, { mapping, log })   // once per mapping
//   const results = await runner.run(events)                             // one validated result per event
// A transform is a TypeScript/JavaScript module (runner.ts), a `bin:` command speaking JSON lines (process.ts), or
// absent (the identity runner). action.ts checks what a transform returned; types.ts is the runner contract.
export { parseTransformSpec, type TransformSpec } from '../../config/transform-spec.ts'
export type { NormalizedAction, TransformResult } from './action.ts'
export type { TransformRunner, TransformRunnerOptions } from './types.ts'
export {
  createIdentityRunner,
  createModuleRunner,
  createTransformRunner,
  type LoadedTransform,
  loadTransform,
  validateTransform,
  validateTransformFile,
} from './runner.ts'
