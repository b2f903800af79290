// Injected latency with jitter (`puffgres local --latency-ms N --jitter-ms M`): delays stay within N ± M, never
// below 0, and requests sent in one order can be applied in another.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Turbopuffer from '@turbopuffer/turbopuffer'
import { drawDelayMs } from '../src/local/latency.ts'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { localCommand } from '../src/commands/local.ts'

let server: LocalServer
let tpuf: Turbopuffer
beforeAll(async () => {
  server = await startLocalServer({ latencyMs: 0, jitterMs: 0 })
  tpuf = new Turbopuffer({ apiKey: 'k', baseURL: server.url, maxRetries: 0 })
})
afterAll(() => server.stop())

describe('latency with jitter', () => {
  test('a delay is uniform in latency ± jitter and never negative', () => {
    expect(drawDelayMs(150, 200, () => 0)).toBe(0)
    expect(drawDelayMs(150, 200, () => 1)).toBe(350)
    expect(drawDelayMs(150, 200, () => 0.5)).toBe(150)
    expect(drawDelayMs(40, 0, () => 0.9)).toBe(40)
    for (let i = 0; i < 1000; i++) {
      const d = drawDelayMs(10, 30)
      expect(d).toBeGreaterThanOrEqual(0)
      expect(d).toBeLessThanOrEqual(40)
    }
  })

  test('writes sent one after the other are applied out of order', async () => {
    server.setLatency(60, 60)
    const ns = tpuf.namespace('jitter')
    const applied: number[] = []
    // each write stamps its own order; the server's apply order shows up as the order the acks come back
    await Promise.all(
      Array.from(
        { length: 40 },
        (_, k) => ns.write({ upsert_rows: [{ id: k, k }] }, { maxRetries: 0 }).then(() => applied.push(k)),
      ),
    )
    server.setLatency(0, 0)
    expect(applied.length).toBe(40)
    expect(applied).not.toEqual([...applied].sort((a, b) => a - b))
    expect(server.documents('jitter').length).toBe(40)
  })

  test('bad values are refused', async () => {
    expect(() => server.setLatency(10, -1)).toThrow('jitter')
    await expect(startLocalServer({ jitterMs: Number.NaN })).rejects.toThrow('jitter')
    const res = await fetch(`${server.url}/_admin/latency`, { method: 'POST', body: '{"ms":0,"jitter_ms":-5}' })
    expect(res.status).toBe(400)
    const err = console.error
    console.error = () => {}
    try {
      expect(await localCommand(['--jitter-ms', '-1'])).toBe(2)
    } finally {
      console.error = err
    }
  })
})
