// The page writer of a tenant mapping's backfill (`[target] namespace = "docs_{workspace_id}"`): a page's rows go
// to many namespaces, gathered in a bounded pool of open namespace batches (namespace-batches.ts) and written in
// parallel, each namespace paced by its own write budget in the sink, all through the one write path
// (pipeline/writer.ts writeIntents). Every batch of the page has landed when the page is done, so the page
// checkpoint means what it means for one namespace. The namespace of each row written is noted with the page
// (tenant-pages.ts) for its re-check: a row deleted meanwhile is deleted from the namespace it was written to.
import { setImmediate } from 'node:timers'
import { collectGarbage } from '../runtime.ts'
import type { AdaptiveLimit } from '../concurrency.ts'
import { rowNamespace } from '../pipeline/row-namespace.ts'
import { decodeValue } from '../postgres/values.ts'
import { emptySummary, writeIntents, type WriterDeps, type WriteSummary } from '../pipeline/writer.ts'
import type { Mapping } from '../config/load.ts'
import { idKey, type Row } from '../types.ts'
import type { CopyRow } from '../postgres/copy-text.ts'
import { decodePage, type ReadPlan } from '../source/mod.ts'
import { NamespaceBatches, type PoolPeaks } from './namespace-batches.ts'
import { batchIntents, type PageIntentsCtx } from './page-intents.ts'
import { notePageNamespaces } from './tenant-pages.ts'

/** namespace batches gathering rows at once, at most (README, "Operating tenant mappings") */
const DEFAULT_OPEN_NAMESPACES = 1000
/** rows decoded per turn of the event loop given to reading the socket */
const ROWS_PER_YIELD = 250
/**
 * rows routed between two forced collections on Bun (runtime.ts collectGarbage): with a page's rows let go as their
 * batches are written, 20,000 kept the peak as low as 10,000 did (1M rows over 1,000 tenants: 284-294 MB) for ~8%
 * more rows/s
 */
const GC_ROWS = 20_000
/** what a page's row is replaced with once the pool holds it (the caller took what it needs of the page before) */
const RELEASED: CopyRow = []
/** the pool key of rows without a valid namespace: the writer dead-letters them with rowNamespace's message */
const NO_NAMESPACE = '\0'

export interface TenantPoolOptions {
  /** open namespace batches at most (default DEFAULT_OPEN_NAMESPACES) */
  maxOpen?: number
  /** rows in open batches at most (default: a page) */
  maxRows?: number
}

export interface TenantPageCtx extends PageIntentsCtx {
  batchSize: number
  /** namespace batches written at once (AIMD: halved on 429) */
  limit: AdaptiveLimit
  writer: WriterDeps
  pool?: TenantPoolOptions
  /** the pool's high-water marks, kept across pages */
  peaks: PoolPeaks
}

/**
 * Writes one page of a tenant mapping; resolves once every row of it landed (or was dead-lettered). A row is routed
 * by its placeholder columns alone, decoded as the whole row will be; the pool holds the page's rows as read (no
 * copy), and each namespace batch is decoded only when it is written, so a page's decoded rows are never all in
 * memory at once. `namespaces` gets each written row's namespace (tenant-pages.ts notePageNamespaces). `values` is
 * emptied row by row as the pool takes them (a written batch's rows are not kept until the page ends).
 */
export async function writeTenantPage(
  ctx: TenantPageCtx,
  lsn: bigint,
  values: CopyRow[],
  recorded: Promise<unknown> | undefined,
  namespaces: Map<string, string>,
): Promise<WriteSummary> {
  const { batchSize, plan, m } = ctx
  const written = emptySummary()
  const add = (s: WriteSummary) => {
    written.upserted += s.upserted
    written.deleted += s.deleted
    written.skipped += s.skipped
    written.deadLettered += s.deadLettered
    written.typeConflicts += s.typeConflicts
  }
  const pool = new NamespaceBatches<CopyRow>({
    batchSize,
    maxOpen: ctx.pool?.maxOpen ?? DEFAULT_OPEN_NAMESPACES,
    maxRows: ctx.pool?.maxRows ?? Math.max(batchSize, values.length),
    limit: ctx.limit,
    write: async (namespace, rows) => {
      // decoded now, as the stream decodes: a row that cannot be is a dead letter, written with the batch
      const { intents, dead } = batchIntents(ctx, decodePage(plan, lsn, rows))
      if (namespace === NO_NAMESPACE) notePageNamespaces(intents, namespaces)
      else {
        // routed here by the same placeholder values the whole row decodes to: the namespace is not rendered again
        // (per row, for the write and for the page's notes)
        for (const i of intents) {
          i.namespace = namespace
          namespaces.set(idKey(i.id), namespace)
        }
      }
      add(await writeIntents(intents, dead, ctx.writer))
    },
  })
  const route = placeholderColumns(plan, m)
  // nothing is written before the page is in the journal of pages in flight
  await recorded
  try {
    for (let i = 0; i < values.length; i++) {
      // let the socket be read while the page is routed (see copy.ts writePage)
      if (i % ROWS_PER_YIELD === 0) await new Promise((resolve) => setImmediate(resolve))
      // what the page's writes so far allocated, returned before the next ones pile on (runtime.ts)
      if (i % GC_ROWS === 0 && i > 0) collectGarbage()
      const probe: Row = {}
      let ns: string = NO_NAMESPACE
      try {
        for (const c of route) probe[c.name] = decodeValue(values[i][c.index], c.typeOid, c.typeName)
        const at = rowNamespace(m, probe)
        if (at.ok) ns = at.namespace
      } catch {
        // a placeholder that cannot be decoded: the batch's decode dead-letters the row with the reason
      }
      await pool.add(ns, values[i])
      // the pool holds the row now: once its namespace's batch is written it can go, not at the end of the page
      values[i] = RELEASED
    }
    await pool.drain()
    // what the page's writes allocated, returned before the next page's pile on (runtime.ts)
    collectGarbage()
  } catch (e) {
    await pool.settle()
    throw e
  } finally {
    const p = pool.peaks
    ctx.peaks.open = Math.max(ctx.peaks.open, p.open)
    ctx.peaks.rows = Math.max(ctx.peaks.rows, p.rows)
    ctx.peaks.inFlight = Math.max(ctx.peaks.inFlight, p.inFlight)
  }
  return written
}

/** The page columns a tenant mapping's template reads, with their positions in a page's rows. */
function placeholderColumns(plan: ReadPlan, m: Mapping) {
  return (m.namespaceTemplate?.columns ?? []).map((name) => {
    const index = plan.columns.findIndex((c) => c.name === name)
    // config checks that the template's columns are read (checkTemplateColumns): not reached
    if (index < 0) throw new Error(`mapping ${m.name}: the namespace's {${name}} is not a column the backfill reads`)
    const c = plan.columns[index]
    return { name, index, typeOid: c.typeOid, typeName: c.typeName }
  })
}
