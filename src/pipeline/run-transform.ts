// A route's transform run over intents (pipeline/writer.ts): retried while it fails for a reason that can pass, and
// asked, for rows that move between tenant namespaces, which document each had where it leaves.
import type { Sink } from '../turbopuffer/types.ts'
import type { Id, Logger } from '../types.ts'
import { backoffDelay, sleep } from '../retry.ts'
import type { Intent, MappingRoute } from './changes.ts'
import { leftRowDeletes } from './leaves.ts'
import { storedHashLookup } from './stored-embeddings.ts'
import type { TransformResult, TransformRunner } from './transform/mod.ts'

type TransformRoute = MappingRoute & { runner: TransformRunner }
type TransformDeps = { sink: Sink; log: Logger; retryDelayMs?: number }

/**
 * The ids the transform gives the documents the moving rows of `list` (those `leaving` a namespace) had there: each
 * row's earlier values as a delete (leaves.ts leftRowDeletes). A failed transform names none (the row's own id and its
 * new document's are deleted anyway).
 */
export async function leftDocumentIds(
  route: TransformRoute,
  list: Intent[],
  leaving: readonly (readonly string[])[],
  deps: TransformDeps,
): Promise<Map<Intent, Id[]>> {
  const out = new Map<Intent, Id[]>()
  const deletes: Intent[] = []
  const of: Intent[] = []
  const where: string[] = []
  list.forEach((intent, k) => {
    if (!leaving[k].length) return
    for (const d of leftRowDeletes(intent)) {
      deletes.push(d)
      of.push(intent)
      where.push(leaving[k][0])
    }
  })
  const ids = await deleteDocumentIds(route, deletes, where, deps)
  ids.forEach((id, k) => {
    if (id === undefined) return
    const list = out.get(of[k])
    if (list) list.push(id)
    else out.set(of[k], [id])
  })
  return out
}

/**
 * The id the transform gives each delete intent's document (undefined where it fails, skips or answers no delete):
 * a transform may name a row's document otherwise than the row (`'n' + id`, the tenant in the id), so the document a
 * row has is known from its values only by asking. `namespaces`: each intent's, as transformWithRetry takes them.
 */
export async function deleteDocumentIds(
  route: TransformRoute,
  deletes: Intent[],
  namespaces: readonly string[],
  deps: TransformDeps,
): Promise<(Id | undefined)[]> {
  if (!deletes.length) return []
  const results = await transformWithRetry(route, deletes, namespaces, deps)
  return results.map((r) => r.ok && r.action.type === 'delete' ? r.action.id : undefined)
}

/** Runs a route's transform; failures an unavailable dependency caused are retried, not dead-lettered. */
export async function transformWithRetry(
  route: TransformRoute,
  intents: Intent[],
  namespaces: readonly string[],
  deps: TransformDeps,
) {
  const events = intents.map((i) => i.event)
  // embeddings paid once: the stored documents' hashes, asked of the namespace each row's documents are in
  // (`namespaces`, projectIntents' for each intent: a namespace per tenant is the one the row's values name; a row
  // that moves finds nothing stored in the new one)
  const storedHashes = storedHashLookup(deps.sink, route.mapping, intents, namespaces)
  const run = (list: typeof events) => route.runner.run(list, { storedHashes })
  let results: TransformResult[] = await run(events)
  for (let attempt = 1; results.some((r) => !r.ok && r.retryable); attempt++) {
    const idx = results.flatMap((r, k) => (!r.ok && r.retryable ? [k] : []))
    const delay = backoffDelay(attempt - 1, { baseMs: deps.retryDelayMs ?? 500, maxMs: 30_000 })
    deps.log.warn('transform failed for a reason that can pass (e.g. the embedding provider); retrying', {
      mapping: route.mapping.name,
      rows: idx.length,
      attempt,
      delay_ms: delay,
      error: (results[idx[0]] as { error: string }).error,
    })
    await sleep(delay)
    const again = await run(idx.map((k) => events[k]))
    results = results.slice()
    idx.forEach((k, j) => results[k] = again[j])
  }
  return results
}
