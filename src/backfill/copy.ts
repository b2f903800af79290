// The copy of one backfill: keyset pages read, decoded, written and re-checked, checkpointed in page order.
// Rows are read in keyset pages, one COPY each, of several batches (about PAGE_ROWS rows), so that the costs paid
// per query (PostgreSQL's round trip, the snapshot LSN, the re-check, the checkpoint) are paid once per many rows.
// A batch (`--batch-size` rows) is one transform call and one write; a page's batches are written a few at a time.
// Pipeline: page n+1 is fetched while page n is written; the re-checks of the last pages written run meanwhile, so
// at most MAX_RECHECKS + 2 pages are in memory whatever the table size. A checkpoint covers a page only once it and
// every page before it are written and re-checked, so `--resume` never skips a row or a re-check.
//
// A page's key texts are recorded (__puffgres_backfill_pages) before any of its documents is written, and forgotten
// with the checkpoint that covers it. A run that dies between the two may have written documents it never
// re-checked, and a page read again after it no longer holds the rows deleted meanwhile; so every backfill first
// re-checks the pages an earlier run left recorded.
import { rowDocumentsMode } from '../config/row-documents.ts'
import { sinkFromConfig } from '../turbopuffer/from-config.ts'
import { setImmediate } from 'node:timers'
import { AdaptiveLimit, forEachAdaptive } from '../concurrency.ts'
import type { Config, Mapping } from '../config/load.ts'
import { formatLsn } from '../postgres/lsn.ts'
import type { Intent } from '../pipeline/changes.ts'
import { deleteIntent } from '../pipeline/row-identity.ts'
import { type RowKey, textKey } from '../pipeline/row-key.ts'
import { emptySummary, type RouteRuntime, writeIntents, type WriteSummary } from '../pipeline/writer.ts'
import { DiscardSink } from '../turbopuffer/discard.ts'
import { encodeVersion, type Id } from '../types.ts'
import { movedRowDeletes, pageRowNamespaces, placeDelete, type Routed, sweepPage } from './tenant-pages.ts'
import { recheckLeftovers } from './leftover-pages.ts'
import { type BackfillRecord, finishBackfill, recordPage, saveCheckpoint } from './checkpoint.ts'
import {
  decodePage,
  lastKeyOf,
  movedCandidates,
  type Page,
  pageLsn,
  placeholderTexts,
  type RawPage,
  type ReadPlan,
  readRawPage,
  type RecheckedPage,
  recheckPage,
  textArrayLiteral,
} from '../source/mod.ts'
import type { CopyRow } from '../postgres/copy-text.ts'
import { createProgress } from './progress.ts'
import { batchIntents } from './page-intents.ts'
import { writeTenantPage } from './tenant-page-writer.ts'
import { isTenantMapping } from '../pipeline/row-namespace.ts'
import type { BackfillCtx, BackfillOptions, BackfillResult, BackfillStats } from './options.ts'

/** the rows a keyset page (one COPY) aims at */
const PAGE_ROWS = 10_000
/** at most this many batches per page, so that small batches still checkpoint often */
const MAX_BATCHES_PER_PAGE = 10
/**
 * batches written at once, at most: a turbopuffer write takes hundreds of milliseconds whatever its size, and one
 * batch at a time would bind the backfill to that latency. Four 1000-row batches in flight already pass the
 * per-namespace limit (10,000 writes/s) at turbopuffer's ~170 ms per write, so the AIMD limit (concurrency.ts) only
 * halves on 429 and grows back to this: more would only bring 429 storms.
 */
const WRITES_IN_FLIGHT = 4
/**
 * a tenant mapping's namespace batches written at once, at most: a page's rows spread over many namespaces, each
 * batch small and paced by its own namespace's budget, so many more requests may be in flight (AIMD-halved on 429s)
 */
const TENANT_WRITES_IN_FLIGHT = 256
/**
 * batches a tenant mapping's page holds: a page's rows spread over the tenants, so a tenant gets a full batch in a page
 * only when the page has many batches (the pool holds at most one page of rows)
 */
const TENANT_BATCHES_PER_PAGE = 35
/** a tenant page's re-check reads the rows' placeholder columns this many keys at a time (tenant-pages.ts) */
const MOVED_KEYS = 1000
/** written pages whose re-check may be in flight at once (each holds only its key texts) */
const MAX_RECHECKS = 4
/** rows decoded per turn of the event loop given to reading the socket (see writePage) */
const ROWS_PER_YIELD = 250

/**
 * Rows per keyset page for a batch size: a whole number of batches, about PAGE_ROWS, 1 to MAX_BATCHES_PER_PAGE; for a
 * tenant mapping (`tenants`), TENANT_BATCHES_PER_PAGE batches.
 */
export function pageRows(batchSize: number, tenants = false): number {
  if (tenants) return batchSize * TENANT_BATCHES_PER_PAGE
  return batchSize * Math.max(1, Math.min(MAX_BATCHES_PER_PAGE, Math.floor(PAGE_ROWS / batchSize)))
}

/** The rows of `rows` with distinct key texts, the last of each. */
function dedupeByKey(plan: ReadPlan, rows: CopyRow[]): CopyRow[] {
  const byKey = new Map<string, CopyRow>()
  for (const r of rows) byKey.set(plan.keyIndex.map((k) => r[k]).join('\0'), r)
  return byKey.size === rows.length ? rows : [...byKey.values()]
}

/**
 * A tenant mapping's page: the texts of its placeholder columns as read (`placeholders[j][i]`, column-wise as `keys`),
 * for the re-check's look for rows that moved (source/page.ts movedCandidates)
 */
type Placed = { placeholders?: (string | null)[][] }

/** What is kept of a page once it is written (not its rows): for its re-check and its checkpoint. */
type WrittenPage = RecheckedPage & Pick<Page, 'count' | 'lastKey'> & { pageId: string } & Routed & Placed

/** A page as read, with its keys and its id in the journal of pages in flight (not for an empty page). */
type ReadPage = RawPage & Partial<RecheckedPage> & { recorded?: Promise<string> } & Routed & Placed

/** Swallows an unhandled rejection of a promise that is awaited later (or abandoned on an earlier failure). */
function later<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {})
  return p
}

export async function copy(
  config: Config,
  m: Mapping,
  plan: ReadPlan,
  route: RouteRuntime,
  opts: BackfillOptions,
  ctx: BackfillCtx,
  resumeFrom: BackfillRecord | undefined,
): Promise<BackfillResult> {
  const { sql, log, batchSize } = ctx
  const tenants = isTenantMapping(m)
  const inFlight = tenants ? TENANT_WRITES_IN_FLIGHT : WRITES_IN_FLIGHT
  const writesInFlight = new AdaptiveLimit({ initial: inFlight, max: inFlight })
  const sink = opts.sink ?? (opts.discard ? new DiscardSink() : sinkFromConfig(
    config.turbopuffer,
    {
      log,
      onRetry: (info) => {
        if (info.status === 429) writesInFlight.pushback()
      },
    },
  ))
  const deps = { sink, sql, log }
  const started = Date.now()
  const stats: BackfillStats = {
    mapping: m.name,
    rows: 0,
    rowsDone: resumeFrom?.rowsDone ?? 0,
    docsWritten: 0,
    deleted: 0,
    skipped: 0,
    deadLettered: 0,
    nullIds: 0,
    ms: 0,
    resumed: !!resumeFrom,
  }
  const progress = opts.progress === false ? undefined : createProgress({
    mapping: m.name,
    total: plan.estimate,
    startRows: stats.rowsDone,
    tty: opts.progress?.tty ?? false,
    write: opts.progress?.write ?? (() => {}),
    log,
  })
  const keyColumns = plan.keyIndex.map((k) => plan.columns[k])
  const pageCtx = { m, plan, route }
  const tenantCtx = {
    ...pageCtx,
    batchSize,
    limit: writesInFlight,
    writer: deps,
    pool: opts.tenantPool,
    peaks: { open: 0, rows: 0, inFlight: 0 },
  }
  /** the key of a page's row i: its id columns as COPY printed them (`keys[j][i]`), decoded as the stream does */
  const pageKey = (keys: readonly string[][], i: number): RowKey => textKey(m, keyColumns, keys.map((k) => k[i]))
  /** the document ids of a page's rows (none for a row that never had one: a negative integer id) */
  const pageIds = (keys: readonly string[][]): Id[] => {
    const out: Id[] = []
    for (let i = 0; i < (keys[0]?.length ?? 0); i++) {
      const id = pageKey(keys, i).id
      if (id !== undefined) out.push(id)
    }
    return out
  }

  /**
   * Decodes and writes a page in batches, writesInFlight at once (decoded a batch at a time, so that memory holds
   * the page's texts and a few batches' rows); rows that cannot be decoded go to the DLQ. Nothing is written before
   * the page is in the journal of pages in flight.
   */
  const writePage = async (raw: ReadPage): Promise<WriteSummary> => {
    // without a unique index two rows can share an id; one write per id (the last one read)
    const values = plan.keyIndexed ? raw.rows : dedupeByKey(plan, raw.rows)
    // a tenant mapping: where each row went is noted for the page's re-check (tenant-pages.ts)
    if (tenants) return await writeTenantPage(tenantCtx, raw.lsn, values, raw.recorded, raw.namespaces ??= new Map())
    const starts: number[] = []
    for (let i = 0; i < values.length; i += batchSize) starts.push(i)
    const written = emptySummary()
    await forEachAdaptive(starts, writesInFlight, async (start) => {
      // Let the socket be read between batches: the next page arrives while this one is decoded, and PostgreSQL
      // does not sit with a full socket buffer. A turn of the event loop reads only part of what has come, so as
      // many turns as the batch has ROWS_PER_YIELD rows (with a sink that answers at once, nothing else yields).
      for (let n = Math.min(batchSize, values.length - start); n > 0; n -= ROWS_PER_YIELD) {
        await new Promise((resolve) => setImmediate(resolve))
      }
      const { intents, dead } = batchIntents(pageCtx, decodePage(plan, raw.lsn, values.slice(start, start + batchSize)))
      // nothing is written before the page is in the journal of pages in flight (its insert ran meanwhile)
      await raw.recorded
      const s = await writeIntents(intents, dead, deps)
      written.upserted += s.upserted
      written.deleted += s.deleted
      written.skipped += s.skipped
      written.deadLettered += s.deadLettered
      written.typeConflicts += s.typeConflicts
    })
    return written
  }

  /** Deletes the rows of a written page that went away (or left the predicate) since it was read. */
  const recheck = async (page: RecheckedPage & Routed & Placed): Promise<WriteSummary | undefined> => {
    const { whereOf, wrote } = await pageRowNamespaces(sink, m, page)
    if (rowDocumentsMode(m)) {
      // chunks the stream's newer version of a row lacks, written by this page after it (invariant 11)
      const swept = await sweepPage(deps.sink, pageIds(page.keys), whereOf, encodeVersion(page.lsn, 0))
      if (swept) log.debug('re-check: stale chunks of rows the stream rewrote meanwhile removed', { rows: swept })
    }
    const { lsn, stale } = await recheckPage(sql, plan, page, log)
    // (not known where its rows went, when the sink cannot find a page an interrupted run left: looking for each row
    // still there in every namespace of the mapping would be a delete of the whole page in each; `verify` finds it)
    const moved = tenants && wrote ? await movedRows(page, stale, wrote, lsn) : []
    if (!stale.length && !moved.length) return undefined
    const intents: Intent[] = moved
    for (const i of stale) {
      // from the key texts: the page's rows are not kept once written
      const key = pageKey(page.keys, i)
      // undefined for a row that never had a document (a negative integer id): nothing to delete
      const id = key.id
      if (id !== undefined) intents.push(...placeDelete(m, deleteIntent(route, { ...key, id }, lsn), whereOf(id)))
    }
    log.debug('re-check: rows gone, out of the predicate or moved to another tenant since their page was read', {
      mapping: m.name,
      rows: stale.length,
      ...(tenants ? { moved: moved.length } : {}),
    })
    return await writeIntents(intents, [], deps)
  }

  /**
   * A tenant mapping: the deletes of the page's rows (not stale) that moved since from where the page wrote them
   * (`wrote`; rows it wrote nowhere are not read: tenant-pages.ts). With the placeholder columns' texts the page read,
   * only the rows whose placeholder columns print otherwise now are read again (usually none: reading every row of
   * the page again cost the backfill a tenth of its rate); without them (a page an interrupted run left), every row.
   */
  const movedRows = async (page: RecheckedPage & Placed, stale: number[], wrote: (id: Id) => string[], lsn: bigint) => {
    const gone = new Set(stale)
    const n = page.keys[0]?.length ?? 0
    const positions = page.placeholders ? await movedCandidates(sql, plan, page, page.placeholders) : undefined
    const out: Intent[] = []
    // a thousand keys a query (read-rows.ts), built a thousand at a time: a page's keys are not all decoded at once
    const count = positions?.length ?? n
    for (let from = 0; from < count; from += MOVED_KEYS) {
      const keys: (RowKey & { id: Id })[] = []
      for (let p = from; p < Math.min(count, from + MOVED_KEYS); p++) {
        const i = positions ? positions[p] : p
        if (gone.has(i)) continue
        const key = pageKey(page.keys, i)
        if (key.id !== undefined && wrote(key.id).length) keys.push({ ...key, id: key.id })
      }
      out.push(...await movedRowDeletes(sql, plan, route, keys, wrote, lsn))
    }
    return out
  }

  // Pages completed in order (written and re-checked) whose progress is not saved yet. Saves are coalesced: one in
  // flight, then one for the newest completed page, so a slow commit does not hold the pipeline up.
  let unsaved = { rows: 0, docs: 0, lastKey: undefined as string[] | undefined, lsn: 0n, pageId: '' }
  let saving: Promise<void> = Promise.resolve()
  const save = (): Promise<void> => {
    saving = saving.then(async () => {
      const u = unsaved
      if (!u.lastKey) return
      unsaved = { rows: 0, docs: 0, lastKey: undefined, lsn: 0n, pageId: '' }
      await saveCheckpoint(sql, m.name, m.version, {
        lastKey: u.lastKey,
        rows: u.rows,
        docs: u.docs,
        snapshotLsn: formatLsn(u.lsn),
        pageId: u.pageId,
      })
      opts.onCheckpoint?.({ lastKey: u.lastKey, rowsDone: stats.rowsDone })
    })
    return saving
  }
  const complete = (page: WrittenPage, written: WriteSummary, deletes: WriteSummary | undefined) => {
    stats.rows += page.count
    stats.rowsDone += page.count
    stats.docsWritten += written.upserted
    stats.skipped += written.skipped + (deletes?.skipped ?? 0)
    stats.deadLettered += written.deadLettered + (deletes?.deadLettered ?? 0)
    stats.deleted += deletes?.deleted ?? 0
    unsaved.rows += page.count
    unsaved.docs += written.upserted
    unsaved.lastKey = page.lastKey
    unsaved.lsn = page.lsn
    unsaved.pageId = page.pageId
    progress?.update(stats.rowsDone)
  }

  /** Re-checks a written page, then (after the page before it) counts it and saves the checkpoint. */
  const finish = (page: WrittenPage, written: WriteSummary, before: Promise<void>): Promise<void> => {
    const checked = later(recheck(page))
    return later((async () => {
      const deletes = await checked
      await before
      complete(page, written, deletes)
      await save()
    })())
  }

  // What an earlier run may have written and never re-checked (see the top of this file).
  await recheckLeftovers({ sql, sink, log, m, say: ctx.say, pageIds }, recheck, stats)

  // Page n+1 is read while page n is decoded and written, and the snapshot LSN of page n+2 is taken meanwhile (any
  // LSN taken before a page's read can version it), so the loop waits for PostgreSQL as little as possible. A page
  // is recorded in the journal of pages in flight while its first batch is decoded, and written only after that.
  const limit = pageRows(batchSize, tenants)
  let nextLsn = later(pageLsn(sql, log))
  let recording: Promise<string> = Promise.resolve('')
  const fetch = (after: readonly string[] | undefined): Promise<ReadPage> => {
    const lsn = nextLsn
    const raw = readRawPage(sql, plan, after, limit, { log, lsn }).then(async (raw): Promise<ReadPage> => {
      if (!raw.rows.length) return raw
      // the re-check's parameters, built once: recorded now, sent after the write
      const keys = plan.keyIndex.map((k) => raw.rows.map((r) => r[k] as string))
      const literals = keys.map(textArrayLiteral)
      const placeholders = tenants ? placeholderTexts(plan, raw.rows) : undefined
      // one after another: journal ids follow page order, which the checkpoint's clean-up (id <= its page's) needs
      recording = later(recording.then(() => recordPage(sql, m.name, m.version, formatLsn(raw.lsn), literals)))
      return { ...raw, keys, literals, placeholders, recorded: recording }
    })
    nextLsn = later(lsn.then(() => pageLsn(sql, log)))
    return later(raw)
  }
  let fetching: Promise<ReadPage> | undefined = fetch(resumeFrom?.lastKey ?? undefined)
  /** the last written page's re-check and checkpoint; each waits for the one before (checkpoints in page order) */
  let ordered: Promise<void> = Promise.resolve()
  const finishing: Promise<void>[] = []
  let stopped = false
  try {
    while (fetching) {
      const raw: ReadPage = await fetching
      const last = raw.rows.length < limit
      stopped = !last && !!opts.signal?.aborted
      fetching = last || stopped ? undefined : fetch(lastKeyOf(plan, raw.rows))
      if (!raw.rows.length) continue
      // taken before the write: a tenant page lets go of its rows as they are written (tenant-page-writer.ts)
      const lastKey = lastKeyOf(plan, raw.rows)
      const count = raw.rows.length
      const written = await writePage(raw)
      const page: WrittenPage = {
        namespaces: raw.namespaces,
        lsn: raw.lsn,
        keys: raw.keys!,
        literals: raw.literals,
        placeholders: raw.placeholders,
        count,
        lastKey,
        pageId: await raw.recorded!,
      }
      ordered = finish(page, written, ordered)
      finishing.push(ordered)
      // bounded: a few pages being re-checked at once, whatever the table size
      if (finishing.length >= MAX_RECHECKS) await finishing.shift()
    }
    await ordered
    await saving
  } finally {
    await Promise.allSettled([fetching, nextLsn, recording, ordered, saving])
    progress?.stop()
  }
  stats.ms = Date.now() - started
  if (tenants) stats.pool = tenantCtx.peaks
  if (stopped) return { outcome: 'stopped', ...stats }
  const [{ n }] = await sql.unsafe<{ n: number }[]>(plan.nullIdSql)
  stats.nullIds = n
  if (n > 0) {
    log.warn('rows with a NULL id column cannot be documents: skipped', {
      mapping: m.name,
      rows: n,
      id: m.idColumns.join(', '),
    })
  }
  await finishBackfill(sql, m.name, m.version)
  return { outcome: 'done', ...stats }
}
