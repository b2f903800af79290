// The middle of the stream: pgoutput messages in, versioned writes out, and the LSN that may be confirmed.
// Intents of a batch are coalesced per document (last version wins), transformed per mapping, written per
// namespace; refused rows go to the dead-letter queue; only then is the batch's last complete commit confirmed
// (ARCHITECTURE.md invariants 1, 2, 4, 6).
import type postgres from 'postgres'
import type { PgOutputMessage, Relation } from '../postgres/pgoutput.ts'
import { readRowsByKey } from '../postgres/read-rows.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import type { MappingProgress } from '../postgres/checkpoints.ts'
import { ProgressRecorder } from './progress-recorder.ts'
import type { Sink } from '../turbopuffer/types.ts'
import { encodeVersion, type Logger } from '../types.ts'
import { changeIntents, deadLetterEvent, type Intent, intentKeyTexts } from './changes.ts'
import { docId, idKey } from './docid.ts'
import { AdaptiveLimit } from '../concurrency.ts'
import { type Batch, WritePipeline } from './inflight.ts'
import { type RouteRuntime, writeIntents, type WriteSummary } from './writer.ts'

export type { RouteRuntime } from './writer.ts'

export interface ProcessorOptions {
  routes: RouteRuntime[]
  sink: Sink
  /** pool for re-reads, the DLQ and progress */
  sql: postgres.Sql
  log: Logger
  /** inside a transaction, write once this many documents are pending (default 1000); at a commit, at once */
  batchSize?: number
  /** the longest a change waits before it is written (default 1000 ms); usually it waits for no timer */
  pollIntervalMs?: number
  /** batches in flight at once (AIMD; the sink reports pushback to it); default: a limit of its own */
  concurrency?: AdaptiveLimit
  /** the most documents in one batch (default 4 × batchSize, at most 10,000: turbopuffer's rows per request) */
  maxBatch?: number
  /** called with the end LSN of the last commit whose changes are all durable */
  confirm: (lsn: bigint) => void
  /** observers for metrics */
  onFlush?: (info: FlushInfo) => void
  /** first pause after a retryable transform failure (embedding provider down) */
  retryDelayMs?: number
}

export interface FlushInfo extends WriteSummary {
  docs: number
  ms: number
  confirmed: bigint
}

/** while writes are in flight, a small batch waits this long for company (inflight.ts) */
const COALESCE_MS = 10

/** the most bytes of changes (as decoded) in one batch; two batches' worth may be pending or in flight */
const MAX_BATCH_BYTES = 4 * 1024 * 1024

/** A change's size as decoded: what its row costs in memory, roughly (values, plus a little per column). */
function changeBytes(i: Intent): number {
  let n = 64
  for (const v of i.tuple ?? []) n += 16 + (v.kind === 'text' || v.kind === 'binary' ? v.value.length : 0)
  return n
}

export class ChangeProcessor {
  private readonly byRelation = new Map<number, RouteRuntime[]>()
  private readonly pipeline: WritePipeline<Omit<FlushInfo, 'confirmed'>>
  private inTxn: { commitLsn: bigint; seq: number } | undefined
  private lastCommitEnd = 0n
  private lastConfirmed = 0n
  private timer: ReturnType<typeof setInterval> | undefined
  private readonly pollIntervalMs: number
  private readonly progress: ProgressRecorder

  constructor(private readonly opts: ProcessorOptions) {
    const batchSize = opts.batchSize ?? 1000
    this.pollIntervalMs = opts.pollIntervalMs ?? 1000
    this.progress = new ProgressRecorder(opts.sql, opts.log)
    const maxBatch = opts.maxBatch ?? Math.max(batchSize, Math.min(10_000, batchSize * 4))
    this.pipeline = new WritePipeline<Omit<FlushInfo, 'confirmed'>>({
      batchSize,
      maxBatch,
      maxBatchBytes: MAX_BATCH_BYTES,
      // memory: what is pending plus what is in flight (invariant 4)
      maxOutstanding: maxBatch * 2,
      maxOutstandingBytes: MAX_BATCH_BYTES * 2,
      pollIntervalMs: this.pollIntervalMs,
      coalesceMs: Math.min(COALESCE_MS, this.pollIntervalMs),
      limit: opts.concurrency ?? new AdaptiveLimit(),
      write: (batch) => this.flush(batch),
      confirm: (lsn) => this.confirmIfAhead(lsn),
      landed: (info) => this.opts.onFlush?.({ ...info, confirmed: this.lastConfirmed }),
      failed: (e) =>
        this.opts.log.error('writing a batch failed; the stream stops (nothing after it is confirmed)', {
          error: e.message,
        }),
    })
  }

  /** the first error of a flush; the stream stops on it (nothing after it is confirmed) */
  get failure(): Error | undefined {
    return this.pipeline.failure
  }

  /** Starts the timer that flushes a batch once its oldest change has waited pollIntervalMs. */
  start(): void {
    // a change waits up to pollIntervalMs + tick: a small tick keeps the latency bound (a wake-up costs ~nothing)
    const tick = Math.max(10, Math.min(25, Math.floor(this.pollIntervalMs / 4)))
    this.timer = setInterval(() => this.pipeline.tick(), tick)
  }

  /** True when nothing is pending or being written and no transaction is open (keepalives may then be confirmed). */
  get idle(): boolean {
    return !this.inTxn && this.pipeline.idle
  }

  /** Handles one message; resolves when the processor can take the next (backpressure). */
  async handle(msg: PgOutputMessage): Promise<void> {
    if (this.failure) throw this.failure
    switch (msg.tag) {
      case 'begin':
        this.inTxn = { commitLsn: msg.finalLsn, seq: 0 }
        this.pipeline.begin()
        return
      case 'commit':
        this.inTxn = undefined
        this.lastCommitEnd = msg.endLsn
        // group commit: written now if a slot is free, else with what arrives meanwhile; confirmed once landed
        this.pipeline.commit(msg.endLsn)
        return
      case 'relation':
        this.byRelation.set(msg.relation.oid, this.routesFor(msg.relation))
        return
      case 'insert':
      case 'update':
      case 'delete': {
        const routes = this.byRelation.get(msg.relation.oid) ?? []
        if (!routes.length) return
        const pos = this.position()
        changeIntents(msg, routes, pos, (i) => this.add(i), (b) =>
          this.pipeline.addDead({
            mapping: b.route.mapping.name,
            lsn: b.lsn,
            event: b.event,
            error: b.error,
          }))
        const wait = this.pipeline.admit()
        if (wait) await wait
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
    try {
      await this.pipeline.flushAll()
      await this.progress.idle()
    } catch (e) {
      // the other writes in flight finish first: a new stream must not race them (order per document)
      await this.pipeline.settle()
      throw e
    }
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

  private routesFor(rel: Relation): RouteRuntime[] {
    const routes = this.opts.routes.filter((r) => r.mapping.schema === rel.schema && r.mapping.table === rel.name)
    for (const r of routes) r.columnTypes = rel.columns
    return routes
  }

  private add(i: Intent) {
    this.pipeline.add(i.route.mapping.name + '\u0000' + idKey(i.id), i, changeBytes(i))
  }

  private async truncate(relations: Relation[]) {
    const pos = this.position()
    for (const rel of relations) {
      for (const route of this.byRelation.get(rel.oid) ?? this.routesFor(rel)) {
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
        await this.pipeline.flushAll()
        await this.opts.sink.deleteAllBefore(m.namespace, pos.version)
        this.opts.log.info('TRUNCATE: deleted every document of the namespace written before it', {
          mapping: m.name,
          namespace: m.namespace,
        })
      }
    }
  }

  /** Writes one batch (WritePipeline calls it, several at once); resolves once it is durable. */
  private async flush(batch: Batch): Promise<Omit<FlushInfo, 'confirmed'>> {
    const started = Date.now()
    const intents = await this.reread(batch.intents, batch.dead)
    const w = await writeIntents(intents, batch.dead, this.opts)
    // per mapping, the newest commit LSN written (GREATEST in the table: batches land in any order)
    const newest = new Map<string, bigint>()
    for (const i of intents) {
      const m = i.route.mapping.name
      if ((newest.get(m) ?? 0n) < i.lsn) newest.set(m, i.lsn)
    }
    const progress: MappingProgress[] = [...w.byMapping].map(([mapping, c]) => ({
      mapping,
      upserted: c.upserted,
      deleted: c.deleted,
      lsn: newest.get(mapping) ?? 0n,
    }))
    if (progress.length) this.progress.add(progress)
    return { ...w, docs: intents.length, ms: Date.now() - started }
  }

  /** Replaces intents whose update left needed TOASTed columns out by the row as it is now. */
  private async reread(intents: Intent[], dead: DeadLetter[]): Promise<Intent[]> {
    const need = intents.filter((i) => i.reread)
    if (!need.length) return intents
    const groups = new Map<string, Intent[]>()
    for (const i of need) {
      const k = `${i.route.mapping.name}\u0000${i.relation!.oid}`
      groups.set(k, [...(groups.get(k) ?? []), i])
    }
    const replaced = new Map<Intent, Intent | undefined>()
    for (const group of groups.values()) {
      const relation = group[0].relation!
      const m = group[0].route.mapping
      const rows = await readRowsByKey(
        this.opts.sql,
        { schema: relation.schema, table: relation.name },
        relation.columns,
        m.idColumns,
        group[0].route.keyTypes,
        group.map((i) => intentKeyTexts(i)!),
      )
      const found = new Map(rows.map((r) => [idKey(docId(r, m.idColumns)!), r]))
      for (const i of group) {
        const row = found.get(idKey(i.id))
        // Gone: a later change (in this stream, after this one) deleted it; that delete will be applied.
        if (!row) {
          replaced.set(i, undefined)
          continue
        }
        let member: boolean
        try {
          member = !i.route.isMember || i.route.isMember(row)
        } catch (e) {
          dead.push({
            mapping: m.name,
            docId: String(i.id),
            lsn: i.lsn,
            event: deadLetterEvent(i),
            error: `membership: ${e}`,
          })
          replaced.set(i, undefined)
          continue
        }
        replaced.set(i, {
          ...i,
          reread: undefined,
          kind: member ? 'upsert' : 'delete',
          event: member
            ? { ...i.event, new: row }
            : { ...i.event, type: 'delete', op: 'delete', new: undefined, old: row },
        })
      }
    }
    return intents.flatMap((i) => {
      if (!replaced.has(i)) return [i]
      const r = replaced.get(i)
      return r ? [r] : []
    })
  }
}
