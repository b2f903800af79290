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
// to any more is reported. `tenant` checks one namespace, reading only that tenant's rows (verify-tenant.ts).
import { rowDocumentsMode } from '../config/row-documents.ts'
import { readPage, readSample } from '../source/mod.ts'
import type { Config, Mapping } from '../config/load.ts'
import { namespaceSchema } from '../pipeline/schema.ts'
import { idKey } from '../pipeline/row-identity.ts'
import type { RowKey } from '../pipeline/row-key.ts'
import { tenantFilter, tenantNamespace } from '../pipeline/tenant-values.ts'
import { formatLsn } from '../postgres/lsn.ts'
import { stableLsn } from '../postgres/stable-lsn.ts'
import { clientConfig, createClient, unmarkBigints } from '../turbopuffer/client.ts'
import { mappingNamespaces } from '../turbopuffer/mapping-namespaces.ts'
import { BIGINT_MARK } from '../turbopuffer/wire-ids.ts'
import { encodeVersion, type Id, type Logger, ROW_ATTR, VERSION_ATTR } from '../types.ts'
import { openMapping } from './mapping-runtime.ts'
import { canonicalAttributes, contentHash } from './normalize.ts'
import { diffAttributes, type DriftReport, type Mismatch, type Misplaced } from './verify-report.ts'
import { type Expected, type Extra, repair, type VerifyDeps } from './verify-repair.ts'
import { Projection } from './verify-projection.ts'
import { placeStrays, type Stray } from './verify-tenant.ts'

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
  const rowMode = rowDocumentsMode(mapping)
  const rt = await openMapping(config, sql, log, mapping)
  try {
    const schema = namespaceSchema(mapping, rt.plan.tableColumns)
    const projection = new Projection(rt, schema, { sink, log }, { pageSize, listLimit })
    const { expected, notJudged } = projection
    /** chunked mappings: namespace + "\0" + row key of rows with extra (or misplaced) documents */
    const extraRows = new Set<string>()
    // --tenant: PostgreSQL selects the tenant's rows where their types allow (else every row is read, and the
    // others left out as they are read); either way only its rows are projected (verify-tenant.ts)
    const filter = only === undefined ? undefined : tenantFilter(mapping, rt.plan.columns, only)
    const scope = { scope: only }
    let rows = 0
    const start = await stableLsn(sql, { log })
    const startVersion = encodeVersion(start, 0)

    if (opts.sample !== undefined) {
      const page = await readSample(sql, rt.plan, opts.sample, log, filter)
      await projection.bad(page.bad, page.lsn)
      rows += page.rows.length
      await projection.page(page.rows, page.keys, page.lsn, scope)
    } else {
      let after: string[] | undefined
      for (;;) {
        const page = await readPage(sql, rt.plan, after, pageSize, log, filter)
        await projection.bad(page.bad, page.lsn)
        rows += page.rows.length
        await projection.page(page.rows, page.keys, page.lsn, scope)
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
    /** --tenant: documents found that the tenant's rows do not make (verify-tenant.ts places them) */
    const strays: Stray[] = []
    /** an extra document, or a misplaced one (`belongs`: where its row's documents belong now) */
    const drift = (id: Id, namespace: string, rowKey: string, belongs: string | undefined) => {
      if (belongs !== undefined) {
        // its row's documents belong in another tenant's namespace: the stale copy of a row that moved
        misplacedCount++
        if (misplaced.length < listLimit) misplaced.push({ id, namespace, belongs })
      } else extra.push(id)
      if (rowMode) extraRows.add(namespace + '\0' + rowKey)
      else extraDocs.push({ id, namespace })
    }
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
      // --tenant: the other tenants' rows were not read, so where this one's row is is found out once all are listed
      if (only !== undefined) strays.push({ id: id as Id, row: rowKey })
      else drift(id as Id, namespace, rowKey, exp?.namespace)
    }
    const checked: string[] = []
    if (opts.sample !== undefined) {
      const byNamespace = new Map<string, Id[]>()
      for (const e of expected.values()) {
        const ids = byNamespace.get(e.namespace)
        if (ids) ids.push(e.id)
        else byNamespace.set(e.namespace, [e.id])
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
    let tenant: DriftReport['tenant']
    if (only !== undefined) {
      const placed = await placeStrays(deps, rt, projection, only, strays, { pageSize, log })
      placed.placements.forEach((p, i) => {
        if (p.kind === 'changed') changed++
        else if (p.kind !== 'unjudged') {
          drift(strays[i].id, only, strays[i].row, p.kind === 'misplaced' ? p.belongs : undefined)
        }
      })
      tenant = { rows: filter ? 'selected' : 'all read', looked_up: placed.lookedUp, scanned: placed.scanned }
    }
    const missing = [...expected].filter(([k]) => !seen.has(k)).map(([, e]) => e)
    const mismatchCount = drifted.length
    const unrouted = checked.filter((ns) => !projection.routed.has(ns))

    const report: DriftReport = {
      mapping: mapping.name,
      namespace: only ?? mapping.namespace,
      sample: opts.sample ?? null,
      lsn: formatLsn(start),
      rows,
      expected: expected.size,
      documents,
      matching,
      missing: { count: missing.length, ids: missing.slice(0, listLimit).map((e) => e.id) },
      extra: { count: extra.length, ids: extra.slice(0, listLimit) },
      mismatched: { count: mismatchCount, items: mismatched },
      failed: { count: projection.failedCount, ids: projection.failedIds },
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
      ...(tenant ? { tenant } : {}),
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
        const key = projection.rowKeys.get(row)
        if (key && projection.rowHome.get(row) === namespace) {
          rewrite.set(key, { id: row, hash: '', attrs: {}, key, namespace })
        } else gone.push({ id: row, namespace })
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
