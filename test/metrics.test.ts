// Prometheus metrics: the registry's text format, and /metrics + /healthz scraped from a running stream.
import { beforeAll, describe, expect, test } from 'bun:test'
import { Registry } from '../src/stream/metrics.ts'
import { namespaceLabel, StreamMonitor } from '../src/stream/stream-monitor.ts'
import { parseNamespaceTemplate } from '../src/config/row-documents.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

/** Parses the text exposition format into series (`name{labels}` as printed) → value; checks every line's shape. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>()
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line)
    if (meta) {
      if (meta[1] === 'TYPE') types.set(meta[2], meta[3])
      continue
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$/.exec(line)
    if (!m) throw new Error(`not a sample line: ${line}`)
    const base = m[1].replace(/_(bucket|sum|count)$/, '')
    if (!types.has(m[1]) && !types.has(base)) throw new Error(`sample before its TYPE: ${line}`)
    out.set(m[1] + (m[2] ?? ''), m[3] === '+Inf' ? Infinity : Number(m[3]))
  }
  return out
}

describe('metrics registry', () => {
  test('counters, gauges and histograms in the text format', () => {
    const r = new Registry()
    const c = r.counter('x_total', 'a counter')
    c.inc({ mapping: 'a', kind: 'upsert' }, 2)
    c.inc({ kind: 'upsert', mapping: 'a' })
    c.inc({ mapping: 'quote"back\\slash' })
    const g = r.gauge('g', 'a gauge')
    g.set(5)
    const h = r.histogram('h_seconds', 'a histogram', [0.1, 1])
    h.observe(0.05)
    h.observe(0.5)
    h.observe(3)
    r.gauge('unset', 'never set')
    const text = r.render()
    const m = parseMetrics(text)
    expect(m.get('x_total{kind="upsert",mapping="a"}')).toBe(3)
    expect(m.get('x_total{mapping="quote\\"back\\\\slash"}')).toBe(1)
    expect(m.get('g')).toBe(5)
    expect(m.get('h_seconds_bucket{le="0.1"}')).toBe(1)
    expect(m.get('h_seconds_bucket{le="1"}')).toBe(2)
    expect(m.get('h_seconds_bucket{le="+Inf"}')).toBe(3)
    expect(m.get('h_seconds_count')).toBe(3)
    expect(m.get('h_seconds_sum')).toBeCloseTo(3.55)
    expect(text).toContain('# TYPE unset gauge\n')
    expect(() => c.inc({}, -1)).toThrow('cannot decrease')
    expect(() => r.counter('x_total', 'again')).toThrow('registered twice')
    expect(() => r.counter('bad-name', '')).toThrow('not a Prometheus name')
  })

  test('lag is the age of the oldest unconfirmed commit', () => {
    let now = 100_000
    const mon = new StreamMonitor(5, () => now)
    mon.setStreaming(true)
    expect(mon.health().ok).toBe(true)
    mon.commit(10n, 90_000)
    mon.commit(20n, 95_000)
    expect(mon.lag()).toBe(10)
    expect(mon.health()).toMatchObject({ ok: false, lag_seconds: 10, max_lag_seconds: 5 })
    mon.confirmed(10n)
    expect(mon.lag()).toBe(5)
    mon.confirmed(25n)
    expect(mon.lag()).toBe(0)
    now += 60_000
    expect(mon.health().ok).toBe(true)
    mon.setStreaming(false)
    expect(mon.health()).toMatchObject({ ok: false, streaming: false })
  })
})

describe('a namespace per tenant', () => {
  test('paced writes are counted by template, not one series per tenant (bounded)', () => {
    const mappings = [
      { namespace: 'prod_docs_{ws}', namespaceTemplate: parseNamespaceTemplate('prod_docs_{ws}') },
      { namespace: 'prod_items' },
    ]
    const monitor = new StreamMonitor(60)
    for (let t = 0; t < 5000; t++) monitor.sinkPaced(namespaceLabel(mappings, `prod_docs_${t}`), 10)
    monitor.sinkPaced(namespaceLabel(mappings, 'prod_items'), 10)
    const series = [...parseMetrics(monitor.metrics()).keys()].filter((k) => k.startsWith('puffgres_sink_paced'))
    expect(series.sort()).toEqual([
      'puffgres_sink_paced_seconds_total{namespace="prod_docs_{ws}"}',
      'puffgres_sink_paced_seconds_total{namespace="prod_items"}',
    ])
  })
})

describe('/metrics and /healthz of a running stream', () => {
  let port = 0
  const pipe = usePipeline({
    name: 'metrics',
    sql: 'CREATE TABLE items (id int PRIMARY KEY, name text)',
    migrations: { '001_items.toml': migration({ name: 'items', table: 'items' }) },
    stream: {
      batchSize: 100,
      metricsPort: 0,
      metricsHost: '127.0.0.1',
      onMetricsServer: (p) => (port = p),
      maxLagSeconds: 1,
      heartbeatIntervalMs: 200,
    },
  })

  beforeAll(async () => {
    await waitFor('the metrics server', () => port > 0)
  })

  const get = (path: string) => fetch(`http://127.0.0.1:${port}${path}`)
  const scrape = async () => parseMetrics(await (await get('/metrics')).text())
  const applied = async (kind: string) =>
    (await scrape()).get(`puffgres_changes_applied_total{kind="${kind}",mapping="items"}`)

  test('healthy while streaming; changes, batches, latency, LSN and lag are exported', async () => {
    await waitFor('healthy', async () => (await get('/healthz')).status === 200)
    const health = await (await get('/healthz')).json()
    expect(health).toMatchObject({ ok: true, streaming: true, max_lag_seconds: 1 })
    await pipe.db.sql`INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')`
    await waitFor('the inserts to be counted', async () => await applied('upsert') === 3)
    await pipe.db.sql`DELETE FROM items WHERE id = 2`
    await waitFor('the delete to be counted', async () => await applied('delete') === 1)
    const m = await scrape()
    const res = await get('/metrics')
    expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4')
    expect(m.get('puffgres_changes_applied_total{kind="upsert",mapping="items"}')).toBe(3)
    expect(m.get('puffgres_batches_total')).toBeGreaterThanOrEqual(2)
    expect(m.get('puffgres_sink_request_duration_seconds_count{outcome="ok"}')).toBeGreaterThanOrEqual(2)
    expect(m.get('puffgres_confirmed_flush_lsn')).toBeGreaterThan(0)
    expect(m.get('puffgres_streaming')).toBe(1)
    expect(m.get('puffgres_dlq_inserts_total')).toBe(0)
    await waitFor('heartbeats and the slot lag gauge', async () => {
      const s = await scrape()
      return (s.get('puffgres_heartbeats_total') ?? 0) > 0 && s.get('puffgres_replication_lag_bytes') !== undefined
    })
    expect((await get('/nope')).status).toBe(404)
  })

  test('retries are counted', async () => {
    // counted against what the server refused, from where the counters stand now (earlier tests may have retried)
    const before = await scrape()
    const refusedBefore = pipe.server.stats().statuses['503'] ?? 0
    pipe.server.failNext(2, 503)
    await pipe.db.sql`INSERT INTO items VALUES (4, 'd')`
    await waitFor('row 4 written', async () => await applied('upsert') === 4)
    const m = await scrape()
    const delta = (k: string) => (m.get(k) ?? 0) - (before.get(k) ?? 0)
    expect((pipe.server.stats().statuses['503'] ?? 0) - refusedBefore).toBe(2)
    expect(delta('puffgres_sink_retries_total{operation="write"}')).toBe(2)
    expect(delta('puffgres_sink_request_duration_seconds_count{outcome="error"}')).toBe(2)
  }, 30_000)

  test('unhealthy while the lag is over max_lag_seconds, healthy again after', async () => {
    pipe.server.setLatency(2500)
    await pipe.db.sql`INSERT INTO items VALUES (5, 'e')`
    await waitFor('503 for lag', async () => {
      const r = await get('/healthz')
      const body = await r.json()
      return r.status === 503 && /lag .* is over the bound/.test(body.reason)
    })
    expect((await scrape()).get('puffgres_replication_lag_seconds')).toBeGreaterThan(1)
    pipe.server.setLatency(0)
    await waitFor('healthy again', async () => (await get('/healthz')).status === 200)
    expect((await scrape()).get('puffgres_replication_lag_seconds')).toBe(0)
  }, 30_000)
})
