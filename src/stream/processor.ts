// The middle of the stream: pgoutput messages in (each change decoded here, postgres/change-event.ts), versioned
// writes out, and the LSN that may be confirmed.
// Intents of a batch are coalesced per document (last version wins), transformed per mapping, written per
// namespace; refused rows go to the dead-letter queue; only then is the batch's last complete commit handed to the
// checkpoint (docs/ARCHITECTURE.md, invariants 1, 2, 4, 6).
import type postgres from 'postgres'
import type { PgOutputMessage, Relation } from '../postgres/pgoutput.ts'
import type { MappingProgress } from '../postgres/progress.ts'
import { ProgressRecorder } from './progress-recorder.ts'
import type { Sink } from '../turbopuffer/types.ts'
import { encodeVersion, type Logger } from '../types.ts'
import {
  changeIntents,
  identityCovers,
  type Intent,
  type MappingRoute,
  type TableRoutes,
  tableRoutes,
} from '../pipeline/changes.ts'
import { decodeChange } from '../postgres/change-event.ts'
import { idKey } from '../pipeline/docid.ts'
import { rereadIntents } from '../pipeline/row-identity.ts'
import { type ColumnType, generatedNeeded, tableByOid } from '../source/mod.ts'
import { AdaptiveLimit, forEachLimited } from '../concurrency.ts'
import { listMappingNamespaces } from '../turbopuffer/mapping-namespaces.ts'
import { type Batch, WritePipeline } from './inflight.ts'
import type { Checkpoint } from './checkpoint.ts'
import { type RouteRuntime, writeIntents, type WriteSummary } from '../pipeline/writer.ts'
import { MIGRATE_MESSAGE_PREFIX, UnroutableTableError } from './follow.ts'
import { publishesRelation } from '../postgres/publication.ts'

/** the name of the error the engine abandons a lost stream's writes with (engine.ts, onLost) */
export const ABANDONED = 'WritesAbandoned'

export type { RouteRuntime } from '../pipeline/writer.ts'

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
  /** told the end LSN of each commit whose changes (and all before) are durable; decides what is confirmed */
  checkpoint: Pick<Checkpoint, 'landed' | 'confirmed'>
  /** observers for metrics */
  onFlush?: (info: FlushInfo) => void
  /** first pause after a retryable transform failure (embedding provider down) */
  retryDelayMs?: number
  /**
   * whether the stream is behind the server's WAL (engine.ts, stream/server-wal.ts): with a namespace per tenant a
   * batch grows while it is, and is cut once the stream has caught up (inflight.ts `spread`)
   */
  behind?: () => boolean
  /** called once when a flush fails: the stream must let go of its replication connection at once */
  onFailure?: (e: Error) => void
  /**
   * online migrations (stream/follow.ts): adds the routes of mappings migrated since; called at `migrate`'s message
   * and for a published table no route reads. Without it such a table's changes stop the stream.
   */
  follow?: (opts?: { force?: boolean }) => Promise<unknown>
  /** the publication streamed, for the message of a table no route reads */
  publication?: string
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

/**
 * A stream with a namespace per tenant: a batch of N changes over T namespaces is T requests of about N / T rows, and
 * requests are what is scarce (the service's latency, the runtime's connections: Bun sends 256 at once unless
 * BUN_CONFIG_MAX_HTTP_REQUESTS says more), so batches of such changes may hold this many rows / bytes, and grow for up
 * to waitMs while the stream is behind the server's WAL (inflight.ts `spread`). Measured over 1,000 tenants
 * (scripts/bench/tenants.ts, 300,000 rows): 60,000 rows / 16 MiB wrote no faster than this and peaked ~200 MB higher;
 * 20,000 / 6 MiB was a quarter slower.
 */
const TENANT_BATCH = { rows: 30_000, bytes: 8 * 1024 * 1024, waitMs: 1000 }

export class ChangeProcessor {
  private readonly byRelation = new Map<number, TableRoutes>()
  /** the latest relation message of each table: its routes are built again when mappings are added */
  private readonly relations = new Map<number, Relation>()
  /** tables already warned about a replica identity that does not carry a mapping's id (once per table) */
  private readonly identityWarned = new Set<number>()
  private readonly pipeline: WritePipeline<Omit<FlushInfo, 'confirmed'>>
  private inTxn: { commitLsn: bigint; seq: number; versionPrefix?: string } | undefined
  private lastCommitEnd = 0n
  private timer: ReturnType<typeof setInterval> | undefined
  private readonly pollIntervalMs: number
  private readonly progress: ProgressRecorder

  constructor(private readonly opts: ProcessorOptions) {
    const batchSize = opts.batchSize ?? 1000
    this.pollIntervalMs = opts.pollIntervalMs ?? 1000
    this.progress = new ProgressRecorder(opts.sql, opts.log)
    // a namespace per tenant: a batch of such changes becomes a request per namespace it touches, so it may grow (by
    // rows and bytes, not turbopuffer's 10,000 rows a request, which the sink keeps per namespace) while the stream is
    // behind (inflight.ts `spread`); the changes of other mappings are batched as without it
    const tenants = opts.routes.some((r) => r.mapping.namespaceTemplate)
    const maxBatch = opts.maxBatch ?? Math.max(batchSize, Math.min(10_000, batchSize * 4))
    this.pipeline = new WritePipeline<Omit<FlushInfo, 'confirmed'>>({
      batchSize,
      maxBatch,
      maxBatchBytes: MAX_BATCH_BYTES,
      // memory: what is pending plus what is in flight (invariant 4); two tenant batches (`spread`) when most of it is
      // changes of tenant mappings
      maxOutstanding: maxBatch * 2,
      maxOutstandingBytes: MAX_BATCH_BYTES * 2,
      pollIntervalMs: this.pollIntervalMs,
      coalesceMs: Math.min(COALESCE_MS, this.pollIntervalMs),
      spread: tenants ? { ...TENANT_BATCH, behind: opts.behind } : undefined,
      limit: opts.concurrency ?? new AdaptiveLimit(),
      write: (batch) => this.flush(batch),
      confirm: (lsn) => this.opts.checkpoint.landed(lsn),
      landed: (info) => this.opts.onFlush?.({ ...info, confirmed: this.opts.checkpoint.confirmed }),
      failed: (e) => {
        // abandoned (the engine's: the replication connection was lost) is no failure of the writes
        const failed = 'writing a batch failed; the stream stops (nothing after it is confirmed)'
        if (e.name === ABANDONED) this.opts.log.info(e.message)
        else this.opts.log.error(failed, { error: e.message })
        this.opts.onFailure?.(e)
      },
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

  /**
   * Handles one message; returns a promise only when the processor cannot take the next message at once
   * (backpressure, a relation's routes, a truncate): most changes then cost no promise. Throws the first failure.
   */
  handle(msg: PgOutputMessage): Promise<void> | undefined {
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
      case 'relation': {
        const oid = msg.relation.oid
        this.relations.set(oid, msg.relation)
        return this.routesFor(msg.relation).then((table) => {
          this.byRelation.set(oid, table)
        })
      }
      case 'message':
        // `migrate` committed: later changes go through the mappings it recorded (invariant 10)
        if (msg.transactional && msg.prefix === MIGRATE_MESSAGE_PREFIX && this.opts.follow) return this.followMigrate()
        return
      case 'insert':
      case 'update':
      case 'delete': {
        const table = this.byRelation.get(msg.relation.oid)
        if (!table?.routes.length) return
        const pos = this.position()
        const change = decodeChange(msg, table.needs)
        const bytes = change.bytes
        changeIntents(change, table, pos, (i) => this.add(i, bytes), (d) => this.pipeline.addDead(d))
        return this.pipeline.admit()
      }
      case 'truncate':
        return this.truncate(msg.relations)
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
    if (!this.inTxn) this.opts.checkpoint.landed(this.lastCommitEnd)
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  private position() {
    const t = this.inTxn
    if (!t) return { commitLsn: this.lastCommitEnd, version: encodeVersion(this.lastCommitEnd, 1) }
    t.seq++
    // encodeVersion(commitLsn, seq), with the LSN's hex formatted once per transaction
    t.versionPrefix ??= encodeVersion(t.commitLsn).slice(0, 16)
    return { commitLsn: t.commitLsn, version: t.versionPrefix + t.seq.toString(16).padStart(8, '0') }
  }

  /**
   * The routes of a relation: by OID (a renamed table keeps its mappings, docs/ARCHITECTURE.md, invariant 9); by name
   * only for routes built without the catalog's OID.
   */
  private async routesFor(rel: Relation): Promise<TableRoutes> {
    const sameName = (r: RouteRuntime) => r.mapping.schema === rel.schema && r.mapping.table === rel.name
    const routed = () => this.opts.routes.filter((r) => r.relid === undefined ? sameName(r) : r.relid === rel.oid)
    const other = this.opts.routes.filter((r) => r.relid !== undefined && r.relid !== rel.oid && sameName(r))
    if (other.length) {
      // a new table under a mapped table's name (dropped and created again): not the table run follows
      this.opts.log.warn(
        "a table now has a mapped table's name but is not the table run follows: nothing after its " +
          'first change is confirmed; restart run to follow it (then backfill)',
        {
          table: `${rel.schema}.${rel.name}`,
          mappings: other.map((r) => r.mapping.name).join(', '),
        },
      )
    }
    let routes = routed()
    if (!routes.length) {
      // pgoutput names only published tables: one no route reads may be a mapping migrated since run started; if
      // not, nothing of it may be confirmed (docs/ARCHITECTURE.md, invariants 1 and 10)
      await this.opts.follow?.({ force: true })
      routes = routed()
      if (!routes.length) {
        // a table no longer published (its mapping removed by a later migrate, or the table dropped): its earlier
        // changes, replayed, are wanted by no mapping; one still published is
        const pub = this.opts.publication
        if (!pub || await publishesRelation(this.opts.sql, pub, rel.oid)) {
          throw new UnroutableTableError(rel, pub ?? 'the publication')
        }
        this.opts.log.info('changes of a table no longer published and read by no mapping: skipped', {
          table: `${rel.schema}.${rel.name}`,
        })
      }
    }
    const uncovered = routes.filter((r) => !identityCovers(rel, r.mapping))
    if (uncovered.length && !this.identityWarned.has(rel.oid)) {
      this.identityWarned.add(rel.oid)
      this.opts.log.warn(
        "the table's REPLICA IDENTITY does not include id column(s) of its mappings (or a namespace template's " +
          'columns): each update is written and dead-lettered, as it may have changed them (the old document would stay)',
        {
          table: `${rel.schema}.${rel.name}`,
          mappings: uncovered.map((r) => r.mapping.name).join(', '),
          fix:
            `ALTER TABLE ${rel.schema}.${rel.name} REPLICA IDENTITY DEFAULT (or FULL), then puffgres verify --repair`,
        },
      )
    }
    // a relation message follows every change of the table's shape: a generated column added or dropped since the
    // routes were built changes what must be re-read (the catalog by OID; the message never lists them)
    const generated = new Map<MappingRoute, ColumnType[]>()
    if (routes.length) {
      const shape = await tableByOid(this.opts.sql, rel.oid)
      for (const r of routes) {
        const g = generatedNeeded(shape, r.needed)
        if (g) generated.set(r, g)
      }
    }
    return tableRoutes(routes, rel.columns, generated)
  }

  /** Adds the routes of the mappings `migrate` recorded, and builds the routes of every known table again. */
  private async followMigrate(): Promise<void> {
    await this.opts.follow!()
    for (const [oid, rel] of this.relations) this.byRelation.set(oid, await this.routesFor(rel))
  }

  private add(i: Intent, bytes: number) {
    // per mapping (its namespace or template: two live versions of one mapping, a re-index, are two documents) and
    // row, whatever tenant namespace the row is in: its changes are ordered across namespaces
    this.pipeline.add(i.route.mapping.namespace + '\u0000' + idKey(i.id), i, bytes, !!i.route.mapping.namespaceTemplate)
  }

  private async truncate(relations: Relation[]) {
    const pos = this.position()
    for (const rel of relations) {
      for (const route of (this.byRelation.get(rel.oid) ?? await this.routesFor(rel)).routes) {
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
        // a namespace per tenant: every namespace of the mapping (listed by prefix), several at once
        const namespaces = await listMappingNamespaces(this.opts.sink, m)
        await forEachLimited(namespaces, 8, (ns) => this.opts.sink.deleteAllBefore(ns, pos.version))
        this.opts.log.info('TRUNCATE: deleted every document of the namespace written before it', {
          mapping: m.name,
          namespace: m.namespace,
          ...(m.namespaceTemplate ? { namespaces: namespaces.length } : {}),
        })
      }
    }
  }

  /** Writes one batch (WritePipeline calls it, several at once); resolves once it is durable. */
  private async flush(batch: Batch): Promise<Omit<FlushInfo, 'confirmed'>> {
    const started = Date.now()
    // changes that lack needed columns (unchanged TOAST values, generated columns): their rows as they are now
    const intents = await rereadIntents(this.opts.sql, batch.intents, batch.dead)
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
}
