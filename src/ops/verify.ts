// `puffgres verify`: compares a namespace with the projection of its table (docs/ARCHITECTURE.md, invariant 3) and, with
// `repair`, rewrites or deletes exactly the drifted documents with proper versions.
//
// The projection is the stream's own path without the sink: member rows read as COPY prints them (the backfill
// plan's keyset pages: each type's output function, as pgoutput uses) and decoded as the stream decodes them, run
// through the mapping's transform as insert events.
// Documents are compared by a hash of their canonical attributes (normalize.ts), the version attribute excluded.
// Documents whose version is newer than the read were changed while verify ran: they are counted, not judged.
import { rowDocumentsMode } from '../config/row-documents.ts'
import type postgres from 'postgres'
import { type ColumnType, readPage, readSample } from '../source/mod.ts'
import type { Config, Mapping } from '../config/load.ts'
import { namespaceSchema } from '../pipeline/schema.ts'
import type { Intent } from '../pipeline/changes.ts'
import {
  projectIntents,
  type RouteRuntime,
  sweepRacedRows,
  writeIntents,
  type WriteSummary,
} from '../pipeline/writer.ts'
import { currentStateIntents, deleteIntent, docId, idKey, recheckWritten } from '../pipeline/row-identity.ts'
import { documentKey, keyIdText, type RowKey, rowKey, textKey } from '../pipeline/row-key.ts'
import { formatLsn } from '../postgres/lsn.ts'
import { rowEvent } from '../pipeline/row-event.ts'
import { stableLsn } from '../postgres/stable-lsn.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import { clientConfig, createClient, unmarkBigints } from '../turbopuffer/client.ts'
import { BIGINT_MARK } from '../turbopuffer/write-plan.ts'
import type { TurbopufferSink } from '../turbopuffer/sink.ts'
import { encodeVersion, type Id, type Logger, type Row, ROW_ATTR, VERSION_ATTR } from '../types.ts'
import { openMapping } from './mapping-runtime.ts'
import { canonicalAttributes, contentHash } from './normalize.ts'

export interface VerifyOptions {
  /** check this many randomly chosen member rows only (missing and mismatched documents; extras are not looked for) */
  sample?: number
  repair?: boolean
  /** rows per page and per transform call (default 500) */
  pageSize?: number
  /** ids listed per kind of drift in the report (default 20) */
  listLimit?: number
  log: Logger
}

export interface Mismatch {
  id: Id
  /** attributes whose values differ, are missing or are extra */
  attributes: string[]
}

export interface DriftReport {
  mapping: string
  namespace: string
  /** the sample size, or null for a full check */
  sample: number | null
  /** the LSN the rows were read after */
  lsn: string
  /** member rows read */
  rows: number
  /** documents the projection expects */
  expected: number
  /** documents read from the namespace */
  documents: number
  matching: number
  missing: { count: number; ids: Id[] }
  extra: { count: number; ids: Id[] }
  mismatched: { count: number; items: Mismatch[] }
  /** rows the transform rejected or that could not be decoded (see the DLQ); their documents are not judged */
  failed: { count: number; ids: string[] }
  /** documents with a version newer than the read (changed while verify ran): not judged */
  changed_during_verify: number
  drift: boolean
  repair?: { lsn: string; upserted: number; deleted: number; skipped: number; failed: number }
}

interface Expected {
  id: Id
  hash: string
  attrs: Record<string, string>
  key: RowKey
  kept?: string // the attribute of a vector kept from the stored document (its embed hash matches): not compared
}

export interface VerifyDeps {
  sql: postgres.Sql
  sink: TurbopufferSink
}

export async function verifyMapping(
  config: Config,
  mapping: Mapping,
  deps: VerifyDeps,
  opts: VerifyOptions,
): Promise<DriftReport> {
  const { sql, sink } = deps
  const log = opts.log
  const pageSize = opts.pageSize ?? 500
  const listLimit = opts.listLimit ?? 20
  const rt = await openMapping(config, sql, log, mapping)
  try {
    const schema = namespaceSchema(mapping, rt.plan.tableColumns)
    const expected = new Map<string, Expected>()
    /** chunked mappings: the rows read, by row key (a row with no documents too) */
    const rowKeys = new Map<string, RowKey>()
    /** chunked mappings: the row keys of extra documents */
    const extraRows = new Set<string>()
    /** document ids (as text) the projection cannot judge: failures (the DLQ has them) */
    const notJudged = new Set<string>()
    const failedIds: string[] = []
    let failedCount = 0
    let rows = 0
    const start = await stableLsn(sql, { log })
    const startVersion = encodeVersion(start, 0)
    const failed = (id: string) => {
      failedCount++
      notJudged.add(id)
      if (failedIds.length < listLimit) failedIds.push(id)
    }

    /**
     * The expected documents of a page: its rows as insert intents through the writer's own projection (transform,
     * shapes and types as a write would give them; the namespace's older attribute types included), nothing sent.
     * `keys[j][i]`: id column j of row i as PostgreSQL printed it (the page's key texts).
     */
    const project = async (pageRows: Row[], keys: string[][], lsn: bigint) => {
      rows += pageRows.length
      const lsnText = formatLsn(lsn)
      const version = encodeVersion(lsn, 0)
      const intents: Intent[] = []
      const stringIds = mapping.idType === 'string'
      for (let r = 0; r < pageRows.length; r++) {
        const row = pageRows[r]
        // the key keeps only the id columns' values (the page's rows are not kept once projected); the id is the row's
        const values = Object.fromEntries(mapping.idColumns.map((c) => [c, row[c]]))
        const key = rowKey(mapping, values, keys.map((k) => k[r]), docId(row, mapping.idColumns, stringIds))
        const id = key.id
        if (id === undefined) continue
        const event = rowEvent('insert', id, mapping.schema, mapping.table, mapping.name, lsnText, row)
        intents.push({ route: rt.route, id, kind: 'upsert', version, lsn, event, key })
      }
      for (let i = 0; i < intents.length; i += pageSize) {
        // the writer would dead-letter these rows (the DLQ has them): not judged
        const dead: DeadLetter[] = []
        const projected = await projectIntents(intents.slice(i, i + pageSize), dead, { sink, log })
        for (const d of dead) failed(d.docId ?? '?')
        for (const p of projected) {
          p.ops.forEach((op, k) => {
            if (op.kind === 'row') {
              // chunks: the row's set of documents, each as it would be written (with its row key)
              const key = p.origin[k].key
              rowKeys.set(op.id, key)
              for (const d of op.documents) {
                const doc = { ...d.attributes, [ROW_ATTR]: op.id, ...(d.vector ? { vector: d.vector } : {}) }
                const { hash, attrs } = contentHash(canonicalAttributes(doc, schema))
                expected.set(idKey(d.id), { id: d.id, hash, attrs, key, kept: d.stored?.attribute })
              }
              return
            }
            // a transform's delete: the document must not exist (an existing one is extra)
            if (op.kind !== 'upsert') return
            const doc = op.vector ? { ...op.attributes, vector: op.vector } : op.attributes
            const { hash, attrs } = contentHash(canonicalAttributes(doc, schema))
            const key = p.origin[k].key
            expected.set(idKey(op.id), { id: op.id, hash, attrs, key, kept: op.stored?.attribute })
          })
        }
      }
    }

    // a row that cannot be decoded is not judged, and neither is its document (the DLQ has the row): its id is the
    // one the stream and backfill give it, from its key texts
    const bad = (b: { keys: string[]; error: string }) => {
      const shown = keyIdText(textKey(mapping, rt.plan.columns, b.keys)) ?? '?'
      failed(shown)
      log.warn('verify: a row could not be decoded', { mapping: mapping.name, id: shown, error: b.error })
    }

    if (opts.sample !== undefined) {
      const page = await readSample(sql, rt.plan, opts.sample, log)
      page.bad.forEach(bad)
      await project(page.rows, page.keys, page.lsn)
    } else {
      let after: string[] | undefined
      for (;;) {
        const page = await readPage(sql, rt.plan, after, pageSize)
        page.bad.forEach(bad)
        await project(page.rows, page.keys, page.lsn)
        if (page.count < pageSize || !page.lastKey) break
        after = page.lastKey
      }
    }

    const seen = new Set<string>()
    const drifted: Expected[] = []
    const extra: Id[] = []
    const mismatched: Mismatch[] = []
    let matching = 0
    let changed = 0
    let documents = 0
    const judge = (doc: Record<string, unknown>) => {
      documents++
      const { id, [VERSION_ATTR]: version, $dist: _dist, ...attrs } = doc
      const key = idKey(id as Id)
      const exp = expected.get(key)
      const newer = typeof version === 'string' && version > startVersion
      if (exp) {
        seen.add(key)
        const got = contentHash(canonicalAttributes(exp.kept ? { ...attrs, [exp.kept]: undefined } : attrs, schema))
        if (got.hash === exp.hash) matching++
        else if (newer) changed++
        else {
          drifted.push(exp)
          if (mismatched.length < listLimit) {
            mismatched.push({ id: exp.id, attributes: diffAttributes(exp.attrs, got.attrs) })
          }
        }
      } else if (notJudged.has(String(rowDocumentsMode(mapping) ? attrs[ROW_ATTR] : id))) {
        // the transform failed for this row: the DLQ has it
      } else if (newer) changed++
      else {
        extra.push(id as Id)
        if (rowDocumentsMode(mapping)) extraRows.add(String(attrs[ROW_ATTR]))
      }
    }
    if (opts.sample !== undefined) {
      const ids = [...expected.values()].map((e) => e.id)
      for (const doc of await fetchByIds(config, mapping.namespace, ids)) judge(doc)
    } else {
      for await (const doc of sink.listDocuments(mapping.namespace, { attributes: true })) judge(doc)
    }
    const missing = [...expected].filter(([k]) => !seen.has(k)).map(([, e]) => e)
    const mismatchCount = drifted.length

    const report: DriftReport = {
      mapping: mapping.name,
      namespace: mapping.namespace,
      sample: opts.sample ?? null,
      lsn: formatLsn(start),
      rows,
      expected: expected.size,
      documents,
      matching,
      missing: { count: missing.length, ids: missing.slice(0, listLimit).map((e) => e.id) },
      extra: { count: extra.length, ids: extra.slice(0, listLimit) },
      mismatched: { count: mismatchCount, items: mismatched },
      failed: { count: failedCount, ids: failedIds },
      changed_during_verify: changed,
      drift: missing.length + extra.length + mismatchCount > 0,
    }
    if (opts.repair && report.drift && rowDocumentsMode(mapping)) {
      // a row with a missing, extra or stale chunk gets its replacement; extra chunks of rows that make none (gone,
      // or out of the predicate) are deleted by their row key
      const rewrite = new Map<RowKey, Expected>()
      for (const e of [...missing, ...drifted]) rewrite.set(e.key, e)
      const gone: Id[] = []
      for (const row of extraRows) {
        const key = rowKeys.get(row)
        if (key) rewrite.set(key, { id: row, hash: '', attrs: {}, key })
        else gone.push(row)
      }
      report.repair = await repair(deps, rt.route, rt.plan.columns, [...rewrite.values()], gone, start, log)
    } else if (opts.repair && report.drift) {
      report.repair = await repair(deps, rt.route, rt.plan.columns, [...missing, ...drifted], extra, start, log)
    }
    return report
  } finally {
    await rt.close()
  }
}

function diffAttributes(want: Record<string, string>, got: Record<string, string>): string[] {
  const names = new Set([...Object.keys(want), ...Object.keys(got)])
  return [...names].filter((k) => want[k] !== got[k]).sort()
}

/** Documents of `namespace` with these ids (the sample check), 1000 ids per query. */
async function fetchByIds(config: Config, namespace: string, ids: Id[]): Promise<Record<string, unknown>[]> {
  const client = createClient(clientConfig(config.turbopuffer))
  const ns = client.namespace(namespace)
  const out: Record<string, unknown>[] = []
  for (let i = 0; i < ids.length; i += 1000) {
    const chunk = ids.slice(i, i + 1000)
    try {
      const res = await ns.query({
        rank_by: ['id', 'asc'],
        limit: chunk.length,
        // bigint ids marked, sent as bare integers; big integers in the answer read back exactly (client.ts)
        filters: ['id', 'In', chunk.map((id) => typeof id === 'bigint' ? BIGINT_MARK + id : id)],
        include_attributes: true,
      })
      out.push(...((res.rows ?? []) as Record<string, unknown>[]).map(unmarkBigints))
    } catch (e) {
      if ((e as { status?: number }).status === 404) return out
      throw e
    }
  }
  return out
}

/**
 * Rewrites the drifted documents from their rows' current state, versioned with an L = stableLsn() taken before the
 * rows are read again (a change streamed meanwhile carries a higher version and wins), and deletes the extra ones
 * at `judged`, the position they were judged extra at: a row inserted since then is streamed with a higher version,
 * so its document is never deleted by a judgement that did not see it. Both through the stream's writer.
 */
async function repair(
  deps: VerifyDeps,
  route: RouteRuntime,
  columns: readonly ColumnType[],
  rewrite: Expected[],
  extra: Id[],
  judged: bigint,
  log: Logger,
): Promise<NonNullable<DriftReport['repair']>> {
  const lsn = await stableLsn(deps.sql, { log })
  const result = { lsn: formatLsn(lsn), upserted: 0, deleted: 0, skipped: 0, failed: 0 }
  const writer = { sink: deps.sink, sql: deps.sql, log }
  const add = (w: WriteSummary | undefined) => {
    if (!w) return
    result.upserted += w.upserted
    result.deleted += w.deleted
    result.skipped += w.skipped
    result.failed += w.deadLettered
  }
  for (let i = 0; i < rewrite.length; i += 500) {
    const chunk = rewrite.slice(i, i + 500)
    const rowKeys = chunk.map((e) => e.key)
    const dead: DeadLetter[] = []
    // a row with a value that cannot be decoded: a dead letter (written with the others), not a failed repair
    const all = await currentStateIntents(deps.sql, route, columns, rowKeys, lsn, dead)
    add(await writeIntents(all.filter((x) => x !== undefined), dead, writer))
    if (rowDocumentsMode(route.mapping)) {
      // chunks a newer version streamed before these writes landed lacks (docs/ARCHITECTURE.md, invariant 11)
      const written = all.filter((x) => x?.kind === 'upsert') as Intent[]
      const keys = written.map((x) => String(x.id))
      if (keys.length) await sweepRacedRows(deps.sink, route.mapping.namespace, keys, written[0].version)
    }
    // rows deleted while they were transformed: their streamed delete may have landed before this upsert
    const again = await recheckWritten(route, columns, rowKeys.filter((_r, k) => all[k]?.kind === 'upsert'), writer)
    if (again) add({ ...again, upserted: 0 })
  }
  for (let i = 0; i < extra.length; i += 1000) {
    const intents = extra.slice(i, i + 1000).map((id) => deleteIntent(route, documentKey(route.mapping, id), judged))
    add(await writeIntents(intents, [], writer))
  }
  for (const e of rewrite) log.debug('verify --repair: rewrote', { mapping: route.mapping.name, id: e.id })
  return result
}

function formatIds(ids: Id[], count: number): string {
  const shown = ids.map((id) => JSON.stringify(id)).join(', ')
  return count > ids.length ? `${shown}, … (${count - ids.length} more)` : shown
}

/** The human drift report. */
export function formatDriftReport(r: DriftReport): string {
  const lines = [
    `verify ${r.mapping} → namespace ${r.namespace}${r.sample === null ? '' : ` (sample of ${r.sample} rows)`}`,
    `  rows read ${r.rows} (after LSN ${r.lsn}), documents expected ${r.expected}, documents read ${r.documents}`,
    `  matching      ${r.matching}`,
    `  missing       ${r.missing.count}${r.missing.count ? `: ${formatIds(r.missing.ids, r.missing.count)}` : ''}`,
    `  extra         ${r.extra.count}${r.extra.count ? `: ${formatIds(r.extra.ids, r.extra.count)}` : ''}`,
    `  mismatched    ${r.mismatched.count}`,
    ...r.mismatched.items.map((m) => `    ${JSON.stringify(m.id)}: ${m.attributes.join(', ')}`),
  ]
  if (r.mismatched.count > r.mismatched.items.length) {
    lines.push(`    … (${r.mismatched.count - r.mismatched.items.length} more)`)
  }
  if (r.failed.count) {
    lines.push(
      `  not judged    ${r.failed.count} (transform failed or row unreadable; see puffgres dlq list): ${
        r.failed.ids.join(', ')
      }`,
    )
  }
  if (r.changed_during_verify) lines.push(`  changed while verifying (not judged) ${r.changed_during_verify}`)
  if (r.sample !== null) lines.push('  (a sample does not look for extra documents)')
  lines.push(r.drift ? '  DRIFT' : '  in sync')
  if (r.repair) {
    lines.push(
      `  repaired at ${r.repair.lsn}: ${r.repair.upserted} upserted, ${r.repair.deleted} deleted, ` +
        `${r.repair.skipped} skipped (a newer version is there), ${r.repair.failed} failed`,
    )
  }
  return lines.join('\n')
}
