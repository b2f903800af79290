// The `ctx` handed to TypeScript transforms. One per runner; `ctx.embed` goes through the shared embedder, so
// calls from all rows in flight are merged into few provider requests.
import type { Embedder } from '../../embeddings/embedder.ts'
import type { Logger, TransformContext } from '../../types.ts'

export function createTransformContext(opts: {
  mapping: string
  embedder?: Embedder
  log: Logger
  env?: Record<string, string | undefined>
}): TransformContext {
  const { mapping, embedder } = opts
  function embed(text: string): Promise<number[]>
  function embed(texts: string[]): Promise<number[][]>
  function embed(input: string | string[]): Promise<number[] | number[][]> {
    if (!embedder) {
      return Promise.reject(
        new Error(`mapping ${mapping}: ctx.embed was called but no embedding provider is configured`),
      )
    }
    if (typeof input === 'string') return embedder.embed([input]).then((v) => v[0])
    return embedder.embed(input)
  }
  return { mapping, embed, log: opts.log, env: opts.env ?? (process.env as Record<string, string | undefined>) }
}
