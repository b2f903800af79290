// Reads one keyset page of a backfill, versioned, and re-checks a written page for rows that went away since.
//
// Versions (ARCHITECTURE.md invariant 2). A page is read after L = stableLsn(): every commit below L is visible in
// it, and every commit it does not see is streamed with a version above encodeVersion(L, 0), so its documents carry
// that version. A row deleted (or moved out of the membership predicate) after the page was read may have had its
// streamed delete applied before the page's upsert (which then re-creates the document: an upsert of a missing
// document always passes its condition). So once a page is written, its keys are looked up again after
// R = stableLsn(): the ones gone or no longer members get a delete at version R, which removes only documents
// older than R; any change committed after R is streamed, and applied after this write, with a higher version.
import type postgres from 'postgres'
import { stableLsn } from '../postgres/stable-lsn.ts'
import { decodeValue } from '../postgres/values.ts'
import type { Logger, Row } from '../types.ts'
import type { BackfillPlan } from './plan.ts'

/**
 * How often to look again while transactions that were running at the stable LSN end. Usually they are short (often
 * this backfill's own checkpoint), so a long sleep would be most of a page's time.
 */
const POLL_MS = 1

export interface Page {
  /** the snapshot LSN the page was read at */
  lsn: bigint
  rows: Row[]
  /** key texts column-wise: keys[j][i] is id column j of row i (the re-check's parameters) */
  keys: string[][]
  /** rows whose values could not be decoded: the row's key texts and the error */
  bad: { keys: string[]; error: string }[]
  /** the last row's key texts (the next page starts after it); undefined for an empty page */
  lastKey?: string[]
  /** rows the query returned (a page shorter than the limit is the last) */
  count: number
}

/** Reads the page after `after` (from the beginning when undefined). */
export async function readPage(
  sql: postgres.Sql,
  plan: BackfillPlan,
  after: readonly string[] | undefined,
  limit: number,
  log?: Logger,
): Promise<Page> {
  const lsn = await stableLsn(sql, { pollMs: POLL_MS, log })
  // prepared: the same two statements run for every page
  const query = after
    ? sql.unsafe(plan.nextPageSql, [...after, limit], { prepare: true })
    : sql.unsafe(plan.firstPageSql, [limit], { prepare: true })
  const values = await query.values() as unknown as (string | null)[][]
  return decodePage(plan, lsn, values)
}

/** Decodes the `::text` values of a page into rows, as the stream decodes pgoutput's text values. */
export function decodePage(plan: BackfillPlan, lsn: bigint, values: (string | null)[][]): Page {
  const { columns, keyIndex } = plan
  const ncols = columns.length
  const names = columns.map((c) => c.name)
  const oids = columns.map((c) => c.typeOid)
  const typeNames = columns.map((c) => c.typeName)
  const nkeys = keyIndex.length
  const keys: string[][] = keyIndex.map(() => [])
  const rows: Row[] = []
  const bad: Page['bad'] = []
  for (let i = 0; i < values.length; i++) {
    const v = values[i]
    const row: Row = {}
    let j = 0
    try {
      for (; j < ncols; j++) row[names[j]] = decodeValue(v[j], oids[j], typeNames[j])
    } catch (e) {
      bad.push({ keys: keyIndex.map((k) => v[k] as string), error: `column "${names[j]}": ${(e as Error).message}` })
      continue
    }
    for (let k = 0; k < nkeys; k++) keys[k].push(v[keyIndex[k]] as string)
    rows.push(row)
  }
  const last = values[values.length - 1]
  return {
    lsn,
    rows,
    keys,
    bad,
    lastKey: last && keyIndex.map((k) => last[k] as string),
    count: values.length,
  }
}

/**
 * After a page is written: the positions (0-based, into `page.rows`) of its rows that no longer exist or no longer
 * satisfy the membership predicate, and the LSN R their deletes are versioned with.
 */
export async function recheckPage(
  sql: postgres.Sql,
  plan: BackfillPlan,
  page: Page,
  log?: Logger,
): Promise<{ lsn: bigint; stale: number[] }> {
  const n = page.rows.length
  if (!n) return { lsn: page.lsn, stale: [] }
  const lsn = await stableLsn(sql, { pollMs: POLL_MS, log })
  const rows = await sql.unsafe(plan.recheckSql, page.keys, { prepare: true }).values() as unknown as number[][]
  const stale = rows.map((r) => r[0] - 1)
  return { lsn, stale }
}
