// `verify`'s expected documents (ops/verify.ts): rows read from the table, as insert intents through the writer's own
// projection (transform, shapes and types as a write would give them; the namespace's older attribute types
// included), nothing sent. Each expected document keeps the namespace its row routes to (pipeline/row-namespace.ts
// rowNamespace, the writers' own function).
import type { Mapping } from '../config/load.ts'
import type { Intent } from '../pipeline/changes.ts'
import { deleteIntent, docId, idKey } from '../pipeline/row-identity.ts'
import { keyIdText, type RowKey, rowKey, textKey } from '../pipeline/row-key.ts'
import { rowNamespace } from '../pipeline/row-namespace.ts'
import { rowEvent } from '../pipeline/row-event.ts'
import { deleteOf } from '../pipeline/leaves.ts'
import { projectIntents } from '../pipeline/writer.ts'
import { deleteDocumentIds } from '../pipeline/run-transform.ts'
import { intentNamespace } from '../pipeline/intent-namespace.ts'
import { rowDocumentsMode } from '../config/row-documents.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import { formatLsn } from '../postgres/lsn.ts'
import type { AttributeSpec } from '../pipeline/schema.ts'
import { encodeVersion, type Logger, type Row, ROW_ATTR, type WriteOp } from '../types.ts'
import type { MappingRuntime } from './mapping-runtime.ts'
import { canonicalAttributes, contentHash } from './normalize.ts'
import type { Expected, VerifyDeps } from './verify-repair.ts'

/** Where a projection's results go, when not into the Projection itself (verify --tenant's look-ups). */
export interface ProjectionTarget {
  /** only the rows of this namespace (`verify --tenant`); rows of others, or with none, are left out unjudged */
  scope?: string
  /** an expected document, by idKey of its id (default: `expected`, and the row's key and namespace) */
  keep?: (key: string, e: Expected) => void
  /** the id text of a row whose documents cannot be judged (default: `failed`) */
  failed?: (id: string) => void
  /** the id of a document not judged: a failed row's, as the transform names it (default: into `notJudged`) */
  unjudged?: (id: string) => void
}

/** An upsert intent of a row as its delete (the row's values as the old ones). */
const asDelete = (i: Intent): Intent => deleteOf(i, i.event.new ?? i.event.old)

export class Projection {
  readonly expected = new Map<string, Expected>()
  /** chunked mappings: the rows read, by row key (a row with no documents too), and the namespace of each */
  readonly rowKeys = new Map<string, RowKey>()
  readonly rowHome = new Map<string, string>()
  /** namespaces some row routes to */
  readonly routed = new Set<string>()
  /** document ids (as text) the projection cannot judge: failures (the DLQ has them) */
  readonly notJudged = new Set<string>()
  readonly failedIds: string[] = []
  failedCount = 0
  private readonly mapping: Mapping

  constructor(
    private readonly rt: MappingRuntime,
    private readonly schema: Record<string, AttributeSpec>,
    private readonly deps: Pick<VerifyDeps, 'sink'> & { log: Logger },
    private readonly opts: { pageSize: number; listLimit: number },
  ) {
    this.mapping = rt.mapping
  }

  /** A row whose documents are not judged (the DLQ has it). */
  failed(id: string): void {
    this.failedCount++
    this.notJudged.add(id)
    if (this.failedIds.length < this.opts.listLimit) this.failedIds.push(id)
  }

  /**
   * Rows of a page read at `lsn` that cannot be decoded are not judged, and neither are their documents (the DLQ has
   * the rows): their ids are the ones the stream and backfill give them, from their key texts.
   */
  async bad(list: readonly { keys: string[]; error: string }[], lsn: bigint, target: ProjectionTarget = {}) {
    const failed = target.failed ?? ((id: string) => this.failed(id))
    const keyed: Intent[] = []
    for (const b of list) {
      const key = textKey(this.mapping, this.rt.plan.columns, b.keys)
      const shown = keyIdText(key) ?? '?'
      failed(shown)
      this.deps.log.warn('verify: a row could not be decoded', {
        mapping: this.mapping.name,
        id: shown,
        error: b.error,
      })
      // all that is known of the row is its key: its delete, as the stream would send it
      if (key.id !== undefined) keyed.push(deleteIntent(this.rt.route, { ...key, id: key.id }, lsn))
    }
    await this.unjudgedDocuments(keyed, target)
  }

  /**
   * A transform may name a row's document otherwise than the row (`'n' + id`): the document of a row that is not
   * judged is then the transform's id for the row as a delete, and it is not judged either (`--repair` would delete
   * it as extra). In row-documents mode a row's documents are judged by their row key, whatever their ids.
   */
  private async unjudgedDocuments(deletes: Intent[], target: ProjectionTarget): Promise<void> {
    const m = this.mapping
    if (!deletes.length || !m.transform || rowDocumentsMode(m)) return
    const unjudged = target.unjudged ?? ((id: string) => this.notJudged.add(id))
    const where = deletes.map((d) => {
      const at = intentNamespace(d)
      return at.ok ? at.namespace : m.namespace
    })
    for (const id of await deleteDocumentIds(this.rt.route, deletes, where, this.deps)) {
      if (id !== undefined) unjudged(String(id))
    }
  }

  /**
   * The expected documents of a page's rows, read at `lsn`. `keys[j][i]`: id column j of row i as PostgreSQL printed
   * it (the page's key texts).
   */
  async page(pageRows: Row[], keys: string[][], lsn: bigint, target: ProjectionTarget = {}): Promise<void> {
    const m = this.mapping
    const lsnText = formatLsn(lsn)
    const version = encodeVersion(lsn, 0)
    const intents: Intent[] = []
    const stringIds = m.idType === 'string'
    for (let r = 0; r < pageRows.length; r++) {
      const row = pageRows[r]
      // the key keeps only the id columns' values (the page's rows are not kept once projected); the id is the row's
      const values = Object.fromEntries(m.idColumns.map((c) => [c, row[c]]))
      const key = rowKey(m, values, keys.map((k) => k[r]), docId(row, m.idColumns, stringIds))
      const id = key.id
      if (id === undefined) continue
      const event = rowEvent('insert', id, m.schema, m.table, m.name, lsnText, row)
      intents.push({ route: this.rt.route, id, kind: 'upsert', version, lsn, event, key })
    }
    await this.intents(intents, target)
  }

  /** The expected documents of upsert intents (a page's rows, or rows read again by key). */
  async intents(all: readonly Intent[], target: ProjectionTarget = {}): Promise<void> {
    const failed = target.failed ?? ((id: string) => this.failed(id))
    const intents: Intent[] = []
    /** rows whose documents are not judged: their deletes, for the transform to name their documents */
    const unjudged: Intent[] = []
    for (const intent of all) {
      // the namespace the writers give the row; none (NULL, an invalid name): the writer dead-letters it
      const ns = rowNamespace(this.mapping, intent.event.new, intent.id)
      if (target.scope !== undefined) {
        // another tenant's row (the filter may select more than the tenant's), or one with no namespace: not this
        // namespace's; a document of it found there is looked up by key (verify-tenant.ts)
        if (!ns.ok || ns.namespace !== target.scope) continue
      } else if (!ns.ok) {
        failed(String(intent.id))
        unjudged.push(asDelete(intent))
        continue
      }
      this.routed.add(ns.namespace)
      // rendered once: the writer's projection takes it as is (intentNamespace)
      intent.namespace = ns.namespace
      intents.push(intent)
    }
    const { pageSize } = this.opts
    for (let i = 0; i < intents.length; i += pageSize) {
      // the writer would dead-letter these rows (the DLQ has them): not judged
      const dead: DeadLetter[] = []
      const slice = intents.slice(i, i + pageSize)
      const projected = await projectIntents(slice, dead, this.deps)
      for (const d of dead) failed(d.docId ?? '?')
      for (const p of projected) this.expect(p.namespace, p.ops, p.origin, target)
      // a row the transform failed on is filed under its id (one whose document was refused, under the document's)
      const rows = new Set(dead.map((d) => d.docId))
      for (const x of slice) if (rows.has(String(x.id))) unjudged.push(asDelete(x))
    }
    await this.unjudgedDocuments(unjudged, target)
  }

  private expect(
    namespace: string,
    ops: readonly WriteOp[],
    origin: Intent[],
    target: ProjectionTarget,
  ): void {
    const keep = target.keep ?? ((k: string, e: Expected) => this.expected.set(k, e))
    ops.forEach((op, k) => {
      const key = origin[k].key!
      if (op.kind === 'row') {
        // chunks: the row's set of documents, each as it would be written (with its row key)
        if (!target.keep) {
          this.rowKeys.set(op.id, key)
          this.rowHome.set(op.id, namespace)
        }
        for (const d of op.documents) {
          const doc = { ...d.attributes, [ROW_ATTR]: op.id, ...(d.vector ? { vector: d.vector } : {}) }
          const { hash, attrs } = contentHash(canonicalAttributes(doc, this.schema))
          keep(idKey(d.id), { id: d.id, hash, attrs, key, namespace, kept: d.stored?.attribute })
        }
        return
      }
      // a transform's delete: the document must not exist (an existing one is extra)
      if (op.kind !== 'upsert') return
      const doc = op.vector ? { ...op.attributes, vector: op.vector } : op.attributes
      const { hash, attrs } = contentHash(canonicalAttributes(doc, this.schema))
      keep(idKey(op.id), { id: op.id, hash, attrs, key, namespace, kept: op.stored?.attribute })
    })
  }
}
