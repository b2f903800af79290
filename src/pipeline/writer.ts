// Intents → transform → versioned writes → dead-letter queue. Shared by the stream and backfill, so a row takes
// the same path whichever way it arrives.
import type postgres from 'postgres'
import { allSettled } from '../concurrency.ts'
import { addDeadLetters, type DeadLetter } from '../postgres/dlq.ts'
import type { Sink } from '../turbopuffer/types.ts'
import type { Mapping } from '../config/load.ts'
import type { DistanceMetric, Logger, WriteOp } from '../types.ts'
import type { Embedder } from '../embeddings/embedder.ts'
import { clearDropped, redoUnpatched, storedDocuments } from './stored-embeddings.ts'
import { type Intent, intentDeadLetter, type MappingRoute } from './changes.ts'
import { rowDocumentsMode } from '../config/row-documents.ts'
import { type AttributeSpec, type ColumnType, mappingAttributes } from './schema.ts'
import { shapeAttributes } from './attribute-values.ts'
import { forgetTypes, namespaceTypes, rememberTypes, typesWereAssumed } from './namespace-types.ts'
import type { TransformRunner } from './transform/mod.ts'
import { leftDocumentIds, transformWithRetry } from './run-transform.ts'
import { intentNamespace, leavingNamespaces } from './intent-namespace.ts'
import { type Leave, leaveOps, writeLeaves } from './leaves.ts'

export interface RouteRuntime extends MappingRoute {
  runner: TransformRunner
  /** the provider `[mapping.embedding]` uses: a patch that did not apply is redone with its vector from it */
  embedder?: Embedder
}

export interface WriterDeps {
  sink: Sink
  sql: postgres.Sql
  log: Logger
  /** first pause after a retryable transform failure (embedding provider down); doubles up to 30 s */
  retryDelayMs?: number
}

export interface WriteSummary {
  upserted: number
  deleted: number
  /** turned down by the version condition: an older version than the namespace holds */
  skipped: number
  deadLettered: number
  /** dead letters whose value the namespace's (older) attribute type cannot take exactly */
  typeConflicts: number
  byMapping: Map<string, { upserted: number; deleted: number }>
}

/**
 * The table's columns that type this write's schema: those of the newest change in it (the stream: its relation
 * message, so an ALTER COLUMN TYPE takes effect from its first change), else the route's (the catalog's).
 */
function writeColumns(route: RouteRuntime, intents: readonly Intent[]): readonly ColumnType[] | undefined {
  let newest: Intent | undefined
  for (const i of intents) if (i.columns && (!newest || i.lsn >= newest.lsn)) newest = i
  return newest?.columns ?? route.columns
}

/**
 * The metric a mapping's vectors are written with: `[target] distance_metric`, else DEFAULT_DISTANCE_METRIC when the
 * write carries vectors (turbopuffer refuses vectors without one: a pgvector column named `vector`, an embedding or a
 * transform's vector would otherwise dead-letter every row). README, "How PostgreSQL types map to turbopuffer".
 */
export function distanceMetric(m: Mapping, ops: readonly WriteOp[]): DistanceMetric | undefined {
  if (m.distanceMetric) return m.distanceMetric
  const vectors = ops.some((op) =>
    op.kind === 'upsert' ? op.vector : op.kind === 'row' && op.documents.some((d) => d.vector)
  )
  return vectors ? DEFAULT_DISTANCE_METRIC : undefined
}

export const DEFAULT_DISTANCE_METRIC: DistanceMetric = 'cosine_distance'

/** A summary of nothing written yet, to add to. */
export function emptySummary(): WriteSummary {
  return { upserted: 0, deleted: 0, skipped: 0, deadLettered: 0, typeConflicts: 0, byMapping: new Map() }
}

/** One namespace's share of a batch, projected: the ops to write and the intent each op came from. */
export interface Projected {
  namespace: string
  route: RouteRuntime
  /** the attribute schema declared with the write (attributes the namespace has with another type left out) */
  schema: Record<string, AttributeSpec>
  ops: WriteOp[]
  /** origin[k] is the intent of ops[k] */
  origin: Intent[]
}

/**
 * The projection of intents into write ops, the one every writer uses (the stream, backfill, `dlq retry`,
 * `verify --repair`, and `verify`'s expected documents): each route's transform (failures that can pass retried),
 * a skipped delete still deleting, the attributes shaped to the declared schema and to the types the namespace
 * already has (docs/ARCHITECTURE.md, invariants 8 and 12). What cannot be written goes to `dead`; values the
 * namespace's older attribute types cannot take are counted in `conflicts.n`.
 */
export async function projectIntents(
  intents: readonly Intent[],
  dead: DeadLetter[],
  deps: Pick<WriterDeps, 'sink' | 'log' | 'retryDelayMs'>,
  conflicts: { n: number } = { n: 0 },
  leaves?: Leave[],
  /** the writer, which writes again what a tenant namespace refused: its types are taken as none, not read */
  assumeTypes = false,
): Promise<Projected[]> {
  const byRoute = new Map<RouteRuntime, Intent[]>()
  for (const i of intents) {
    const r = i.route as RouteRuntime
    const list = byRoute.get(r)
    if (list) list.push(i)
    else byRoute.set(r, [i])
  }
  const byNamespace = new Map<string, { route: RouteRuntime; ops: WriteOp[]; origin: Intent[] }>()
  for (const [route, all] of byRoute) {
    // the namespace comes from the row's values before the transform sees them (never the transform's choice)
    const list: Intent[] = []
    const where: string[] = []
    const leaving: (readonly string[])[] = []
    // rows with no namespace now (NULL, an invalid name) that still leave the one they were in
    const stray: Intent[] = []
    const strayLeaving: (readonly string[])[] = []
    // every row that leaves a namespace (with or without one now): the only ones whose left documents are named
    const moving: Intent[] = []
    const movingLeaving: (readonly string[])[] = []
    for (const intent of all) {
      const at = intentNamespace(intent)
      const gone = leavingNamespaces(intent, at)
      if (gone.length) {
        moving.push(intent)
        movingLeaving.push(gone)
      }
      if (!at.ok) {
        if (gone.length && leaves) {
          stray.push(intent)
          strayLeaving.push(gone)
        }
        // a delete of a row whose values named no namespace: it never had a document, nothing to tell
        if (intent.kind === 'upsert') dead.push(intentDeadLetter(intent, at.error))
        continue
      }
      list.push(intent)
      where.push(at.namespace)
      leaving.push(gone)
    }
    const results = list.length ? await transformWithRetry(route, list, where, deps) : []
    // a transform may name a row's document after its values (the tenant in its id): the id of the document a moving
    // row had in each namespace it leaves is the transform's for its values there, as a delete
    const leftIds = leaves && route.mapping.transform && moving.length
      ? await leftDocumentIds(route, moving, movingLeaving, deps)
      : undefined
    stray.forEach((intent, k) => {
      // not transformed (no namespace to write to): the row's own id, and the transform's for its earlier values
      const ids = [...leftIds?.get(intent) ?? [], intent.id]
      leaves!.push({ namespaces: strayLeaving[k], intent, ops: leaveOps(route.mapping, intent, ids) })
    })
    for (let k = 0; k < results.length; k++) {
      const res = results[k]
      const intent = list[k]
      let ns = byNamespace.get(where[k])
      if (!ns) byNamespace.set(where[k], ns = { route, ops: [], origin: [] })
      if (leaving[k].length && leaves) {
        // the document the row had there: the transform's id for it (its upsert's or delete's), else the row's
        const a = res.ok && res.action.type !== 'skip' && res.action.type !== 'documents' ? res.action : undefined
        const ids = [...leftIds?.get(intent) ?? [], a?.id ?? intent.id]
        leaves.push({ namespaces: leaving[k], intent, ops: leaveOps(route.mapping, intent, ids) })
      }
      if (!res.ok) {
        dead.push(intentDeadLetter(intent, res.error))
        continue
      }
      let a = res.action
      // a row that was deleted, or left the membership, must lose its document whatever the transform says
      if (a.type === 'skip' && intent.kind === 'delete') a = { type: 'delete', id: intent.id }
      if (a.type === 'skip') continue
      let op: WriteOp
      if (rowDocumentsMode(route.mapping)) {
        // row-documents mode: the row's documents replace all of its older ones, by the row key (invariant 11)
        const documents = a.type === 'documents'
          ? a.documents.map((d) => ({ id: d.id, attributes: d.attributes, vector: d.vector, stored: d.stored }))
          : []
        if (a.type === 'upsert') {
          // chunk-documents.ts and documents.ts turn every upsert into documents: not reached
          dead.push(intentDeadLetter(intent, `mapping ${route.mapping.name}: one document where several were expected`))
          continue
        }
        op = { kind: 'row', id: String(intent.id), version: intent.version, documents }
      } else if (a.type === 'documents') {
        dead.push(intentDeadLetter(intent, `mapping ${route.mapping.name}: several documents for one row`))
        continue
      } else {
        op = a.type === 'upsert'
          ? { kind: 'upsert', id: a.id, attributes: a.attributes, vector: a.vector, version: intent.version }
          : { kind: 'delete', id: a.id, version: intent.version }
        if (a.type === 'upsert' && a.stored) op = { ...op, stored: a.stored } as WriteOp
      }
      ns.ops.push(op)
      ns.origin.push(intent)
    }
  }
  return await allSettled([...byNamespace].map(async ([namespace, entry]): Promise<Projected> => {
    const { route } = entry
    if (!entry.ops.length) return { namespace, route, schema: {}, ops: [], origin: [] }
    const attributes = mappingAttributes(route.mapping, writeColumns(route, entry.origin))
    const existing = await namespaceTypes(deps.sink, namespace, assumeTypes ? route.mapping : undefined)
    // a patch (embeddings paid once) names with null what the row no longer has: every attribute the namespace has
    // now, read again, as another process may have added some since this one read them (a transform's undeclared
    // attribute written by a backfill)
    if (entry.ops.some(hasPatches)) await addAttributesNow(deps.sink, namespace, existing)
    // an attribute the namespace already has with another type (ALTER COLUMN TYPE): not declared again, and its
    // values are converted to the namespace's type exactly, or dead-lettered
    let differ: Map<string, string> | undefined
    const schema: Record<string, AttributeSpec> = {}
    for (const [name, a] of attributes) {
      const t = existing.get(name)
      if (t !== undefined && t !== a.spec.type) (differ ??= new Map()).set(name, t)
      else schema[name] = a.spec
    }
    const ops: WriteOp[] = []
    const origin: Intent[] = []
    const identity = !route.mapping.transform
    for (let k = 0; k < entry.ops.length; k++) {
      const op = entry.ops[k]
      const intent = entry.origin[k]
      if (op.kind === 'upsert' && attributes.size) {
        const bad = shapeAttributes(op.attributes, intent.event.new, attributes, differ, identity)
        if (bad) {
          if (bad.conflict) conflicts.n++
          dead.push(intentDeadLetter(intent, bad.error, op.id))
          continue
        }
      }
      if (op.kind === 'row' && attributes.size) {
        // the row's documents go together or not at all
        const bad = op.documents.map((d) =>
          shapeAttributes(d.attributes, intent.event.new, attributes, differ, identity)
        )
          .find((b) => b !== undefined)
        if (bad) {
          if (bad.conflict) conflicts.n++
          dead.push(intentDeadLetter(intent, bad.error))
          continue
        }
      }
      clearDropped(op, attributes, existing)
      ops.push(op)
      origin.push(intent)
    }
    return { namespace, route, schema, ops, origin }
  }))
}

/** Whether an op has a document to be written by patch (embeddings paid once). */
function hasPatches(op: WriteOp): boolean {
  return op.kind === 'upsert' ? op.stored !== undefined : op.kind === 'row' && op.documents.some((d) => d.stored)
}

/** Adds to `known` (the namespace's cached types) the attributes the namespace has now; a failed read adds none. */
async function addAttributesNow(sink: Sink, namespace: string, known: Map<string, string>): Promise<void> {
  const now = await sink.attributeTypes?.(namespace).catch(() => undefined)
  for (const [name, type] of Object.entries(now ?? {})) if (!known.has(name)) known.set(name, type)
}

/**
 * Transforms and writes one batch of intents (at most one per mapping and id) and dead-letters what a transform
 * rejected or turbopuffer refused, together with `dead` (failures found earlier). Resolves once all of it is durable.
 * Rows that moved between tenant namespaces leave the old one first (writeLeaves), then every namespace's share is
 * written in parallel, each paced by its own write budget (the sink's).
 */
export async function writeIntents(intents: Intent[], dead: DeadLetter[], deps: WriterDeps): Promise<WriteSummary> {
  const summary = emptySummary()
  const conflicts = { n: 0 }
  const leaves: Leave[] = []
  const projected = await projectIntents(intents, dead, deps, conflicts, leaves, true)
  summary.typeConflicts = conflicts.n
  const refused = await writeLeaves(leaves, dead, deps.sink)
  const redo: Intent[] = []
  await allSettled(projected.map((p) => writeProjected(p, refused, summary, dead, deps, redo)))
  if (redo.length) {
    // tenant namespaces whose assumed types were wrong (refused): projected again with the types read since
    const again = await projectIntents(redo, dead, deps, conflicts)
    summary.typeConflicts = conflicts.n
    await allSettled(again.map((p) => writeProjected(p, new Set(), summary, dead, deps)))
  }
  for (const c of summary.byMapping.values()) {
    summary.upserted += c.upserted
    summary.deleted += c.deleted
  }
  if (dead.length) {
    for (const d of dead) {
      if (!d.quiet) {
        deps.log.warn('row sent to the dead-letter queue', { mapping: d.mapping, id: d.docId, error: d.error })
      }
    }
    if (summary.typeConflicts) {
      deps.log.warn("values the namespace's attribute types cannot take went to the dead-letter queue", {
        rows: summary.typeConflicts,
      })
    }
    await addDeadLetters(deps.sql, dead)
  }
  summary.deadLettered = dead.length
  return summary
}

/** One namespace's share written, refusals dead-lettered; with types assumed, a refused write's intents go to `redo`. */
async function writeProjected(
  { namespace, route, schema, ops: all, origin: allOrigin }: Projected,
  refused: ReadonlySet<Intent>,
  summary: WriteSummary,
  dead: DeadLetter[],
  deps: WriterDeps,
  redo?: Intent[],
): Promise<void> {
  let [ops, origin] = [all, allOrigin]
  if (refused.size) {
    const keep = all.flatMap((_op, k) => refused.has(allOrigin[k]) ? [] : [k])
    ;[ops, origin] = [keep.map((k) => all[k]), keep.map((k) => allOrigin[k])]
  }
  if (!ops.length) return
  // types taken as none (a tenant namespace): a refusal may be theirs, so the request is not split but written again
  const assumed = redo !== undefined && typesWereAssumed(deps.sink, namespace)
  const metric = distanceMetric(route.mapping, ops)
  const res = await deps.sink.write(namespace, ops, { schema, distanceMetric: metric, whole: assumed || undefined })
  let embeddedAgain = 0
  if (res.unpatched?.length) {
    // embeddings paid once: a patch that did not apply is redone as an upsert with the vector
    const again = await redoUnpatched(route, namespace, schema, res.unpatched, deps, distanceMetric)
    for (const f of again.failed) res.failed.push(f)
    embeddedAgain = again.embedded
  }
  if (assumed && res.failed.some((f) => f.status !== undefined)) {
    // the refused ops are written again once the namespace's types are read (not counted or dead-lettered here)
    await forgetTypes(deps.sink, namespace)
    deps.log.info('a tenant namespace refused a write; writing it again with its attribute types', { namespace })
    const refusedOps = new Set(res.failed.filter((f) => f.status !== undefined).map((f) => f.op))
    res.failed = res.failed.filter((f) => !refusedOps.has(f.op))
    const keep: number[] = []
    ops.forEach((op, k) => refusedOps.has(op) ? redo!.push(origin[k]) : keep.push(k))
    ;[ops, origin] = [keep.map((k) => ops[k]), keep.map((k) => origin[k])]
  } else if (res.failed.length) await forgetTypes(deps.sink, namespace)
  else await rememberTypes(deps.sink, namespace, schema)
  const failed = new Set<WriteOp>()
  const position = res.failed.length ? new Map(ops.map((op, k) => [op, k])) : undefined
  for (const f of res.failed) {
    failed.add(f.op)
    // origin[k] is the intent of ops[k]: every op the sink was given has one
    const intent = origin[position!.get(f.op)!]
    // no status: the sink did not send it (it breaks a limit turbopuffer would refuse it for)
    const error = f.status
      ? `turbopuffer refused the write (${f.status}): ${f.error}`
      : `not sent to turbopuffer: ${f.error}`
    dead.push(intentDeadLetter(intent, error, f.op.id))
  }
  // the texts not sent because their documents kept their vectors, counted once written (not per try of the batch)
  const kept = ops.reduce((n, op) => n + (failed.has(op) ? 0 : storedDocuments(op)), 0) - embeddedAgain
  if (kept > 0) route.embedder?.storedHits(kept)
  const counts = summary.byMapping.get(route.mapping.name) ?? { upserted: 0, deleted: 0 }
  for (const op of ops) {
    if (failed.size && failed.has(op)) continue
    // a row's documents count as one row: upserted, or deleted when it has none left
    if (op.kind === 'upsert' || op.kind === 'row' && op.documents.length) counts.upserted++
    else counts.deleted++
  }
  summary.byMapping.set(route.mapping.name, counts)
  summary.skipped += res.skipped
}

/**
 * Row-documents mode, after a write that raced the stream (backfill's re-check; docs/ARCHITECTURE.md, "Writers that
 * race the stream"): a row written at `version` whose newer version the stream had already written may have got
 * chunks the newer version lacks (an upsert creates a missing id whatever its condition). For each such row, with
 * `Vn` its highest version: the row's documents older than `Vn` go — the newer version's own documents all carry
 * `Vn`, a still newer write is untouched. Rows with the same `Vn` share a request; others do not, as the filter of a
 * group compares with its highest version. Returns how many rows were swept.
 */
export async function sweepRacedRows(
  sink: Sink,
  namespace: string,
  rowKeys: string[],
  version: string,
): Promise<number> {
  if (!rowKeys.length) return 0
  if (!sink.newerRowVersions) throw new Error('this sink cannot query rows: chunked mappings need turbopuffer')
  const newer = await sink.newerRowVersions(namespace, rowKeys, version)
  const byVersion = new Map<string, WriteOp[]>()
  for (const [key, v] of newer) {
    const list = byVersion.get(v) ?? []
    list.push({ kind: 'row', id: key, version: v, documents: [] })
    byVersion.set(v, list)
  }
  await allSettled([...byVersion.values()].map((ops) => sink.write(namespace, ops)))
  return newer.size
}
