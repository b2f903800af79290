// The middle of the stream: pgoutput messages in, versioned writes out, and the LSN that may be confirmed.
// Intents of a batch are coalesced per document (last version wins), transformed per mapping, written per
// namespace; refused rows go to the dead-letter queue; only then is the batch's last complete commit confirmed
// (ARCHITECTURE.md invariants 1, 2, 4, 6).
import type postgres from 'postgres'
import type { PgOutputMessage, Relation } from '../postgres/pgoutput.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import { type MappingProgress, recordProgress } from '../postgres/checkpoints.ts'
import type { Sink } from '../turbopuffer/types.ts'
import { encodeVersion, type Logger } from '../types.ts'
import { changeIntents, type Intent } from './changes.ts'
import { idKey } from './docid.ts'
import { rereadIntents } from './row-identity.ts'
import { generatedNeeded, tableByOid } from '../postgres/table-shape.ts'
import { type RouteRuntime, writeIntents, type WriteSummary } from './writer.ts'

export type { RouteRuntime } from './writer.ts'

export interface ProcessorOptions {
  routes: RouteRuntime[]
  sink: Sink
  /** pool for re-reads, the DLQ and progress */
  sql: postgres.Sql
  log: Logger
  /** flush when this many documents are pending (default 1000) */
  batchSize?: number
  /** the longest a change waits before it is written (default 1000 ms) */
  pollIntervalMs?: number
  /** called with the end LSN of the last commit whose changes are all durable */
  confirm: (lsn: bigint) => void
  /** observers for metrics */
  onFlush?: (info: FlushInfo) => void
  /** first pause after a retryable transform failure (embedding provider down) */
  retryDelayMs?: number
  /** called once when a flush fails: the stream must let go of its replication connection at once */
  onFailure?: (e: Error) => void
}

export interface FlushInfo extends WriteSummary {
  docs: number
  ms: number
  confirmed: bigint
}

interface Batch {
  intents: Map<string, Intent>
  dead: DeadLetter[]
  /** end LSN of the last commit all of whose changes are in this batch or earlier ones */
  confirmable: bigint
}

export class ChangeProcessor {
  private readonly byRelation = new Map<number, RouteRuntime[]>()
  private pending = new Map<string, Intent>()
  private dead: DeadLetter[] = []
  private pendingSince = 0
  private inTxn: { commitLsn: bigint; seq: number } | undefined
  private lastCommitEnd = 0n
  private lastConfirmed = 0n
  private inflight: Promise<void> | undefined
  private lock: Promise<unknown> = Promise.resolve()
  private timer: ReturnType<typeof setInterval> | undefined
  /** the first error of a flush; the stream stops on it (nothing after it is confirmed) */
  failure: Error | undefined
  private readonly batchSize: number
  private readonly pollIntervalMs: number

  constructor(private readonly opts: ProcessorOptions) {
    this.batchSize = opts.batchSize ?? 1000
    this.pollIntervalMs = opts.pollIntervalMs ?? 1000
  }

  /** Starts the timer that flushes a batch once its oldest change has waited pollIntervalMs. */
  start(): void {
    // a change waits up to pollIntervalMs + tick: a small tick keeps the latency bound (a wake-up costs ~nothing)
    const tick = Math.max(10, Math.min(25, Math.floor(this.pollIntervalMs / 4)))
    this.timer = setInterval(() => {
      if (this.pending.size || this.dead.length) {
        if (Date.now() - this.pendingSince >= this.pollIntervalMs) this.startFlush().catch(() => {})
      }
    }, tick)
  }

  /** True when nothing is pending or being written and no transaction is open (keepalives may then be confirmed). */
  get idle(): boolean {
    return !this.inTxn && !this.pending.size && !this.dead.length && !this.inflight
  }

  /** Handles one message; resolves when the processor can take the next (backpressure). */
  async handle(msg: PgOutputMessage): Promise<void> {
    if (this.failure) throw this.failure
    switch (msg.tag) {
      case 'begin':
        this.inTxn = { commitLsn: msg.finalLsn, seq: 0 }
        return
      case 'commit':
        this.inTxn = undefined
        this.lastCommitEnd = msg.endLsn
        if (this.pending.size >= this.batchSize) await this.startFlush()
        else if (!this.pending.size && !this.dead.length && !this.inflight) this.confirmIfAhead(msg.endLsn)
        return
      case 'relation':
        this.byRelation.set(msg.relation.oid, await this.routesFor(msg.relation))
        return
      case 'insert':
      case 'update':
      case 'delete': {
        const routes = this.byRelation.get(msg.relation.oid) ?? []
        if (!routes.length) return
        const pos = this.position()
        if (!this.pending.size && !this.dead.length) this.pendingSince = Date.now()
        changeIntents(msg, routes, pos, (i) => this.add(i), (b) =>
          this.dead.push({
            mapping: b.route.mapping.name,
            docId: b.docId,
            lsn: b.lsn,
            event: b.event,
            error: b.error,
          }))
        if (this.pending.size + this.dead.length >= this.batchSize) await this.startFlush()
        return
      }
      case 'truncate':
        await this.truncate(msg.relations)
        return
      default:
        return
    }
  }

  /** Writes everything pending and waits for it (shutdown). */
  async drain(): Promise<void> {
    await this.startFlush()
    await this.lock
    if (this.inflight) await this.inflight
    if (this.failure) throw this.failure
    if (!this.inTxn) this.confirmIfAhead(this.lastCommitEnd)
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  private confirmIfAhead(lsn: bigint) {
    if (lsn > this.lastConfirmed) {
      this.lastConfirmed = lsn
      this.opts.confirm(lsn)
    }
  }

  private position() {
    const t = this.inTxn ?? { commitLsn: this.lastCommitEnd, seq: 0 }
    t.seq++
    return { commitLsn: t.commitLsn, version: encodeVersion(t.commitLsn, t.seq) }
  }

  /**
   * The routes of a relation: by OID (a renamed table keeps its mappings, ARCHITECTURE.md invariant 9); by name
   * only for routes built without the catalog's OID.
   */
  private async routesFor(rel: Relation): Promise<RouteRuntime[]> {
    const sameName = (r: RouteRuntime) => r.mapping.schema === rel.schema && r.mapping.table === rel.name
    const routes = this.opts.routes.filter((r) => r.relid === undefined ? sameName(r) : r.relid === rel.oid)
    const other = this.opts.routes.filter((r) => r.relid !== undefined && r.relid !== rel.oid && sameName(r))
    if (other.length) {
      // a new table under a mapped table's name (dropped and created again): not the table run follows
      this.opts.log.warn(
        "a table now has a mapped table's name but is not the table run follows: its changes are " +
          'not streamed; restart run to follow it (then backfill)',
        {
          table: `${rel.schema}.${rel.name}`,
          mappings: other.map((r) => r.mapping.name).join(', '),
        },
      )
    }
    // a relation message follows every change of the table's shape: a generated column added or dropped since the
    // routes were built changes what must be re-read (the catalog by OID; the message never lists them)
    if (routes.length) {
      const shape = await tableByOid(this.opts.sql, rel.oid)
      for (const r of routes) r.notStreamed = generatedNeeded(shape, r.needed)
    }
    for (const r of routes) {
      // generated columns are not in the relation message: their types (for the write schema) come from the catalog
      const missing = r.notStreamed?.filter((g) => !rel.columns.some((c) => c.name === g.name)) ?? []
      r.columnTypes = missing.length ? [...rel.columns, ...missing] : rel.columns
    }
    return routes
  }

  private add(i: Intent) {
    const key = i.route.mapping.name + '\u0000' + idKey(i.id)
    this.pending.delete(key) // re-insert: the map's order stays the order of last change
    this.pending.set(key, i)
  }

  private async truncate(relations: Relation[]) {
    const pos = this.position()
    for (const rel of relations) {
      for (const route of this.byRelation.get(rel.oid) ?? await this.routesFor(rel)) {
        const m = route.mapping
        if (m.truncate === 'ignore') {
          this.opts.log.warn('TRUNCATE ignored (mapping.truncate = "ignore"): the namespace keeps its documents', {
            mapping: m.name,
            table: `${rel.schema}.${rel.name}`,
            namespace: m.namespace,
          })
          continue
        }
        // Everything before the truncate must be written first, or a late write could bring back a document.
        await this.startFlush()
        await this.lock
        if (this.inflight) await this.inflight
        if (this.failure) throw this.failure
        await this.opts.sink.deleteAllBefore(m.namespace, pos.version)
        this.opts.log.info('TRUNCATE: deleted every document of the namespace written before it', {
          mapping: m.name,
          namespace: m.namespace,
        })
      }
    }
  }

  /** Hands the pending batch to a flush once the previous flush is done (one in flight: order per document). */
  private startFlush(): Promise<void> {
    const run = this.lock.then(async () => {
      if (this.inflight) await this.inflight
      if (this.failure) throw this.failure
      if (!this.pending.size && !this.dead.length) return
      const batch: Batch = {
        intents: this.pending,
        dead: this.dead,
        confirmable: this.lastCommitEnd,
      }
      this.pending = new Map()
      this.dead = []
      this.pendingSince = Date.now()
      this.inflight = this.flush(batch).catch((e) => {
        if (this.failure) return
        this.failure = e instanceof Error ? e : new Error(String(e))
        this.opts.log.error('writing a batch failed; the stream stops (nothing after it is confirmed)', {
          error: this.failure.message,
        })
        this.opts.onFailure?.(this.failure)
      }).finally(() => {
        this.inflight = undefined
      })
    })
    this.lock = run.catch(() => {})
    return run
  }

  private async flush(batch: Batch): Promise<void> {
    const started = Date.now()
    // changes that lack needed columns (unchanged TOAST values, generated columns): their rows as they are now
    const intents = await rereadIntents(this.opts.sql, [...batch.intents.values()], batch.dead)
    const w = await writeIntents(intents, batch.dead, this.opts)
    const progress: MappingProgress[] = [...w.byMapping].map(([mapping, c]) => ({
      mapping,
      upserted: c.upserted,
      deleted: c.deleted,
      lsn: batch.confirmable,
    }))
    if (progress.length) await recordProgress(this.opts.sql, progress)
    if (batch.confirmable) this.confirmIfAhead(batch.confirmable)
    // The commit of the batch's last transaction may have arrived while the batch was being written, with nothing
    // after it: then everything handled is durable, and that commit is confirmed too.
    if (!this.inTxn && !this.pending.size && !this.dead.length) this.confirmIfAhead(this.lastCommitEnd)
    this.opts.onFlush?.({ ...w, docs: intents.length, ms: Date.now() - started, confirmed: this.lastConfirmed })
  }
}
