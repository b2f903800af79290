// The HTML of the status page (stream/status-page.ts gathers what it shows): plain HTML, inline CSS and inline SVG
// charts; no script and nothing loaded from elsewhere, so it works offline; a meta refresh reloads it; a viewport meta
// and fluid grids make it readable on a phone. Everything shown is escaped.

export interface StatusMapping {
  name: string
  namespace: string
  /** schema.table */
  table: string
}

export interface DeadLetterSummary {
  id: string
  mapping: string
  doc_id: string | null
  /** dead-letter-kind.ts: never the error text */
  kind: string
  attempts: number
  at: string
}

export interface SlotView {
  exists: boolean
  active: boolean
  /** null: PostgreSQL before 17 has no failover slots */
  failover: boolean | null
  walStatus: string | null
}

export const NEWEST_DEAD_LETTERS = 10

export interface StatusView {
  now: number
  windowMs: number
  refreshSeconds: number
  streaming: boolean
  healthy: boolean
  healthReason?: string
  slot: string
  publication: string
  slotState?: SlotView
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
  const span = windowMs >= 120_000 ? `${Math.round(windowMs / 60_000)} min` : `${Math.round(windowMs / 1000)} s`
  return `<figure class="chart"><figcaption>${esc(label)} <span class="muted">· last ${span}</span></figcaption>
<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(label)}, last ${span}, peak ${
    esc(fmt(max))
  }" preserveAspectRatio="none">
<line class="grid" x1="${L}" x2="${W - R}" y1="${y(0)}" y2="${y(0)}"/>
<line class="grid" x1="${L}" x2="${W - R}" y1="${y(top / 2).toFixed(1)}" y2="${y(top / 2).toFixed(1)}"/>
${area}<polyline class="line" points="${xy}"/>
</svg>
<div class="axis"><span>−${span}</span><span>peak ${esc(fmt(max))}</span><span>now</span></div></figure>`
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
${card('errors', 'turbopuffer errors (not 429)', String(v.totals.errors), `${v.totals.errorsRecent} in 5 min`)}
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
