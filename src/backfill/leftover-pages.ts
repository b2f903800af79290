// What an earlier backfill run may have written and never re-checked (copy.ts, at its top): the pages it left in the
// journal are re-checked before anything else is copied, then forgotten. A tenant mapping's pages carry no note of
// where their rows went (the note of a page lives in memory until its re-check): it is found again first, in one pass
// over the mapping's namespaces for all of them (tenant-pages.ts findPageCopies), so that their re-check deletes rows
// gone meanwhile where the page wrote them and removes the page's copy of a row that moved to another tenant since.
import type postgres from 'postgres'
import type { Mapping } from '../config/load.ts'
import type { WriteSummary } from '../pipeline/writer.ts'
import { parseLsn } from '../postgres/lsn.ts'
import type { RecheckedPage } from '../source/mod.ts'
import type { Sink } from '../turbopuffer/types.ts'
import { encodeVersion, type Id, type Logger } from '../types.ts'
import { forgetOtherVersions, forgetPage, pagesInFlight } from './checkpoint.ts'
import type { BackfillStats } from './options.ts'
import { formatCount } from './progress.ts'
import { findPageCopies, type Routed } from './tenant-pages.ts'
import { isTenantMapping } from '../pipeline/row-namespace.ts'

export interface LeftoverCtx {
  sql: postgres.Sql
  sink: Sink
  log: Logger
  m: Mapping
  say: (line: string) => void
  /** the document ids of a page's rows (copy.ts) */
  pageIds: (keys: readonly string[][]) => Id[]
}

/** Re-checks (`recheck`, copy.ts's) and forgets the pages an earlier run of this mapping version left in the journal. */
export async function recheckLeftovers(
  c: LeftoverCtx,
  recheck: (page: RecheckedPage & Routed) => Promise<WriteSummary | undefined>,
  stats: Pick<BackfillStats, 'deleted' | 'skipped' | 'deadLettered'>,
): Promise<void> {
  const { sql, log, m } = c
  const orphans = await forgetOtherVersions(sql, m.name, m.version)
  if (orphans) {
    log.warn(
      'a backfill of an earlier version of this mapping died while writing; its pages cannot be re-checked now: ' +
        'run `puffgres verify --repair` to remove documents of rows deleted meanwhile',
      { mapping: m.name, pages: orphans },
    )
  }
  const leftovers = await pagesInFlight(sql, m.name, m.version)
  if (!leftovers.length) return
  const tenants = isTenantMapping(m)
  let found: Routed['found'][] | undefined
  if (tenants) {
    log.info(
      'looking for the documents of pages an interrupted backfill was writing in the namespaces of the mapping',
      {
        mapping: m.name,
        pages: leftovers.length,
      },
    )
    found = await findPageCopies(
      c.sink,
      m,
      leftovers.map((p) => ({ version: pageVersion(p.lsn), ids: c.pageIds(p.keys) })),
    )
  }
  let rows = 0
  let deleted = 0
  for (const [k, p] of leftovers.entries()) {
    const deletes = await recheck({ lsn: parseLsn(p.lsn), keys: p.keys, found: found?.[k] })
    rows += p.keys[0]?.length ?? 0
    deleted += deletes?.deleted ?? 0
    stats.skipped += deletes?.skipped ?? 0
    stats.deadLettered += deletes?.deadLettered ?? 0
    await forgetPage(sql, p.id)
  }
  stats.deleted += deleted
  c.say(
    `re-checked ${formatCount(rows)} rows of ${leftovers.length} page(s) an interrupted backfill was writing; ` +
      `deleted ${formatCount(deleted)} document(s) whose rows are gone or left the predicate` +
      (tenants ? ' or moved to another tenant' : ''),
  )
}

/** The version a page's documents were written at (page-intents.ts: its read LSN, position 0). */
function pageVersion(lsn: string): string {
  return encodeVersion(parseLsn(lsn), 0)
}
