// Fault injection and counters of the local server: failNext, fail rate, latency, the /_admin endpoints.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Turbopuffer from '@turbopuffer/turbopuffer'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'

let server: LocalServer
let tpuf: Turbopuffer

beforeAll(async () => {
  server = await startLocalServer()
  tpuf = new Turbopuffer({ apiKey: 'k', baseURL: server.url, maxRetries: 0 })
})
afterAll(() => server.stop())

// The SDK's write() asks for 6 retries per request whatever the client says; fault tests want to see each answer.
const NO_RETRY = { maxRetries: 0 }

const admin = (path: string, body?: unknown) =>
  fetch(`${server.url}/_admin/${path}`, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) })

describe('fault injection', () => {
  test('failNext answers the next writes with the status and retry-after-ms, without applying them', async () => {
    const ns = tpuf.namespace('fn')
    server.failNext(2, 429, 1234)
    for (let i = 0; i < 2; i++) {
      const e = await ns.write({ upsert_rows: [{ id: 1 }] }, NO_RETRY).catch((e) => e)
      expect(e.status).toBe(429)
      expect(e.headers.get('retry-after-ms')).toBe('1234')
      expect(e.error).toMatchObject({ status: 'error' })
    }
    expect(server.documents('fn')).toEqual([])
    expect((await ns.write({ upsert_rows: [{ id: 1 }] }, NO_RETRY)).rows_upserted).toBe(1)
  })

  test('queries are not hit by write-scoped failures; scope "all" hits them too', async () => {
    const ns = tpuf.namespace('fn')
    server.failNext(1, 503)
    expect((await ns.query({ rank_by: ['id', 'asc'] })).rows).toEqual([{ id: 1 }])
    expect((await ns.write({ upsert_rows: [{ id: 2 }] }, NO_RETRY).catch((e) => e)).status).toBe(503)
    server.failNext(1, 500, undefined, 'all')
    expect((await ns.query({ rank_by: ['id', 'asc'] }).catch((e) => e)).status).toBe(500)
  })

  test('the SDK retries an injected 429 by itself and the write lands once', async () => {
    const retrying = new Turbopuffer({ apiKey: 'k', baseURL: server.url, maxRetries: 3 })
    const before = server.stats()
    server.failNext(2, 429, 1)
    const r = await retrying.namespace('retry').write({ upsert_rows: [{ id: 1, n: 1 }] }, { maxRetries: 3 })
    expect(r.rows_upserted).toBe(1)
    const after = server.stats()
    expect(after.writes - before.writes).toBe(3)
    expect(after.injectedFailures - before.injectedFailures).toBe(2)
    expect(after.writesAcknowledged - before.writesAcknowledged).toBe(1)
    expect((after.statuses['429'] ?? 0) - (before.statuses['429'] ?? 0)).toBe(2)
  })

  test('fail rate 1 fails every write, 0 none', async () => {
    server.setFailRate(1)
    for (let i = 0; i < 3; i++) {
      const e = await tpuf.namespace('rate').write({ upsert_rows: [{ id: i }] }, NO_RETRY).catch((e) => e)
      expect(e.status).toBe(500)
    }
    server.setFailRate(0)
    await tpuf.namespace('rate').write({ upsert_rows: [{ id: 9 }] }, NO_RETRY)
    expect(server.documents('rate')).toEqual([{ id: 9 }])
    expect(() => server.setFailRate(2)).toThrow('fail rate')
  })

  test('latency delays requests but they still complete', async () => {
    server.setLatency(30)
    const r = await tpuf.namespace('slow').write({ upsert_rows: [{ id: 1 }] }, NO_RETRY)
    expect(r.rows_upserted).toBe(1)
    server.setLatency(0)
    expect(() => server.setLatency(-1)).toThrow('latency')
  })

  test('admin endpoints: fail-next, fail-rate, latency, stats', async () => {
    expect((await admin('fail-next', { count: 1, status: 502 })).status).toBe(200)
    expect((await tpuf.namespace('adm').write({ upsert_rows: [{ id: 1 }] }, NO_RETRY).catch((e) => e)).status).toBe(502)
    expect((await admin('fail-rate', { rate: 1 })).status).toBe(200)
    expect((await tpuf.namespace('adm').write({ upsert_rows: [{ id: 1 }] }, NO_RETRY).catch((e) => e)).status).toBe(500)
    expect((await admin('fail-rate', { rate: 0 })).status).toBe(200)
    expect((await admin('latency', { ms: 0 })).status).toBe(200)
    const bad = await admin('fail-next', { count: 1, status: 200 })
    expect(bad.status).toBe(400)
    expect((await bad.json()).error).toContain('invalid status')
    await tpuf.namespace('adm').write({ upsert_rows: [{ id: 1 }] }, NO_RETRY)
    const stats = await (await admin('stats')).json()
    expect(stats).toEqual(server.stats())
    expect(stats.writesAcknowledged).toBeGreaterThan(0)
    expect(stats.requests).toBeGreaterThanOrEqual(stats.writes + stats.queries)
  })

  test('starting options are checked', async () => {
    await expect(startLocalServer({ failRate: -0.5 })).rejects.toThrow('fail rate')
    await expect(startLocalServer({ port: 70000 })).rejects.toThrow('invalid port')
    const taken = await startLocalServer({ port: server.port }).catch((e) => e)
    expect(taken).toBeInstanceOf(Error)
    expect(taken.message).toContain(`${server.port}`)
  })
})
