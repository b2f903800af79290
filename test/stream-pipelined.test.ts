// Several writes in flight, landing out of order on purpose (docs/ARCHITECTURE.md, invariants 1, 2, 6): a proxy in front
// of the local server delays chosen write requests so that later requests land first. The namespace must still end
// as the table is (an id's changes stay in order: an older upsert landing after a newer delete would bring the
// document back), and the slot is never confirmed past a write that has not landed yet.
import { describe, expect, test } from 'bun:test'
import { gunzipSync } from 'node:zlib'
import { StreamMonitor } from '../src/stream/stream-monitor.ts'
import { serveHttp } from '../src/runtime.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

let proxy: { url: string; stop(): Promise<void> }

/** one write request through the proxy: the commit LSNs of the versions it carries, and when turbopuffer acked it */
interface Landed {
  lsns: bigint[]
  ackedAt: number
}
const landed: Landed[] = []
let proxyInFlight = 0
/** how long the proxy holds a write request before passing it on, from its body */
let delayFor: (body: string, n: number) => number = () => 0
let writes = 0

class RecordingMonitor extends StreamMonitor {
  confirms: { lsn: bigint; at: number }[] = []
  lastCommit = 0n
  override confirmed(lsn: bigint): void {
    this.confirms.push({ lsn, at: performance.now() })
    super.confirmed(lsn)
  }
  override commit(lsn: bigint, time: Date): void {
    this.lastCommit = lsn
    super.commit(lsn, time)
  }
}

/** A proxy in front of `upstream` that holds write requests as `delayFor` says and records when each one landed. */
async function startProxy(upstream: string) {
  const http = await serveHttp({
    port: 0,
    hostname: '127.0.0.1',
    fetch: async (req) => {
      const url = new URL(req.url)
      const raw = req.method === 'GET' || req.method === 'HEAD' ? undefined : new Uint8Array(await req.arrayBuffer())
      const isWrite = req.method === 'POST' && /^\/v2\/namespaces\/[^/]+$/.test(url.pathname) && raw
      const text = isWrite
        ? new TextDecoder().decode(req.headers.get('content-encoding') === 'gzip' ? gunzipSync(raw) : raw)
        : ''
      proxyInFlight++
      try {
        if (isWrite) {
          const ms = delayFor(text, writes++)
          if (ms > 0) await new Promise((r) => setTimeout(r, ms))
        }
        const headers = new Headers(req.headers)
        headers.delete('host')
        headers.delete('content-length')
        const res = await fetch(upstream + url.pathname + url.search, { method: req.method, headers, body: raw })
        const out = await res.arrayBuffer()
        if (isWrite && res.ok) {
          // versions are 24 hex digits: the commit LSN (16), then the change's place in its transaction (8)
          const lsns = [...text.matchAll(/"([0-9a-f]{24})"/g)].map((m) => BigInt('0x' + m[1].slice(0, 16)))
          landed.push({ lsns, ackedAt: performance.now() })
        }
        const h = new Headers(res.headers)
        h.delete('content-encoding')
        h.delete('content-length')
        return new Response(out, { status: res.status, headers: h })
      } finally {
        proxyInFlight--
      }
    },
  })
  return { url: `http://127.0.0.1:${http.port}`, stop: () => http.stop() }
}

const pipe = usePipeline({
  name: 'pipelined',
  prepare: async (p) => {
    proxy = await startProxy(p.server.url)
    p.defer(() => proxy.stop())
  },
  turbopufferUrl: () => proxy.url,
  sql: 'CREATE TABLE hot (id int PRIMARY KEY, name text, n int)',
  migrations: { '001_hot.toml': migration({ name: 'hot', table: 'hot', columns: ['name', 'n'] }) },
})

/** Streams while `work` runs, waits until all of it is written and confirmed, and checks confirmation order. */
async function streamed(work: () => Promise<void>, pollIntervalMs = 1000) {
  const monitor = new RecordingMonitor()
  const stream = await pipe.startStream({ pollIntervalMs, monitor })
  try {
    await work()
    // a last commit after all the work: once it is visible and everything seen is confirmed, all of it landed
    const [{ n }] = await pipe.db.sql`INSERT INTO hot VALUES (1000000, 'end', 0)
      ON CONFLICT (id) DO UPDATE SET n = hot.n + 1 RETURNING n`
    await waitFor(
      'the last commit to be written and confirmed',
      () =>
        pipe.docs('hot').get(1000000)?.n === n &&
        (monitor.confirms.at(-1)?.lsn ?? 0n) >= monitor.lastCommit,
      60_000,
    )
    await waitFor('no write in flight', () => proxyInFlight === 0, 30_000)
  } finally {
    await stream.stop()
  }
  // invariant 1: a confirmation never passed a change whose write had not landed yet
  for (const c of monitor.confirms) {
    for (const w of landed) {
      if (w.ackedAt <= c.at) continue
      for (const l of w.lsns) expect(l >= c.lsn).toBe(true)
    }
  }
  return monitor
}

async function expectSameAsTable() {
  const rows = await pipe.db.sql<{ id: number; name: string; n: number }[]>`SELECT id, name, n FROM hot ORDER BY id`
  const docs = pipe.docs('hot')
  expect([...docs.keys()].sort((a, b) => Number(a) - Number(b))).toEqual(rows.map((r) => r.id))
  for (const r of rows) expect(docs.get(r.id)).toEqual({ name: r.name, n: r.n })
}

describe('writes in flight land out of order', () => {
  test('a delete committed after an upsert still in flight waits for it (no resurrection)', async () => {
    // the upsert of "slow" takes 600 ms; the delete and every later write go through at once
    let slowSent = false
    delayFor = (body) => body.includes('"slow"') ? (slowSent = true, 600) : 0
    const monitor = await streamed(async () => {
      await pipe.db.sql`INSERT INTO hot VALUES (1, 'slow', 1)`
      // the delete is committed while the upsert's write is in flight (not coalesced with it before the write)
      await waitFor('the slow write to be in flight', () => slowSent, 10_000, 2)
      await pipe.db.sql`DELETE FROM hot WHERE id = 1`
      await pipe.db.sql`INSERT INTO hot VALUES (2, 'fast', 2)`
      await pipe.db.sql`INSERT INTO hot VALUES (3, 'fast', 3)`
    })
    expect(monitor.confirms.length).toBeGreaterThan(0)
    await expectSameAsTable()
    expect(pipe.docs('hot').has(1)).toBe(false)
  })

  test('a hot set of ids under random delays (later requests often land first) converges', async () => {
    // every third write request waits 150-400 ms, the others 0-30 ms
    delayFor = (_body, n) => n % 3 === 0 ? 150 + Math.random() * 250 : Math.random() * 30
    await streamed(async () => {
      const clients = Array.from({ length: 6 }, (_, c) =>
        (async () => {
          for (let k = 0; k < 60; k++) {
            const id = 10 + Math.floor(Math.random() * 60)
            const roll = Math.random()
            if (roll < 0.3) await pipe.db.sql`DELETE FROM hot WHERE id = ${id}`
            else {
              await pipe.db.sql`INSERT INTO hot VALUES (${id}, ${`c${c}k${k}`}, ${k})
              ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, n = EXCLUDED.n`
            }
          }
        })())
      await Promise.all(clients)
    })
    await expectSameAsTable()
    // the point of the test: writes really were in flight together and landed out of order
    const order = landed.map((w) => w.lsns.length ? w.lsns.reduce((a, b) => a > b ? a : b) : 0n)
    expect(order.some((l, k) => k > 0 && l < order[k - 1])).toBe(true)
  }, 120_000)

  test('group commit: a change is written at its commit, not after the poll interval', async () => {
    delayFor = () => 0
    await streamed(async () => {
      for (let k = 0; k < 3; k++) {
        const started = performance.now()
        await pipe.db.sql`INSERT INTO hot VALUES (${500 + k}, 'now', ${k})`
        // poll_interval_ms is 20 s here: only the longest a change may wait, not the usual wait
        await waitFor('the row to be visible', () => pipe.docs('hot').has(500 + k), 5_000, 5)
        expect(performance.now() - started).toBeLessThan(5_000)
      }
    }, 20_000)
    await expectSameAsTable()
  })
})
