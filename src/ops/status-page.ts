// The status page of `puffgres run --metrics-port` (GET /): mappings, lag with a chart of the last hour, throughput,
// dead letters, write latency, 429s and pacing, the slot. Plain HTML and inline SVG, no script, no external resource:
// it works offline and refreshes itself with a meta refresh. It shows no row value, connection string or key: a
// dead letter appears as its mapping, document id and error *kind* (the stored error text may quote row values).
import type postgres from 'postgres'
import type { Logger } from '../types.ts'
import { SampleRing } from './sample-ring.ts'
import type { StreamMonitor } from './stream-monitor.ts'

export interface StatusMapping {
  name: string
  namespace: string
  /** schema.table */
  table: string
}

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

export interface DeadLetterSummary {
  id: string
  mapping: string
  doc_id: string | null
  kind: string
  attempts: number
  at: string
}

interface DbView {
  /** when it was read (ms) */
  at: number
  /** why it could not be read, when it could not */
  error?: string
  dlq: Map<string, number>
  newest: DeadLetterSummary[]
  slot?: { exists: boolean; active: boolean; failover: boolean | null; walStatus: string | null }
}

const HOUR_MS = 3_600_000
const MAX_SAMPLES = 720
const DB_TIMEOUT_MS = 3_000
/** a page request reads PostgreSQL again when what it read is older than this */
const DB_FRESH_MS = 1_000
const NEWEST_DEAD_LETTERS = 10

// The stored error text can quote row values; only its kind is shown. Fixed labels, so nothing of the text leaks.
const KINDS: [RegExp, string | ((m: RegExpExecArray) => string)][] = [
  [/^turbopuffer refused the write \((\d{3})\)/, (m) => `turbopuffer refused (${m[1]})`],
  [/^not sent to turbopuffer/, 'over a turbopuffer limit'],
  [/^transform .* timed out after/, 'transform timed out'],
  [/^transform .* returned an invalid action/, 'transform returned an invalid action'],
  [/^transform .* threw /, 'transform threw'],
  [/^transform /, 'transform failed'],
  [/^column "[^"]*" \(/, "value does not fit the attribute's type"],
  [/^id \S+: /, 'embedding input'],
  [/^mapping \S+: delete on .* REPLICA IDENTITY/, 'id not in the replica identity'],
  [/^mapping \S+: (insert|update|delete) on /, 'bad id'],
  [/not valid UTF-8|cannot be decoded|undecodable/, 'undecodable value'],
  [/^the row was deleted meanwhile/, 'retry of a deleted row failed'],
]

/** A short, fixed description of a dead letter's error that never repeats any part of the text. */
export function deadLetterKind(error: string): string {
  for (const [re, label] of KINDS) {
    const m = re.exec(error)
    if (m) return typeof label === 'string' ? label : label(m)
  }
  return 'other'
}

export class StatusPage {
  readonly ring: SampleRing<Sample>
  readonly sampleMs: number
  #timer: ReturnType<typeof setInterval> | undefined
  #db: DbView | undefined
  #reading: Promise<DbView> | undefined
  readonly #now: () => number

  constructor(private readonly opts: StatusPageOptions) {
    this.sampleMs = opts.sampleMs ?? 10_000
    this.ring = new SampleRing(Math.min(MAX_SAMPLES, Math.ceil(HOUR_MS / this.sampleMs)))
    this.#now = opts.now ?? Date.now
    opts.monitor.streamInfo.set(1, { slot: opts.slot, publication: opts.publication })
  }

  start(): void {
    this.ring.push(this.#sample())
    this.#timer = setInterval(() => {
      this.ring.push(this.#sample())
      // keeps puffgres_dead_letters and puffgres_slot_failover current for Prometheus
      void this.#readDb()
    }, this.sampleMs)
    void this.#readDb()
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.#reading?.catch(() => {})
  }

  /** The page, as served at `/`. */
  async render(): Promise<string> {
    const db = this.#db && this.#now() - this.#db.at < DB_FRESH_MS ? this.#db : await this.#readDb()
    return renderStatusHtml(this.#view(db))
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
    return {
      at: this.#now(),
      lagBytes: m.lagBytes.get() ?? null,
      lagSeconds: m.lag(),
      retainedWal: m.retainedWal.get() ?? null,
      changes: m.changesProcessed.total(),
      docs: m.changes.total(),
      docsByMapping,
      errors: err.count,
      throttled: m.throttled.total(),
      retries: m.retries.total(),
      pacedSeconds: m.paced.total(),
      latency: ok.counts.map((c, i) => c + err.counts[i]),
      requests: ok.count + err.count,
    }
  }

  /** Reads dead letters and the slot; one read at a time, never throws, gives up after DB_TIMEOUT_MS. */
  #readDb(): Promise<DbView> {
    this.#reading ??= this.#query().finally(() => this.#reading = undefined)
    return this.#reading
  }

  async #query(): Promise<DbView> {
    const { sql, slot, monitor } = this.opts
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${DB_TIMEOUT_MS / 1000} s`)), DB_TIMEOUT_MS)
    })
    const read = async (): Promise<DbView> => {
      const counts = await sql<{ mapping: string; n: number }[]>`
        SELECT mapping, count(*)::int AS n FROM __puffgres_dlq GROUP BY mapping`
      const newest = await sql<
        { id: string; mapping: string; doc_id: string | null; error: string; attempts: number; at: Date }[]
      >`SELECT id::text, mapping, doc_id, error, attempts, last_failed_at AS at FROM __puffgres_dlq
        ORDER BY last_failed_at DESC, id DESC LIMIT ${NEWEST_DEAD_LETTERS}`
      // to_jsonb: the failover column exists from PostgreSQL 17 on
      const [s] = await sql<{ s: { active: boolean; failover?: boolean; wal_status?: string } }[]>`
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
      }
    }
    let view: DbView
    try {
      view = await Promise.race([read(), timeout])
      for (const m of this.opts.mappings) monitor.deadLetters.set(view.dlq.get(m.name) ?? 0, { mapping: m.name })
      monitor.slotFailover.set(view.slot?.failover ? 1 : 0)
    } catch (e) {
      // keeps the last good figures, marked as stale
      const message = (e as Error).message
      this.opts.log?.debug('status page: cannot read dead letters and the slot', { error: message })
      view = { ...(this.#db ?? { dlq: new Map(), newest: [] }), at: this.#now(), error: 'cannot read PostgreSQL' }
    } finally {
      clearTimeout(timer)
    }
    this.#db = view
    return view
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
      windowMs: Math.min(HOUR_MS, this.ring.capacity * this.sampleMs),
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

export interface StatusView {
  now: number
  windowMs: number
  refreshSeconds: number
  streaming: boolean
  healthy: boolean
  healthReason?: string
  slot: string
  publication: string
  slotState?: DbView['slot']
  lagBytes: number | null
  lagSeconds: number
  retainedWal: number | null
  changesPerSecond: number | null
  docsPerSecond: number | null
  rateWindowSeconds: number
  latencyWindowSeconds: number
  latency: { requests: number; p50: number | null; p95: number | null; p99: number | null }
  totals: {
    changes: number
    docs: number
    errors: number
    throttled: number
    retries: number
    pacedSeconds: number
    throttledRecent: number
    errorsRecent: number
  }
  lagSecondsSeries: Point[]
  lagBytesSeries: Point[]
  docsRateSeries: Point[]
  mappings: (StatusMapping & { docs: number; docsPerSecond: number | null; deadLetters: number })[]
  deadLetters: number
  newestDeadLetters: DeadLetterSummary[]
  dbError?: string
}

interface Point {
  t: number
  v: number
}

const esc = (v: unknown) =>
  String(v).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;')

export function formatBytes(n: number | null): string {
  if (n === null) return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) n /= 1024, i++
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : Math.round(n)} ${units[i]}`
}

export function formatSeconds(s: number | null): string {
  if (s === null) return '–'
  if (s < 1) return `${Math.round(s * 1000)} ms`
  if (s < 120) return `${s.toFixed(1)} s`
  if (s < 7200) return `${(s / 60).toFixed(1)} min`
  return `${(s / 3600).toFixed(1)} h`
}

const formatRate = (r: number | null) => (r === null ? '–' : r < 10 ? r.toFixed(1) : String(Math.round(r)))

/** An inline SVG line chart of `points` over the window ending at `now`. */
function chart(label: string, points: Point[], now: number, windowMs: number, fmt: (v: number) => string): string {
  const W = 600, H = 140, L = 4, R = 4, T = 18, B = 18
  const max = Math.max(0, ...points.map((p) => p.v))
  const top = max > 0 ? max * 1.1 : 1
  const x = (t: number) => L + (W - L - R) * Math.max(0, 1 - (now - t) / windowMs)
  const y = (v: number) => T + (H - T - B) * (1 - v / top)
  const xy = points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ')
  const area = points.length > 1
    ? `<polygon class="area" points="${x(points[0].t).toFixed(1)},${y(0)} ${xy} ${
      x(points[points.length - 1].t).toFixed(1)
    },${y(0)}"/>`
    : ''
  const minutes = Math.round(windowMs / 60_000)
  return `<figure class="chart"><figcaption>${esc(label)} <span class="muted">· last ${minutes} min</span></figcaption>
<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(label)}, last ${minutes} minutes, peak ${
    esc(fmt(max))
  }" preserveAspectRatio="none">
<line class="grid" x1="${L}" x2="${W - R}" y1="${y(0)}" y2="${y(0)}"/>
<line class="grid" x1="${L}" x2="${W - R}" y1="${y(top / 2).toFixed(1)}" y2="${y(top / 2).toFixed(1)}"/>
${area}<polyline class="line" points="${xy}"/>
</svg>
<div class="axis"><span>−${minutes} min</span><span>peak ${esc(fmt(max))}</span><span>now</span></div></figure>`
}

const STYLE = `
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--fg:#1b1f24;--muted:#5f6b7a;--line:#2563eb;--area:#2563eb22;
--grid:#d5dae1;--ok:#15803d;--bad:#b91c1c;--warn:#b45309}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--card:#1a1f26;--fg:#e6e9ee;--muted:#98a2b3;--line:#60a5fa;
--area:#60a5fa2a;--grid:#2c3440}}
*{box-sizing:border-box}body{margin:0;font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--fg)}main{max-width:1100px;margin:0 auto;padding:12px}
header{display:flex;flex-wrap:wrap;gap:8px;align-items:baseline;justify-content:space-between}
h1{font-size:1.3em;margin:4px 0}h2{font-size:1.05em;margin:18px 0 8px}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;color:#fff;font-weight:600;font-size:.9em}
.ok{background:var(--ok)}.bad{background:var(--bad)}.warn{background:var(--warn)}.muted{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:8px}
.card{background:var(--card);border-radius:8px;padding:10px 12px;box-shadow:0 1px 2px #0000001a}
.card b{display:block;font-size:1.45em;font-variant-numeric:tabular-nums}.card small{color:var(--muted)}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:8px}
figure.chart{margin:0;background:var(--card);border-radius:8px;padding:10px 12px}
figure.chart svg{width:100%;height:140px;display:block}
.line{fill:none;stroke:var(--line);stroke-width:2;vector-effect:non-scaling-stroke}.area{fill:var(--area)}
.grid{stroke:var(--grid);stroke-width:1;vector-effect:non-scaling-stroke}
.axis{display:flex;justify-content:space-between;color:var(--muted);font-size:.8em}
.table{overflow-x:auto;background:var(--card);border-radius:8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--grid);
white-space:nowrap}th{font-weight:600;color:var(--muted);font-size:.85em}td.num,th.num{text-align:right;
font-variant-numeric:tabular-nums}footer{margin:16px 0;color:var(--muted);font-size:.85em}a{color:var(--line)}
`

/** The page's HTML for one view (pure: the test of what it shows and leaks reads this, and the browser too). */
export function renderStatusHtml(v: StatusView): string {
  const state = v.streaming
    ? v.healthy ? '<span class="badge ok">streaming</span>' : '<span class="badge warn">streaming, lagging</span>'
    : '<span class="badge bad">not streaming</span>'
  const card = (id: string, title: string, value: string, note = '') =>
    `<div class="card" id="${id}"><small>${esc(title)}</small><b>${esc(value)}</b>${
      note ? `<small>${esc(note)}</small>` : ''
    }</div>`
  const s = v.slotState
  const failover = !s?.exists
    ? 'slot not found'
    : s.failover === null
    ? 'no (PostgreSQL before 17)'
    : s.failover
    ? 'yes'
    : 'no'
  const lat = v.latency
  const mappings = v.mappings.map((m) =>
    `<tr><td>${esc(m.name)}</td><td>${esc(m.namespace)}</td><td>${esc(m.table)}</td><td class="num">${
      esc(formatRate(m.docsPerSecond))
    }</td><td class="num">${esc(m.docs)}</td><td class="num">${esc(m.deadLetters)}</td></tr>`
  ).join('\n')
  const dead = v.newestDeadLetters.length
    ? `<div class="table"><table id="dead-letters"><thead><tr><th>last failed (UTC)</th><th>mapping</th><th>document id</th>
<th>error kind</th><th class="num">attempts</th><th class="num">entry</th></tr></thead><tbody>
${
      v.newestDeadLetters.map((d) =>
        `<tr><td>${esc(d.at.slice(0, 19).replace('T', ' '))}</td><td>${esc(d.mapping)}</td><td>${
          esc(d.doc_id === null ? '–' : d.doc_id.length > 64 ? d.doc_id.slice(0, 63) + '…' : d.doc_id)
        }</td><td>${esc(d.kind)}</td><td class="num">${esc(d.attempts)}</td><td class="num">${esc(d.id)}</td></tr>`
      ).join('\n')
    }
</tbody></table></div><p class="muted">The error text of an entry: <code>puffgres dlq show ENTRY</code>.</p>`
    : '<p class="muted" id="dead-letters">No dead letters.</p>'
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="${v.refreshSeconds}">
<title>puffgres · ${esc(v.slot)}</title>
<style>${STYLE}</style></head>
<body><main>
<header><h1>puffgres <span class="muted">· slot ${esc(v.slot)}</span></h1><div>${state}${
    v.healthReason && v.streaming ? ` <span class="muted">${esc(v.healthReason)}</span>` : ''
  }</div></header>
<p class="muted">Updated ${
    esc(new Date(v.now).toISOString().slice(11, 19))
  } UTC; refreshes every ${v.refreshSeconds} s.${
    v.dbError ? ` <b>Dead letters and slot: ${esc(v.dbError)}</b> (figures may be stale).` : ''
  }</p>
<section class="cards">
${card('lag-seconds', 'lag (oldest unconfirmed commit)', formatSeconds(v.lagSeconds))}
${card('lag-bytes', 'slot lag (WAL)', formatBytes(v.lagBytes))}
${card('changes-rate', 'changes / s', formatRate(v.changesPerSecond), `last ${v.rateWindowSeconds} s`)}
${card('docs-rate', 'documents / s', formatRate(v.docsPerSecond), `last ${v.rateWindowSeconds} s`)}
${card('dead-letter-count', 'dead letters', String(v.deadLetters))}
${
    card(
      'latency',
      'write latency p50 / p95 / p99',
      lat.requests ? `${formatSeconds(lat.p50)} / ${formatSeconds(lat.p95)} / ${formatSeconds(lat.p99)}` : '–',
      `${lat.requests} requests, last ${v.latencyWindowSeconds} s`,
    )
  }
${card('throttled', '429s (too many requests)', String(v.totals.throttled), `${v.totals.throttledRecent} in 5 min`)}
${card('errors', 'turbopuffer errors', String(v.totals.errors), `${v.totals.errorsRecent} in 5 min`)}
${card('paced', 'pacing waits', formatSeconds(v.totals.pacedSeconds), 'namespace write budget')}
</section>
<h2>Lag and throughput</h2>
<section class="charts">
${chart('lag (seconds)', v.lagSecondsSeries, v.now, v.windowMs, formatSeconds)}
${chart('slot lag (WAL bytes)', v.lagBytesSeries, v.now, v.windowMs, formatBytes)}
${chart('documents / s', v.docsRateSeries, v.now, v.windowMs, formatRate)}
</section>
<h2>Mappings</h2>
<div class="table"><table id="mappings"><thead><tr><th>mapping</th><th>namespace</th><th>table</th>
<th class="num">docs / s</th><th class="num">documents</th><th class="num">dead letters</th></tr></thead><tbody>
${mappings}
</tbody></table></div>
<h2>Dead letters <span class="muted">(newest ${NEWEST_DEAD_LETTERS})</span></h2>
${dead}
<h2>Slot</h2>
<section class="cards">
${card('slot', 'replication slot', v.slot, `publication ${v.publication}`)}
${card('failover', 'failover slot', failover)}
${card('slot-active', 'slot active', s?.exists ? (s.active ? 'yes' : 'no') : '–', s?.walStatus ?? '')}
${card('retained-wal', 'retained WAL', formatBytes(v.retainedWal))}
</section>
<footer>Read-only. Also served: <a href="/metrics">/metrics</a> (Prometheus), <a href="/healthz">/healthz</a>.</footer>
</main></body></html>
`
}
