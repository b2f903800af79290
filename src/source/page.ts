// Reads one keyset page of a mapping's table (backfill, verify), or a random sample of it (verify --sample), versioned,
// and re-checks a written page for rows that went away since.
//
// Versions (docs/ARCHITECTURE.md, invariant 2). A page is read after L = stableLsn(): every commit below L is visible in
// it, and every commit it does not see is streamed with a version above encodeVersion(L, 0), so its documents carry
// that version. A row deleted (or moved out of the membership predicate) after the page was read may have had its
// streamed delete applied before the page's upsert (which then re-creates the document: an upsert of a missing
// document always passes its condition). So once a page is written, its keys are looked up again after
// R = stableLsn(): the ones gone or no longer members get a delete at version R, which removes only documents
// older than R; any change committed after R is streamed, and applied after this write, with a higher version.
import type postgres from 'postgres'
import { type CopyRow, CopyTextParser, invalidFields } from '../postgres/copy-text.ts'
import { isSqlAscii, reserveRawBytes } from '../postgres/sql-ascii.ts'
import { stableLsn } from '../postgres/stable-lsn.ts'
import { decodeValue, isJsonType, keepSourceText, keepsSourceText, keptText } from '../postgres/values.ts'
import type { Logger, Row } from '../types.ts'
import { copyPageSql, copySampleSql, filterSetting, type ReadPlan, type RowFilter } from './read-plan.ts'

/**
 * How often to look again while transactions that were running at the stable LSN end. Usually they are short (often
 * this backfill's own checkpoint), so a long sleep would be most of a page's time.
 */
const POLL_MS = 1

/** COPY data gathered before it is parsed (one text decode per this much) */
const PARSE_BYTES = 256 * 1024

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

/** What the re-check of a written page needs of it. */
export type RecheckedPage = Pick<Page, 'lsn' | 'keys'> & {
  /** textArrayLiteral of each `keys[j]`, when already built */
  literals?: string[]
}

/** A page as COPY printed it, not decoded yet. */
export interface RawPage {
  /** the snapshot LSN the page was read at */
  lsn: bigint
  rows: CopyRow[]
}

/** Takes a page's snapshot LSN: see the top of this file. */
export function pageLsn(sql: postgres.Sql, log?: Logger): Promise<bigint> {
  return stableLsn(sql, { pollMs: POLL_MS, log })
}

/**
 * Reads the page after `after` (from the beginning when undefined) with `COPY (…) TO STDOUT`, whose text format is
 * parsed here in one pass per chunk (row by row results cost a string per field, most of a backfill's time). `lsn`:
 * a pageLsn() taken at any moment before this call (the backfill takes the next page's while reading this one).
 */
export async function readRawPage(
  sql: postgres.Sql,
  plan: ReadPlan,
  after: readonly string[] | undefined,
  limit: number,
  opts: { log?: Logger; lsn?: Promise<bigint>; filter?: RowFilter } = {},
): Promise<RawPage> {
  // the encoding is asked (once per pool) while the LSN is awaited: no round trip added to a page
  const [lsn, ascii] = await Promise.all([opts.lsn ?? pageLsn(sql, opts.log), isSqlAscii(sql)])
  // a connection of its own: postgres.js pipelines queries onto busy connections, and one in COPY refuses them.
  // Raw bytes: a SQL_ASCII value that is not UTF-8 fails its row alone (a dead letter), not the whole COPY
  const rows = await reserveRawBytes(
    sql,
    (conn) => copyFiltered(conn, copyPageSql(plan, after, limit, opts.filter), plan.columns.length, opts.filter),
    ascii,
  )
  return { lsn, rows }
}

/**
 * Reads and decodes the page after `after` (from the beginning when undefined); with `filter`, of the rows it selects
 * only (the page after `after` among them: keyset paging goes on as without it).
 */
export async function readPage(
  sql: postgres.Sql,
  plan: ReadPlan,
  after: readonly string[] | undefined,
  limit: number,
  log?: Logger,
  filter?: RowFilter,
): Promise<Page> {
  const raw = await readRawPage(sql, plan, after, limit, { log, filter })
  return decodePage(plan, raw.lsn, raw.rows)
}

/**
 * `n` member rows picked at random (verify --sample; with `filter`, among the rows it selects), read after a stable
 * LSN and decoded like a page.
 */
export async function readSample(
  sql: postgres.Sql,
  plan: ReadPlan,
  n: number,
  log?: Logger,
  filter?: RowFilter,
): Promise<Page> {
  const lsn = await pageLsn(sql, log)
  const rows = await reserveRawBytes(
    sql,
    (conn) => copyFiltered(conn, copySampleSql(plan, n, filter), plan.columns.length, filter),
  )
  return decodePage(plan, lsn, rows)
}

/**
 * Runs a COPY whose filter reads its values from settings: they are bound as parameters of set_config, local to a
 * transaction around the COPY (a pooler that hands each transaction to another server session keeps them together).
 */
async function copyFiltered(
  conn: postgres.ReservedSql,
  copySql: string,
  ncols: number,
  filter: RowFilter | undefined,
): Promise<CopyRow[]> {
  if (!filter?.values.length) return await copyRows(conn, copySql, ncols)
  await conn.unsafe('BEGIN')
  try {
    const sets = filter.values.map((_, i) => `set_config('${filterSetting(i)}', $${i + 1}, true)`)
    await conn.unsafe(`SELECT ${sets.join(', ')}`, filter.values)
    const rows = await copyRows(conn, copySql, ncols)
    await conn.unsafe('COMMIT')
    return rows
  } catch (e) {
    await conn.unsafe('ROLLBACK').catch(() => {})
    throw e
  }
}

/** The last row's key texts (where the next page starts); undefined for an empty page. */
export function lastKeyOf(plan: ReadPlan, rows: readonly CopyRow[]): string[] | undefined {
  const last = rows[rows.length - 1]
  return last && plan.keyIndex.map((k) => last[k] as string)
}

/** Runs a `COPY … TO STDOUT` and parses its rows. */
async function copyRows(conn: postgres.ReservedSql, copySql: string, ncols: number): Promise<CopyRow[]> {
  const stream = await conn.unsafe(copySql).readable()
  const parser = new CopyTextParser(ncols)
  await new Promise<void>((resolve, reject) => {
    // postgres.js sends each row (one CopyData message) as its own chunk: copy them into one buffer and parse many
    // at once (Buffer.concat of a page's worth of small chunks costs more than copying each as it comes)
    let buf = new Uint8Array(PARSE_BYTES)
    let size = 0
    const parse = () => {
      parser.push(buf.subarray(0, size))
      size = 0
    }
    stream.on('data', (chunk: Uint8Array) => {
      const n = chunk.length
      if (size + n > buf.length) {
        const bigger = new Uint8Array(Math.max(buf.length * 2, size + n))
        bigger.set(buf.subarray(0, size))
        buf = bigger
      }
      buf.set(chunk, size)
      size += n
      if (size < PARSE_BYTES) return
      try {
        parse()
      } catch (e) {
        stream.destroy()
        reject(e)
      }
    })
    stream.once('end', () => {
      // postgres.js pauses the socket when the stream's buffer is full and resumes it only when the stream asks for
      // more; a stream that ended full never asks, and the connection would never read the end of the query
      ;(stream as unknown as { _read(n: number): void })._read(0)
      try {
        if (size) parse()
        resolve()
      } catch (e) {
        reject(e)
      }
    })
    stream.once('error', reject)
  })
  parser.end()
  return parser.rows
}

/** Decodes a page's text values into rows, as the stream decodes pgoutput's text values. */
export function decodePage(plan: ReadPlan, lsn: bigint, values: (string | null)[][]): Page {
  const { columns, keyIndex } = plan
  const ncols = columns.length
  const names = columns.map((c) => c.name)
  const oids = columns.map((c) => c.typeOid)
  const typeNames = columns.map((c) => c.typeName)
  // json's text always (it is the attribute); a timestamp's only in an id column (the id keeps its microseconds)
  const keeps = columns.map((c, j) =>
    keepsSourceText(c.typeOid, c.typeName) &&
    (keyIndex.includes(j) || isJsonType(c.typeOid, c.typeName))
  )
  const kept = keeps.some(Boolean)
  const nkeys = keyIndex.length
  const keys: string[][] = keyIndex.map(() => [])
  const rows: Row[] = []
  const bad: Page['bad'] = []
  for (let i = 0; i < values.length; i++) {
    const v = values[i]
    const row: Row = {}
    let j = 0
    const invalid = invalidFields(v)
    if (invalid) {
      const reasons = [...invalid].map(([c, error]) => `column "${names[c]}": ${error}`)
      bad.push({ keys: keyIndex.map((k) => v[k] as string), error: reasons.join('; ') })
      continue
    }
    try {
      for (; j < ncols; j++) row[names[j]] = decodeValue(v[j], oids[j], typeNames[j])
      if (kept) {
        for (let c = 0; c < ncols; c++) {
          if (keeps[c] && v[c] !== null) keepSourceText(row, names[c], keptText(v[c]!, oids[c], typeNames[c]))
        }
      }
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
 * After a page is written: the positions (0-based, into `page.keys[j]`) of its rows that no longer exist or no longer
 * satisfy the membership predicate, and the LSN R their deletes are versioned with. The keys must be in the order
 * the page was read (ascending): the first and the last bound the lookups.
 */
export async function recheckPage(
  sql: postgres.Sql,
  plan: ReadPlan,
  page: RecheckedPage,
  log?: Logger,
): Promise<{ lsn: bigint; stale: number[] }> {
  const n = page.keys[0]?.length ?? 0
  if (!n) return { lsn: page.lsn, stale: [] }
  const lsn = await stableLsn(sql, { pollMs: POLL_MS, log })
  const params = [
    ...page.literals ?? page.keys.map(textArrayLiteral),
    ...page.keys.map((k) => k[0]),
    ...page.keys.map((k) => k[n - 1]),
  ]
  // not prepared: planned with the actual keys, PostgreSQL sees how many there are and the range they span
  const rows = await sql.unsafe(plan.recheckSql, params, { prepare: false }).values() as unknown as number[][]
  const stale = rows.map((r) => r[0] - 1)
  return { lsn, stale }
}

/**
 * A tenant mapping's page as COPY printed it: the texts of its placeholder columns, column-wise as `Page.keys`
 * (`[j][i]`: the template's column j of row i; null for NULL), for movedCandidates. Undefined without a template.
 */
export function placeholderTexts(
  plan: Pick<ReadPlan, 'placeholders'>,
  rows: readonly CopyRow[],
): (string | null)[][] | undefined {
  return plan.placeholders?.index.map((k) => rows.map((r) => r[k]))
}

/**
 * After a page of a tenant mapping is re-checked (recheckPage, whose LSN was taken before this read): the positions
 * (0-based, into `page.keys[j]`) of its rows that are there now with a placeholder column other than the page read
 * (`placeholders[j][i]`: the page's texts of the template's columns, placeholderTexts). Only these can be
 * in another tenant's namespace than the page wrote them to; the caller reads them again to know (tenant-pages.ts).
 */
export async function movedCandidates(
  sql: postgres.Sql,
  plan: Pick<ReadPlan, 'placeholders'>,
  page: RecheckedPage,
  placeholders: readonly (readonly (string | null)[])[],
): Promise<number[]> {
  const n = page.keys[0]?.length ?? 0
  if (!n || !plan.placeholders) return []
  const params = [
    ...page.literals ?? page.keys.map(textArrayLiteral),
    ...placeholders.map(textArrayLiteral),
    ...page.keys.map((k) => k[0]),
    ...page.keys.map((k) => k[n - 1]),
  ]
  const rows = await sql.unsafe(plan.placeholders.movedSql, params, { prepare: false })
    .values() as unknown as number[][]
  return rows.map((r) => r[0] - 1)
}

const ESCAPE = /[\\"]/g

/**
 * A text[] literal (`{"1","2"}`) of `texts`: every element quoted, `\` and `"` escaped, a null one NULL. What
 * postgres.js would send for the array, built here because its serializer (two regex replaces per element) stood out
 * in profiles.
 */
export function textArrayLiteral(texts: readonly (string | null)[]): string {
  let plain = true
  for (let i = 0; plain && i < texts.length; i++) {
    const t = texts[i]
    plain = t !== null && t.indexOf('\\') < 0 && t.indexOf('"') < 0
  }
  if (!texts.length) return '{}'
  if (plain) return '{"' + texts.join('","') + '"}'
  // a NULL element unquoted (a placeholder column's NULL)
  return '{' + texts.map((t) => t === null ? 'NULL' : '"' + t.replace(ESCAPE, '\\$&') + '"').join(',') + '}'
}
