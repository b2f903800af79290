// The middle of the stream: pgoutput messages in, versioned writes out, and the LSN that may be confirmed.
// Intents of a batch are coalesced per document (last version wins), transformed per mapping, written per
// namespace; refused rows go to the dead-letter queue; only then is the batch's last complete commit confirmed
// (ARCHITECTURE.md invariants 1, 2, 4, 6).
import type postgres from 'postgres'
import type { PgOutputMessage, Relation } from '../postgres/pgoutput.ts'
import { readRowsByKey } from '../postgres/read-rows.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import { type MappingProgress, recordProgress } from '../postgres/checkpoints.ts'
import type { Sink } from '../turbopuffer/types.ts'
import { encodeVersion, type Logger } from '../types.ts'
import { changeIntents, deadLetterEvent, type Intent, intentKeyTexts, unpublishedGenerated } from './changes.ts'
import { docId, idKey } from './docid.ts'
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
        this.byRelation.set(msg.relation.oid, this.routesFor(msg.relation))
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

  private routesFor(rel: Relation): RouteRuntime[] {
    const routes = this.opts.routes.filter((r) => r.mapping.schema === rel.schema && r.mapping.table === rel.name)
    for (const r of routes) r.columnTypes = rel.columns
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
        this.failure ??= e instanceof Error ? e : new Error(String(e))
        this.opts.log.error('writing a batch failed; the stream stops (nothing after it is confirmed)', {
          error: this.failure.message,
        })
      }).finally(() => {
        this.inflight = undefined
      })
    })
    this.lock = run.catch(() => {})
    return run
  }

  private async flush(batch: Batch): Promise<void> {
    const started = Date.now()
    const intents = await this.reread([...batch.intents.values()], batch.dead)
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
        [...relation.columns, ...unpublishedGenerated(group[0].route, relation)],
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
