// What `puffgres run` knows about itself while it streams: Prometheus metrics, replication lag, health. run.ts feeds
// it (batches, confirmations, commits, sink requests); the metrics server and the heartbeat read it.
import type { FlushInfo } from './processor.ts'
import { Registry } from './metrics.ts'
import type { Mapping } from '../config/load.ts'
import { type NamespaceTemplate, templatePattern } from '../config/row-documents.ts'
import type { EmbeddingObserver } from '../embeddings/embedder.ts'

/** Sink request latency buckets, seconds. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

export interface Health {
  ok: boolean
  streaming: boolean
  lag_seconds: number
  max_lag_seconds: number
  reason?: string
}

export class StreamMonitor {
  readonly registry = new Registry()
  readonly changes = this.registry.counter(
    'puffgres_changes_applied_total',
    'Documents written to turbopuffer by the stream, by mapping and kind (upsert, delete).',
  )
  readonly batches = this.registry.counter('puffgres_batches_total', 'Batches written (transform, sink, DLQ).')
  readonly skipped = this.registry.counter(
    'puffgres_writes_skipped_total',
    'Writes turned down by the version condition (an older version than the namespace holds).',
  )
  readonly sinkLatency = this.registry.histogram(
    'puffgres_sink_request_duration_seconds',
    'Duration of each turbopuffer HTTP request, by outcome (ok, error).',
    LATENCY_BUCKETS,
  )
  readonly retries = this.registry.counter('puffgres_sink_retries_total', 'turbopuffer requests retried, by operation.')
  readonly paced = this.registry.counter(
    'puffgres_sink_paced_seconds_total',
    "Time writes waited for their namespace's write budget ([turbopuffer] namespace_mb_per_second), by namespace " +
      '(a namespace per tenant: by template, e.g. docs_{workspace_id}).',
  )
  readonly typeConflicts = this.registry.counter(
    'puffgres_type_conflicts_total',
    "Rows dead-lettered because the namespace's attribute type (set before an ALTER COLUMN TYPE) cannot take the value.",
  )
  readonly dlqInserts = this.registry.counter(
    'puffgres_dlq_inserts_total',
    'Rows sent to the dead-letter queue by the stream.',
  )
  readonly lagBytes = this.registry.gauge(
    'puffgres_replication_lag_bytes',
    "WAL bytes between the server's current position and the slot's confirmed flush LSN.",
  )
  readonly lagSeconds = this.registry.gauge(
    'puffgres_replication_lag_seconds',
    'Age of the oldest commit received but not yet confirmed (0 when caught up).',
  )
  readonly confirmedLsn = this.registry.gauge(
    'puffgres_confirmed_flush_lsn',
    'The LSN this process last confirmed to the slot, as a number.',
  )
  readonly retainedWal = this.registry.gauge(
    'puffgres_slot_retained_wal_bytes',
    'WAL the slot keeps on the server (current position minus restart_lsn).',
  )
  readonly streamingGauge = this.registry.gauge('puffgres_streaming', '1 while this process streams the slot.')
  readonly heartbeats = this.registry.counter('puffgres_heartbeats_total', 'Heartbeat messages written to the WAL.')
  // read by the status page and monitoring/ (issue 26)
  readonly changesProcessed = this.registry.counter(
    'puffgres_changes_processed_total',
    'Row changes of the mapped tables handed to the writer (once per mapping a change goes to; changes to one row in one batch count once).',
  )
  readonly throttled = this.registry.counter(
    'puffgres_sink_throttled_total',
    'turbopuffer requests answered 429 (too many requests); each is retried after a pause.',
  )
  readonly deadLetters = this.registry.gauge(
    'puffgres_dead_letters',
    'Rows in the dead-letter queue now, by mapping (read from PostgreSQL while the metrics server runs).',
  )
  readonly slotFailover = this.registry.gauge(
    'puffgres_slot_failover',
    '1 when the replication slot is a failover slot (PostgreSQL 17+), 0 when not or unknown.',
  )
  readonly streamInfo = this.registry.gauge(
    'puffgres_stream_info',
    'Always 1; its labels name the slot and publication this process streams (or waits for as a standby).',
  )

  readonly embeddingRequests = this.registry.counter(
    'puffgres_embedding_requests_total',
    'HTTP requests sent to the embedding provider, retries included.',
  )
  readonly embeddingTexts = this.registry.counter(
    'puffgres_embedding_texts_total',
    'Texts sent to the embedding provider.',
  )
  readonly embeddingTokens = this.registry.counter(
    'puffgres_embedding_tokens_total',
    'Tokens the embedding provider reported using (its usage; 0 when it does not report it).',
  )
  readonly embeddingSkipped = this.registry.counter(
    'puffgres_embedding_skipped_total',
    'Texts not sent to the embedding provider: the in-memory cache had the vector (cache), or the stored document ' +
      'already had the vector of the same text (stored).',
  )

  streaming = false
  /** commits received and not yet confirmed, oldest first: end LSN and commit time (ms) */
  #unconfirmed: { endLsn: bigint; at: number }[] = []
  #head = 0

  constructor(readonly maxLagSeconds = 60, private readonly now: () => number = Date.now) {
    this.streamingGauge.set(0)
    this.lagSeconds.set(0)
    this.throttled.inc({}, 0)
    this.changesProcessed.inc({}, 0)
    for (const c of [this.embeddingRequests, this.embeddingTexts, this.embeddingTokens]) c.inc({}, 0)
    for (const reason of ['cache', 'stored']) this.embeddingSkipped.inc({ reason }, 0)
  }

  /** What the embedder tells of its requests, texts, tokens and skipped texts (embeddings/embedder.ts). */
  embeddingObserver(): EmbeddingObserver {
    return {
      requests: (n) => this.embeddingRequests.inc({}, n),
      texts: (n) => this.embeddingTexts.inc({}, n),
      tokens: (n) => this.embeddingTokens.inc({}, n),
      skipped: (reason, n) => this.embeddingSkipped.inc({ reason }, n),
    }
  }

  setStreaming(on: boolean): void {
    this.streaming = on
    this.streamingGauge.set(on ? 1 : 0)
    if (!on) {
      // a new stream replays from the slot: what was pending is received again
      this.#unconfirmed = []
      this.#head = 0
    }
  }

  /** A Commit message was read (its changes may still be pending). `commitTime` is the server's commit timestamp. */
  commit(endLsn: bigint, commitTime: Date | number): void {
    this.#unconfirmed.push({ endLsn, at: typeof commitTime === 'number' ? commitTime : commitTime.getTime() })
  }

  /** The processor confirmed every commit ending at or before `lsn`. */
  confirmed(lsn: bigint): void {
    this.confirmedLsn.set(Number(lsn))
    const q = this.#unconfirmed
    while (this.#head < q.length && q[this.#head].endLsn <= lsn) this.#head++
    if (this.#head > 1024 && this.#head * 2 > q.length) {
      this.#unconfirmed = q.slice(this.#head)
      this.#head = 0
    }
  }

  /** Seconds since the oldest unconfirmed commit was made on the server; 0 when everything read is confirmed. */
  lag(): number {
    const oldest = this.#unconfirmed[this.#head]
    const s = oldest ? Math.max(0, (this.now() - oldest.at) / 1000) : 0
    this.lagSeconds.set(s)
    return s
  }

  batch(info: FlushInfo): void {
    this.batches.inc()
    for (const [mapping, c] of info.byMapping) {
      if (c.upserted) this.changes.inc({ mapping, kind: 'upsert' }, c.upserted)
      if (c.deleted) this.changes.inc({ mapping, kind: 'delete' }, c.deleted)
    }
    this.changesProcessed.inc({}, info.docs)
    if (info.skipped) this.skipped.inc({}, info.skipped)
    this.dlqInserts.inc({}, info.deadLettered)
    this.typeConflicts.inc({}, info.typeConflicts)
  }

  sinkRequest(ms: number, ok: boolean): void {
    this.sinkLatency.observe(ms / 1000, { outcome: ok ? 'ok' : 'error' })
  }

  sinkRetry(operation: string, status?: number): void {
    this.retries.inc({ operation })
    if (status === 429) this.throttled.inc()
  }

  sinkPaced(namespace: string, ms: number): void {
    this.paced.inc({ namespace }, ms / 1000)
  }

  health(): Health {
    const lag = this.lag()
    const base = { streaming: this.streaming, lag_seconds: lag, max_lag_seconds: this.maxLagSeconds }
    if (!this.streaming) return { ok: false, ...base, reason: 'not streaming (starting, standby or reconnecting)' }
    if (lag > this.maxLagSeconds) return { ok: false, ...base, reason: `lag ${lag.toFixed(1)} s is over the bound` }
    return { ok: true, ...base }
  }

  metrics(): string {
    this.lag()
    return this.registry.render()
  }
}

const patterns = new WeakMap<NamespaceTemplate, RegExp>()

/**
 * The `namespace` label of a namespace's metrics: a tenant mapping's namespaces are counted under its template text
 * (`docs_{workspace_id}`), or one series per tenant would be kept (and scraped) for every tenant ever paced.
 */
export function namespaceLabel(
  mappings: readonly Pick<Mapping, 'namespace' | 'namespaceTemplate'>[],
  namespace: string,
): string {
  for (const m of mappings) {
    const t = m.namespaceTemplate
    if (!t) continue
    let pattern = patterns.get(t)
    if (!pattern) patterns.set(t, pattern = templatePattern(t))
    if (pattern.test(namespace)) return m.namespace
  }
  return namespace
}
