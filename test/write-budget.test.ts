// The per-namespace write budget (turbopuffer takes ~32 MB/s a namespace, then answers 429): writes beyond it wait
// instead of bouncing off the service.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startLocalServer } from '../src/local/server.ts'
import { StreamMonitor } from '../src/stream/stream-monitor.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import { sinkFromConfig } from '../src/turbopuffer/from-config.ts'
import { DEFAULT_NAMESPACE_BYTES_PER_SECOND, WriteBudget } from '../src/turbopuffer/write-budget.ts'
import { up } from './harness/write-ops.ts'

describe('WriteBudget', () => {
  test('one second of burst, then waits that pay back the debt, per namespace', () => {
    let now = 0
    const budget = new WriteBudget(1000, () => now)
    expect(budget.reserve('a', 600)).toBe(0)
    expect(budget.reserve('a', 400)).toBe(0) // the burst is spent
    expect(budget.reserve('a', 500)).toBe(500) // 500 bytes at 1000 B/s
    expect(budget.reserve('a', 500)).toBe(1000) // queued behind the first debt
    expect(budget.reserve('b', 1000)).toBe(0) // another namespace has its own bucket
    now = 1000 // a second later the debt of 1000 is paid back: empty, not yet positive
    expect(budget.reserve('a', 100)).toBe(100)
    now = 10_000 // refills to one second of budget at most
    expect(budget.reserve('a', 1000)).toBe(0)
    expect(budget.reserve('a', 1)).toBe(1)
    now = 20_000 // a request larger than the burst goes at once on a full bucket, and its debt holds the next one
    expect(budget.reserve('a', 3000)).toBe(0)
    expect(budget.reserve('a', 100)).toBe(2100)
  })

  test("the service's side: admits within the budget (a tenth of a second of tolerance), else says how long to wait", () => {
    let now = 0
    const budget = new WriteBudget(1000, () => now)
    expect(budget.admit('a', 1000)).toBe(0) // the burst
    expect(budget.admit('a', 200)).toBe(100) // 200 − 100 tolerance at 1000 B/s; nothing taken
    now = 100
    expect(budget.admit('a', 200)).toBe(0) // 100 refilled, within tolerance: taken, the bucket is at −100
    expect(budget.admit('a', 5000)).toBe(1000) // a request over a second of budget needs a full bucket, less 100
    now = 1100
    expect(budget.admit('a', 5000)).toBe(0)
  })

  test('0 is no limit; the default is turbopuffer’s 32 MB/s', () => {
    expect(new WriteBudget(0).reserve('a', 1e12)).toBe(0)
    expect(DEFAULT_NAMESPACE_BYTES_PER_SECOND).toBe(32_000_000)
  })
})

describe('the sink paces its writes per namespace', () => {
  let server: Awaited<ReturnType<typeof startLocalServer>>
  beforeAll(async () => {
    server = await startLocalServer({ apiKey: 'k' })
  })
  afterAll(async () => {
    await server?.stop()
  })

  const docs = (from: number, n: number) =>
    Array.from({ length: n }, (_, i) => up(from + i, `v${from + i}`, { body: 'x'.repeat(1000) }))

  test('writes beyond the budget wait (the pacing can only make it slower, never faster)', async () => {
    // 40 KB a second; 4 writes of ~20 KB: the first two ride the burst, the next two wait ~0.5 s each
    const sink = new TurbopufferSink({ api_key: 'k', base_url: server.url }, { namespaceBytesPerSecond: 40_000 })
    const started = performance.now()
    for (let w = 0; w < 4; w++) await sink.write('paced', docs(w * 20, 20))
    const elapsed = performance.now() - started
    const sent = 4 * 20 * 1000
    expect(elapsed).toBeGreaterThanOrEqual(((sent - 40_000 * 1.1) / 40_000) * 1000)
    expect(sink.stats().pacedMs).toBeGreaterThan(0)
    expect(server.documents('paced')).toHaveLength(80)
    // another namespace is not held back by this one's debt
    const paced = sink.stats().pacedMs
    await sink.write('other', docs(0, 20))
    expect(sink.stats().pacedMs).toBe(paced)
  })

  test('[turbopuffer] namespace_mb_per_second reaches the sink (0: no pacing)', async () => {
    const off = sinkFromConfig({ apiKey: 'k', baseUrl: server.url, namespaceMbPerSecond: 0 })
    for (let w = 0; w < 3; w++) await off.write('unpaced', docs(w * 20, 20))
    expect(off.stats().pacedMs ?? 0).toBe(0)
    const slow = sinkFromConfig({ apiKey: 'k', baseUrl: server.url, namespaceMbPerSecond: 0.02 })
    for (let w = 0; w < 2; w++) await slow.write('slow', docs(w * 20, 20))
    expect(slow.stats().pacedMs).toBeGreaterThan(0)
  })
})

describe("puffgres local emulates the limit, and the sink's pacing stays under it", () => {
  const rate = 60_000 // bytes a second, per namespace
  let server: Awaited<ReturnType<typeof startLocalServer>>
  beforeAll(async () => {
    server = await startLocalServer({ apiKey: 'k', namespaceBytesPerSecond: rate })
  })
  afterAll(async () => {
    await server?.stop()
  })
  const docs = (from: number, n: number) =>
    Array.from({ length: n }, (_, i) => up(from + i, `v${from + i}`, { body: 'x'.repeat(1000) }))
  const statuses = () => server.stats().statuses

  test('unpaced, a burst past the limit draws 429 with retry-after-ms; the sink retries until it lands', async () => {
    const retries: { status?: number; delayMs: number }[] = []
    const sink = new TurbopufferSink({ api_key: 'k', base_url: server.url }, {
      namespaceBytesPerSecond: 0,
      onRetry: (i) => retries.push(i),
    })
    for (let w = 0; w < 4; w++) await sink.write('burst', docs(w * 30, 30))
    expect(server.documents('burst')).toHaveLength(120)
    expect(statuses()['429']).toBeGreaterThan(0)
    expect(retries.every((r) => r.status === 429 && r.delayMs > 0)).toBe(true)
  })

  test('paced to the same rate, the same burst draws no 429; the waits reach the metric', async () => {
    const before = statuses()['429'] ?? 0
    const monitor = new StreamMonitor()
    const sink = new TurbopufferSink({ api_key: 'k', base_url: server.url }, {
      namespaceBytesPerSecond: rate,
      onPaced: (ns, ms) => monitor.sinkPaced(ns, ms),
    })
    for (let w = 0; w < 4; w++) await sink.write('paced', docs(w * 30, 30))
    expect(server.documents('paced')).toHaveLength(120)
    expect(statuses()['429'] ?? 0).toBe(before)
    expect(sink.stats().retries).toBe(0)
    expect(sink.stats().pacedMs).toBeGreaterThan(0)
    const line = monitor.registry.render().split('\n').find((l) => l.startsWith('puffgres_sink_paced_seconds_total{'))
    expect(line?.startsWith('puffgres_sink_paced_seconds_total{namespace="paced"} ')).toBe(true)
    expect(Number(line!.split(' ')[1])).toBeCloseTo(sink.stats().pacedMs! / 1000, 6)
  })
})
