// The status page of `puffgres run --metrics-port` (GET /): mappings, lag with a chart of the last hour, throughput,
// dead letters, write latency, 429s and pacing, the slot. Plain HTML and inline SVG, no script, no external resource:
// it works offline and refreshes itself with a meta refresh. It shows no row value, connection string or key: a
// dead letter appears as its mapping, document id and error *kind* (the stored error text may quote row values).
import type postgres from 'postgres'
import type { Logger } from '../types.ts'
import { SampleRing } from './sample-ring.ts'
import type { StreamMonitor } from './stream-monitor.ts'
import { deadLetterKind } from './dead-letter-kind.ts'
import {
  type DeadLetterSummary,
  NEWEST_DEAD_LETTERS,
  renderStatusHtml,
  type SlotView,
  type StatusMapping,
  type StatusView,
} from './status-html.ts'

export type { StatusMapping } from './status-html.ts'

export interface StatusPageOptions {
  monitor: StreamMonitor
  /** the stream's pool: dead letters and the slot are read from it */
  sql: postgres.Sql
  slot: string
  publication: string
  mappings: StatusMapping[]
  /** ms between samples (default 10 s); the ring keeps the last hour, at most MAX_SAMPLES samples */
  sampleMs?: number
  log?: Logger
  now?: () => number
  /** how long a page request waits for PostgreSQL (default 3 s) */
  dbWaitMs?: number
  /** PostgreSQL cancels a read that runs longer (default 10 s) */
  statementTimeoutMs?: number
}

/** What the page knows at one instant; counters are cumulative since the process started. */
interface Sample {
  at: number
  lagBytes: number | null
  lagSeconds: number
  retainedWal: number | null
  changes: number
  docs: number
  docsByMapping: Record<string, number>
  errors: number
  throttled: number
  retries: number
  pacedSeconds: number
  /** cumulative request counts per latency bucket (ok and error together), and the total */
  latency: number[]
  requests: number
}

interface DbView {
  /** when it was read (ms) */
  at: number
  /** why it could not be read, when it could not */
  error?: string
  dlq: Map<string, number>
  newest: DeadLetterSummary[]
  slot?: SlotView
}

const HOUR_MS = 3_600_000
const MAX_SAMPLES = 720
/** how long a page request waits for PostgreSQL before it shows the last figures read, marked as stale */
const DB_WAIT_MS = 3_000
/** PostgreSQL cancels a read of the page's that runs longer (a huge dead-letter queue) */
const DB_STATEMENT_TIMEOUT_MS = 10_000
/** a page request reads PostgreSQL again when what it read is older than this... */
const DB_FRESH_MS = 1_000
/** ...and older than this many times the last read took: reading the queue stays a small share of a backend's time */
const DB_DUTY_FACTOR = 20

export class StatusPage {
  readonly ring: SampleRing<Sample>
  readonly sampleMs: number
  #timer: ReturnType<typeof setInterval> | undefined
  #db: DbView | undefined
  /** the read in flight, until PostgreSQL has answered or failed (not merely until a page gave up waiting) */
  #reading: Promise<void> | undefined
  #readingSince = 0
  #lastReadMs = 0
  readonly #now: () => number
  readonly #waitMs: number
  readonly #statementTimeoutMs: number
  readonly #names: string[]

  constructor(private readonly opts: StatusPageOptions) {
    this.sampleMs = opts.sampleMs ?? 10_000
    this.ring = new SampleRing(Math.min(MAX_SAMPLES, Math.ceil(HOUR_MS / this.sampleMs)))
    this.#now = opts.now ?? Date.now
    this.#waitMs = opts.dbWaitMs ?? DB_WAIT_MS
    this.#statementTimeoutMs = Math.round(opts.statementTimeoutMs ?? DB_STATEMENT_TIMEOUT_MS)
    this.#names = opts.mappings.map((m) => m.name)
    opts.monitor.streamInfo.set(1, { slot: opts.slot, publication: opts.publication })
  }

  start(): void {
    this.ring.push(this.#sample())
    this.#timer = setInterval(() => {
      this.ring.push(this.#sample())
      // keeps puffgres_dead_letters and puffgres_slot_failover current for Prometheus
      if (this.#stale()) void this.#readDb()
    }, this.sampleMs)
    void this.#readDb()
  }

  /** Stops sampling; waits for a read in flight at most as long as a page would (the pool's end cuts it short). */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([this.#reading, new Promise((r) => timer = setTimeout(r, this.#waitMs))])
    clearTimeout(timer)
  }

  /** The page, as served at `/`: it waits at most DB_WAIT_MS for PostgreSQL, then shows the last figures read. */
  async render(): Promise<string> {
    if (this.#stale()) {
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([this.#readDb(), new Promise((r) => timer = setTimeout(r, this.#waitMs))])
      clearTimeout(timer)
    }
    let db: DbView = this.#db ?? { at: this.#now(), dlq: new Map(), newest: [] }
    if (this.#reading && this.#now() - this.#readingSince >= this.#waitMs) {
      db = { ...db, error: `no answer from PostgreSQL in ${Math.round((this.#now() - this.#readingSince) / 1000)} s` }
    } else if (!this.#db) db = { ...db, error: 'cannot read PostgreSQL' }
    return renderStatusHtml(this.#view(db))
  }

  /** What was read is old enough to read again (a read in flight is joined, never doubled). */
  #stale(): boolean {
    if (!this.#db) return true
    return this.#now() - this.#db.at >= Math.max(DB_FRESH_MS, DB_DUTY_FACTOR * this.#lastReadMs)
  }

  #sample(): Sample {
    const m = this.opts.monitor
    const docsByMapping: Record<string, number> = {}
    for (const map of this.opts.mappings) {
      docsByMapping[map.name] = m.changes.get({ mapping: map.name, kind: 'upsert' }) +
        m.changes.get({ mapping: map.name, kind: 'delete' })
    }
    const ok = m.sinkLatency.snapshot({ outcome: 'ok' })
    const err = m.sinkLatency.snapshot({ outcome: 'error' })
    const throttled = m.throttled.total()
    return {
      at: this.#now(),
      lagBytes: m.lagBytes.get() ?? null,
      lagSeconds: m.lag(),
      retainedWal: m.retainedWal.get() ?? null,
      changes: m.changesProcessed.total(),
      docs: m.changes.total(),
      docsByMapping,
      // a 429 is a failed request too: counted once, as a 429
      errors: Math.max(0, err.count - throttled),
      throttled,
      retries: m.retries.total(),
      pacedSeconds: m.paced.total(),
      latency: ok.counts.map((c, i) => c + err.counts[i]),
      requests: ok.count + err.count,
    }
  }

  /**
   * Reads dead letters and the slot: one read at a time, however many pages wait for it and however long PostgreSQL
   * takes to answer (a page that stops waiting does not start another); never throws.
   */
  #readDb(): Promise<void> {
    if (!this.#reading) {
      this.#readingSince = this.#now()
      this.#reading = this.#query().finally(() => this.#reading = undefined)
    }
    return this.#reading
  }

  async #query(): Promise<void> {
    const { sql, slot, monitor } = this.opts
    const names = this.#names
    const started = this.#now()
    try {
      // one connection of the stream's pool for the three reads; PostgreSQL cancels them past the statement timeout
      const view = await sql.begin(async (tx) => {
        await tx.unsafe(`SET LOCAL statement_timeout = ${this.#statementTimeoutMs}`)
        // this process's mappings only (other processes of a scale-out have pages of their own), by the
        // (mapping, id) index: never a scan or sort of the whole queue, however long it has grown
        const counts = await tx<{ mapping: string; n: number }[]>`
          SELECT mapping, count(*)::int AS n FROM __puffgres_dlq WHERE mapping = ANY(${names}::text[])
          GROUP BY mapping`
        const newest = await tx<
          { id: string; mapping: string; doc_id: string | null; error: string; attempts: number; at: Date }[]
        >`SELECT d.id::text, d.mapping, d.doc_id, d.error, d.attempts, d.last_failed_at AS at
          FROM unnest(${names}::text[]) AS m(name)
          CROSS JOIN LATERAL (SELECT * FROM __puffgres_dlq q WHERE q.mapping = m.name ORDER BY q.id DESC
            LIMIT ${NEWEST_DEAD_LETTERS}) d
          ORDER BY d.id DESC LIMIT ${NEWEST_DEAD_LETTERS}`
        // to_jsonb: the failover column exists from PostgreSQL 17 on
        const [s] = await tx<{ s: { active: boolean; failover?: boolean; wal_status?: string } }[]>`
          SELECT to_jsonb(r) AS s FROM pg_replication_slots r
          WHERE r.slot_name = ${slot} AND r.database = current_database()`
        return {
          at: this.#now(),
          dlq: new Map(counts.map((r) => [r.mapping, r.n])),
          newest: newest.map((r) => ({
            id: r.id,
            mapping: r.mapping,
            doc_id: r.doc_id,
            kind: deadLetterKind(r.error),
            attempts: r.attempts,
            at: new Date(r.at).toISOString(),
          })),
          slot: s
            ? {
              exists: true,
              active: s.s.active,
              failover: typeof s.s.failover === 'boolean' ? s.s.failover : null,
              walStatus: s.s.wal_status ?? null,
            }
            : { exists: false, active: false, failover: null, walStatus: null },
        } satisfies DbView
      })
      for (const m of this.opts.mappings) monitor.deadLetters.set(view.dlq.get(m.name) ?? 0, { mapping: m.name })
      monitor.slotFailover.set(view.slot?.failover ? 1 : 0)
      this.#lastReadMs = this.#now() - started
      this.#db = view
    } catch (e) {
      // keeps the last good figures, marked as stale
      this.opts.log?.debug('status page: cannot read dead letters and the slot', { error: (e as Error).message })
      // a read PostgreSQL cancelled (statement timeout) counts: the next waits longer; unreachable does not
      if ((e as { code?: string }).code === '57014') this.#lastReadMs = this.#now() - started
      this.#db = { ...(this.#db ?? { dlq: new Map(), newest: [] }), at: this.#now(), error: 'cannot read PostgreSQL' }
    }
  }

  #view(db: DbView): StatusView {
    const m = this.opts.monitor
    const live = this.#sample()
    const samples = [...this.ring.toArray(), live]
    const ago = (ms: number) => samples.find((s) => s.at >= live.at - ms - this.sampleMs / 2) ?? samples[0]
    const rate = (from: Sample, pick: (s: Sample) => number) => {
      const dt = (live.at - from.at) / 1000
      return dt > 0 ? (pick(live) - pick(from)) / dt : null
    }
    const minute = ago(60_000)
    const five = ago(300_000)
    const lat = live.latency.map((c, i) => c - five.latency[i])
    const buckets = m.sinkLatency.buckets
    const health = m.health()
    const series = (pick: (s: Sample) => number | null) =>
      samples.flatMap((s) => {
        const v = pick(s)
        return v === null ? [] : [{ t: s.at, v }]
      })
    const rates = samples.slice(1).map((s, i) => {
      const dt = (s.at - samples[i].at) / 1000
      return { t: s.at, v: dt > 0 ? Math.max(0, (s.docs - samples[i].docs) / dt) : 0 }
    })
    return {
      now: live.at,
      // the last hour; until the process has run that long, the time since it started (at least a minute)
      windowMs: Math.min(HOUR_MS, this.ring.capacity * this.sampleMs, Math.max(60_000, live.at - samples[0].at)),
      refreshSeconds: Math.max(2, Math.min(10, Math.round(this.sampleMs / 1000))),
      streaming: m.streaming,
      healthy: health.ok,
      healthReason: health.reason,
      slot: this.opts.slot,
      publication: this.opts.publication,
      slotState: db.slot,
      lagBytes: live.lagBytes,
      lagSeconds: live.lagSeconds,
      retainedWal: live.retainedWal,
      changesPerSecond: rate(minute, (s) => s.changes),
      docsPerSecond: rate(minute, (s) => s.docs),
      rateWindowSeconds: Math.round((live.at - minute.at) / 1000),
      latencyWindowSeconds: Math.round((live.at - five.at) / 1000),
      latency: {
        requests: live.requests - five.requests,
        p50: quantile(0.5, buckets, lat, live.requests - five.requests),
        p95: quantile(0.95, buckets, lat, live.requests - five.requests),
        p99: quantile(0.99, buckets, lat, live.requests - five.requests),
      },
      totals: {
        changes: live.changes,
        docs: live.docs,
        errors: live.errors,
        throttled: live.throttled,
        retries: live.retries,
        pacedSeconds: live.pacedSeconds,
        throttledRecent: live.throttled - five.throttled,
        errorsRecent: live.errors - five.errors,
      },
      lagSecondsSeries: series((s) => s.lagSeconds),
      lagBytesSeries: series((s) => s.lagBytes),
      docsRateSeries: rates,
      mappings: this.opts.mappings.map((map) => ({
        ...map,
        docs: live.docsByMapping[map.name] ?? 0,
        docsPerSecond: rate(minute, (s) => s.docsByMapping[map.name] ?? 0),
        deadLetters: db.dlq.get(map.name) ?? 0,
      })),
      deadLetters: [...db.dlq.values()].reduce((a, b) => a + b, 0),
      newestDeadLetters: db.newest,
      dbError: db.error,
    }
  }
}

/**
 * The q-quantile of a histogram's requests (cumulative counts per upper bound, as Prometheus's histogram_quantile
 * estimates it: linear within the bucket). null without requests; above the last bound, that bound.
 */
export function quantile(q: number, bounds: readonly number[], cumulative: number[], total: number): number | null {
  if (total <= 0) return null
  const rank = q * total
  for (let i = 0; i < bounds.length; i++) {
    if (cumulative[i] >= rank) {
      const lo = i ? bounds[i - 1] : 0
      const below = i ? cumulative[i - 1] : 0
      const inBucket = cumulative[i] - below
      return inBucket > 0 ? lo + (bounds[i] - lo) * ((rank - below) / inBucket) : bounds[i]
    }
  }
  return bounds[bounds.length - 1]
}
