// `puffgres verify`: compares a namespace with the projection of its table (docs/ARCHITECTURE.md, invariant 3) and, with
// `repair`, rewrites or deletes exactly the drifted documents with proper versions.
//
// The projection is the stream's own path without the sink: member rows read as COPY prints them (the backfill
// plan's keyset pages: each type's output function, as pgoutput uses) and decoded as the stream decodes them, run
// through the mapping's transform as insert events.
// Documents are compared by a hash of their canonical attributes (normalize.ts), the version attribute excluded.
// Documents whose version is newer than the read were changed while verify ran: they are counted, not judged.
//
// A tenant mapping (`[target] namespace = "docs_{workspace_id}"`): each expected document carries the namespace its
// row routes to (pipeline/row-namespace.ts rowNamespace, the writers' own function); every namespace of the mapping
// (listed by the template's prefix, a page at a time) is read and judged against it, so a document found in another
// tenant's namespace than its row's is misplaced (the stale copy of a row that moved), and a namespace no row routes
// to any more is reported. `tenant` checks one namespace.
import { rowDocumentsMode } from '../config/row-documents.ts'
import { readPage, readSample } from '../source/mod.ts'
import type { Config, Mapping } from '../config/load.ts'
import { namespaceSchema } from '../pipeline/schema.ts'
import type { Intent } from '../pipeline/changes.ts'
import { projectIntents } from '../pipeline/writer.ts'
import { docId, idKey } from '../pipeline/row-identity.ts'
import { keyIdText, type RowKey, rowKey, textKey } from '../pipeline/row-key.ts'
import { rowNamespace } from '../pipeline/row-namespace.ts'
import { tenantNamespace } from '../pipeline/tenant-values.ts'
import { formatLsn } from '../postgres/lsn.ts'
import { rowEvent } from '../pipeline/row-event.ts'
import { stableLsn } from '../postgres/stable-lsn.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import { clientConfig, createClient, unmarkBigints } from '../turbopuffer/client.ts'
import { mappingNamespaces } from '../turbopuffer/mapping-namespaces.ts'
import { BIGINT_MARK } from '../turbopuffer/wire-ids.ts'
import { encodeVersion, type Id, type Logger, type Row, ROW_ATTR, VERSION_ATTR } from '../types.ts'
import { openMapping } from './mapping-runtime.ts'
import { canonicalAttributes, contentHash } from './normalize.ts'
import { diffAttributes, type DriftReport, type Mismatch, type Misplaced } from './verify-report.ts'
import { type Expected, type Extra, repair, type VerifyDeps } from './verify-repair.ts'

export { type DriftReport, formatDriftReport, type Mismatch } from './verify-report.ts'
export type { VerifyDeps } from './verify-repair.ts'

/** namespaces of a tenant mapping read at once */
const NAMESPACES_READ_AT_ONCE = 8

export interface VerifyOptions {
  /** check this many randomly chosen member rows only (missing and mismatched documents; extras are not looked for) */
  sample?: number
  repair?: boolean
  /**
   * a tenant mapping: check one namespace, the template rendered with this value (`7`), or with `column=value`
   * pairs for several placeholders (`region=eu,org_id=7`); pipeline/tenant-values.ts tenantNamespace
   */
  tenant?: string
  /** rows per page and per transform call (default 500) */
  pageSize?: number
  /** ids listed per kind of drift in the report (default 20) */
  listLimit?: number
  log: Logger
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
  const tenants = mapping.namespaceTemplate !== undefined
  // before anything is read: a --tenant that names no namespace of the mapping is an error naming the flag
  const only = opts.tenant === undefined ? undefined : tenantNamespace(mapping, opts.tenant)
  /** an expected document of the namespace(s) checked: all of them, or the --tenant's */
  const inScope = (e: Expected) => only === undefined || e.namespace === only
  const rowMode = rowDocumentsMode(mapping)
  const rt = await openMapping(config, sql, log, mapping)
  try {
    const schema = namespaceSchema(mapping, rt.plan.tableColumns)
    const expected = new Map<string, Expected>()
    /** chunked mappings: the rows read, by row key (a row with no documents too), and the namespace of each */
    const rowKeys = new Map<string, RowKey>()
    const rowHome = new Map<string, string>()
    /** chunked mappings: namespace + "\0" + row key of rows with extra (or misplaced) documents */
    const extraRows = new Set<string>()
    /** namespaces some row routes to */
    const routed = new Set<string>()
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
      const homes = new Map<Intent, string>()
      const stringIds = mapping.idType === 'string'
      for (let r = 0; r < pageRows.length; r++) {
        const row = pageRows[r]
        // the key keeps only the id columns' values (the page's rows are not kept once projected); the id is the row's
        const values = Object.fromEntries(mapping.idColumns.map((c) => [c, row[c]]))
        const key = rowKey(mapping, values, keys.map((k) => k[r]), docId(row, mapping.idColumns, stringIds))
        const id = key.id
        if (id === undefined) continue
        // the namespace the writers give the row; none (NULL, an invalid name): the writer dead-letters it
        const ns = rowNamespace(mapping, row, id)
        if (!ns.ok) {
          failed(String(id))
          continue
        }
        routed.add(ns.namespace)
        const event = rowEvent('insert', id, mapping.schema, mapping.table, mapping.name, lsnText, row)
        const intent: Intent = { route: rt.route, id, kind: 'upsert', version, lsn, event, key }
        intents.push(intent)
        homes.set(intent, ns.namespace)
      }
      for (let i = 0; i < intents.length; i += pageSize) {
        // the writer would dead-letter these rows (the DLQ has them): not judged
        const dead: DeadLetter[] = []
        const projected = await projectIntents(intents.slice(i, i + pageSize), dead, { sink, log })
        for (const d of dead) failed(d.docId ?? '?')
        for (const p of projected) {
          p.ops.forEach((op, k) => {
            const key = p.origin[k].key!
            const namespace = homes.get(p.origin[k])!
            if (op.kind === 'row') {
              // chunks: the row's set of documents, each as it would be written (with its row key)
              rowKeys.set(op.id, key)
              rowHome.set(op.id, namespace)
              for (const d of op.documents) {
                const doc = { ...d.attributes, [ROW_ATTR]: op.id, ...(d.vector ? { vector: d.vector } : {}) }
                const { hash, attrs } = contentHash(canonicalAttributes(doc, schema))
                expected.set(idKey(d.id), { id: d.id, hash, attrs, key, namespace, kept: d.stored?.attribute })
              }
              return
            }
            // a transform's delete: the document must not exist (an existing one is extra)
            if (op.kind !== 'upsert') return
            const doc = op.vector ? { ...op.attributes, vector: op.vector } : op.attributes
            const { hash, attrs } = contentHash(canonicalAttributes(doc, schema))
            expected.set(idKey(op.id), { id: op.id, hash, attrs, key, namespace, kept: op.stored?.attribute })
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
    /** every extra or misplaced document, with the namespace it is in (what --repair deletes) */
    const extraDocs: Extra[] = []
    const mismatched: Mismatch[] = []
    const misplaced: Misplaced[] = []
    let misplacedCount = 0
    let matching = 0
    let changed = 0
    let documents = 0
    const judge = (doc: Record<string, unknown>, namespace: string) => {
      documents++
      const { id, [VERSION_ATTR]: version, $dist: _dist, ...attrs } = doc
      const key = idKey(id as Id)
      const exp = expected.get(key)
      const newer = typeof version === 'string' && version > startVersion
      const rowKey = String(rowMode ? attrs[ROW_ATTR] : id)
      if (exp && exp.namespace === namespace) {
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
        return
      }
      // the transform failed for this row: the DLQ has it
      if (notJudged.has(rowKey)) return
      if (newer) {
        changed++
        return
      }
      if (exp) {
        // its row's documents belong in another tenant's namespace: the stale copy of a row that moved
        misplacedCount++
        if (misplaced.length < listLimit) misplaced.push({ id: id as Id, namespace, belongs: exp.namespace })
      } else extra.push(id as Id)
      if (rowMode) extraRows.add(namespace + '\0' + rowKey)
      else extraDocs.push({ id: id as Id, namespace })
    }
    const checked: string[] = []
    if (opts.sample !== undefined) {
      const byNamespace = new Map<string, Id[]>()
      for (const e of expected.values()) {
        if (inScope(e)) {
          byNamespace.set(e.namespace, [...byNamespace.get(e.namespace) ?? [], e.id])
        }
      }
      for (const [ns, ids] of byNamespace) {
        checked.push(ns)
        for (const doc of await fetchByIds(config, ns, ids)) judge(doc, ns)
      }
    } else {
      // every namespace of the mapping, listed a page at a time (a fixed name is itself), a few read at once: a
      // tenant's namespace is often one query, and thousands of them one after another would add up their latencies
      const names = only === undefined ? mappingNamespaces(sink, mapping) : [only]
      const reading = new Set<Promise<void>>()
      for await (const ns of names) {
        checked.push(ns)
        const read = (async () => {
          for await (const doc of sink.listDocuments(ns, { attributes: true })) judge(doc, ns)
        })()
        const entry: Promise<void> = read.finally(() => reading.delete(entry))
        // a failure is thrown by the race or the last wait below; others settling after it are not unhandled
        entry.catch(() => {})
        reading.add(entry)
        if (reading.size >= NAMESPACES_READ_AT_ONCE) await Promise.race(reading)
      }
      await Promise.all(reading)
    }
    const missing = [...expected].filter(([k, e]) => !seen.has(k) && inScope(e))
      .map(([, e]) => e)
    const mismatchCount = drifted.length
    const unrouted = checked.filter((ns) => !routed.has(ns))

    const report: DriftReport = {
      mapping: mapping.name,
      namespace: only ?? mapping.namespace,
      sample: opts.sample ?? null,
      lsn: formatLsn(start),
      rows,
      expected: only === undefined ? expected.size : [...expected.values()].filter(inScope).length,
      documents,
      matching,
      missing: { count: missing.length, ids: missing.slice(0, listLimit).map((e) => e.id) },
      extra: { count: extra.length, ids: extra.slice(0, listLimit) },
      mismatched: { count: mismatchCount, items: mismatched },
      failed: { count: failedCount, ids: failedIds },
      changed_during_verify: changed,
      ...(tenants
        ? {
          namespaces: {
            checked: checked.length,
            unrouted: { count: unrouted.length, names: unrouted.slice(0, listLimit) },
          },
          misplaced: { count: misplacedCount, items: misplaced },
        }
        : {}),
      drift: missing.length + extra.length + mismatchCount + misplacedCount > 0,
    }
    if (opts.repair && report.drift && rowMode) {
      // a row with a missing, extra or stale chunk gets its replacement; the documents of rows that make none (gone,
      // or out of the predicate), or that sit in another namespace than their row's, are deleted by their row key
      const rewrite = new Map<RowKey, Expected>()
      for (const e of [...missing, ...drifted]) rewrite.set(e.key, e)
      const gone: Extra[] = []
      for (const entry of extraRows) {
        const cut = entry.indexOf('\0')
        const [namespace, row] = [entry.slice(0, cut), entry.slice(cut + 1)]
        const key = rowKeys.get(row)
        if (key && rowHome.get(row) === namespace) rewrite.set(key, { id: row, hash: '', attrs: {}, key, namespace })
        else gone.push({ id: row, namespace })
      }
      report.repair = await repair(deps, rt.route, rt.plan.columns, [...rewrite.values()], gone, start, log)
    } else if (opts.repair && report.drift) {
      report.repair = await repair(deps, rt.route, rt.plan.columns, [...missing, ...drifted], extraDocs, start, log)
    }
    return report
  } finally {
    await rt.close()
  }
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
