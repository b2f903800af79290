// `puffgres run` as a process: kill -9 at random moments under load, turbopuffer error storms, hot standby,
// graceful shutdown. The namespace must end equal to the table's projection, with nothing in the DLQ.
import { describe, expect, test } from 'bun:test'
import { type Child, spawnCli } from './harness/child.ts'
import { freePort } from './harness/pg.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const children: Child[] = []

const pipe = usePipeline({
  name: 'resilience',
  sql: 'CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL, member bool NOT NULL)',
  migrations: { '001_kv.toml': migration({ name: 'kv', table: 'kv', membership: 'member' }) },
  // no heartbeat: its commits would count as received changes in the lag gauge the signal tests wait on
  extra: '[stream]\nheartbeat_interval_ms = 0',
})
pipe.defer(() => {
  for (const c of children) c.kill()
})

function run(...extra: string[]) {
  const c = spawnCli(['-c', pipe.project.config, 'run', '--poll-interval-ms', '50', '--batch-size', '200', ...extra])
  children.push(c)
  return c
}

/** A seeded PRNG (mulberry32), so a failure can be replayed. */
function prng(seed: number) {
  return () => {
    seed |= 0
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Random inserts, updates (value and membership), deletes, in small transactions. */
async function writeLoad(seed: number, txns: number) {
  const rnd = prng(seed)
  for (let i = 0; i < txns; i++) {
    await pipe.db.sql.begin(async (tx) => {
      const n = 1 + Math.floor(rnd() * 5)
      for (let k = 0; k < n; k++) {
        const id = 1 + Math.floor(rnd() * 300)
        const r = rnd()
        if (r < 0.5) {
          await tx`INSERT INTO kv VALUES (${id}, ${i}, ${rnd() < 0.7}) ON CONFLICT (id) DO UPDATE SET v = ${i},
            member = EXCLUDED.member`
        } else if (r < 0.8) await tx`UPDATE kv SET v = v + 1 WHERE id = ${id}`
        else await tx`DELETE FROM kv WHERE id = ${id}`
      }
    })
    await new Promise((r) => setTimeout(r, 4)) // a steady load rather than one burst, so kills land inside it
  }
}

/** Expected: member rows as {id → v}; actual: the namespace. */
async function converged(): Promise<boolean> {
  const rows = await pipe.db.sql<{ id: number; v: number }[]>`SELECT id, v FROM kv WHERE member ORDER BY id`
  const docs = pipe.server.documents('kv')
  if (docs.length !== rows.length) return false
  const byId = new Map(docs.map((d) => [d.id, d.v]))
  return rows.every((r) => byId.get(r.id) === r.v)
}

async function drift(): Promise<string> {
  const rows = await pipe.db.sql<{ id: number; v: number }[]>`SELECT id, v FROM kv WHERE member ORDER BY id`
  const docs = new Map(pipe.server.documents('kv').map((d) => [d.id, d.v]))
  const want = new Map(rows.map((r) => [r.id, r.v]))
  const missing = rows.filter((r) => !docs.has(r.id)).map((r) => r.id)
  const extra = [...docs.keys()].filter((id) => !want.has(id as number))
  const wrong = rows.filter((r) => docs.has(r.id) && docs.get(r.id) !== r.v).map((r) =>
    `${r.id}:${docs.get(r.id)}≠${r.v}`
  )
  const dlq = await pipe.db.sql`SELECT doc_id, error FROM __puffgres_dlq LIMIT 3`
  const [slot] = await pipe.db
    .sql`SELECT confirmed_flush_lsn::text AS c, pg_current_wal_lsn()::text AS now FROM pg_replication_slots`
  return `slot ${JSON.stringify(slot)} dlq ${JSON.stringify(dlq)} missing ${
    missing.slice(0, 10)
  } (${missing.length}), extra ${extra.slice(0, 10)} (${extra.length}), ` +
    `wrong ${wrong.slice(0, 10)} (${wrong.length})`
}

/** Inserts a member row; returns a WAL position inside its transaction, below its commit. */
async function insertAt(id: number): Promise<string> {
  return await pipe.db.sql.begin(async (tx) => {
    await tx`INSERT INTO kv VALUES (${id}, 1, true)`
    return (await tx`SELECT pg_current_wal_insert_lsn()::text AS lsn`)[0].lsn as string
  })
}

/** `puffgres_replication_lag_seconds` from a run's /metrics: above 0 while a received commit is unconfirmed. */
async function lagSeconds(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  return Number(/^puffgres_replication_lag_seconds (\S+)$/m.exec(text)?.[1] ?? NaN)
}

async function dlqCount(): Promise<number> {
  return (await pipe.db.sql`SELECT count(*)::int AS n FROM __puffgres_dlq`)[0].n
}

describe('run as a process', () => {
  test('kill -9 at random moments under a write load, restarted: converges exactly', async () => {
    const seed = Number(process.env.RESILIENCE_SEED ?? 7)
    const rnd = prng(seed * 31)
    // the slot exists from the first start on: what is committed before it is backfill's job, not the stream's
    const first = run()
    await waitFor('the first run to stream', () => /"streaming"/.test(first.output()))
    first.kill('SIGKILL')
    await first.exited
    const load = writeLoad(seed, 1500)
    let kills = 1
    let done = false
    load.finally(() => done = true)
    while (!done || kills < 4) {
      const c = run()
      await new Promise((r) => setTimeout(r, 500 + rnd() * 2000))
      c.kill('SIGKILL')
      await c.exited
      kills++
    }
    await load
    const last = run()
    await waitFor('the namespace to equal the table', converged, 60_000, 200).catch(async (e) => {
      throw new Error(`${e.message} (seed ${seed}): ${await drift()}; output: ${last.output().slice(-3000)}`)
    })
    expect(kills).toBeGreaterThanOrEqual(4)
    expect(await dlqCount()).toBe(0)
    await waitFor('the last run to stream', () => /"streaming"/.test(last.output()))
    last.kill('SIGTERM')
    expect(await last.exited).toBe(0)
  }, 180_000)

  test('a turbopuffer 429/500 storm: nothing lost, nothing dead-lettered', async () => {
    const c = run()
    try {
      pipe.server.setFailRate(0.4)
      pipe.server.failNext(10, 429, 20)
      // the whole load is committed while 40% of the requests fail; once the stream has retried through it, the storm
      // ends (a fail rate left on makes convergence a matter of backoff luck on a slow runtime)
      await writeLoad(99, 200)
      await waitFor('retries through the storm', () => /retry/i.test(c.output()))
      pipe.server.setFailRate(0)
      await waitFor('convergence after the storm', converged, 60_000, 200)
      expect(await dlqCount()).toBe(0)
      c.kill('SIGTERM')
      expect(await c.exited).toBe(0)
    } finally {
      pipe.server.setFailRate(0)
      c.kill('SIGKILL') // a failed test must not leave a process holding the slot for the next ones
      await c.exited
    }
  }, 120_000)

  test('a second run waits as a hot standby and takes over when the first dies', async () => {
    const a = run()
    let b: ReturnType<typeof run> | undefined
    try {
      await waitFor('a streams', () => /"streaming"/.test(a.output()))
      b = run()
      const standby = b
      await waitFor('b waits as a standby', () => /hot standby/.test(standby.output()))
      const streamingLines = () => standby.output().split('\n').filter((l) => l.includes('"streaming"')).length
      a.kill('SIGKILL')
      await a.exited
      const ended = Date.now()
      await waitFor('b to take over', () => streamingLines() > 0, 30_000, 20)
      // README: within about a second of the first one's end (b retries every second); 3 s leaves room for load
      expect(Date.now() - ended).toBeLessThan(3_000)
      await pipe.db.sql`INSERT INTO kv VALUES (1001, 1, true)`
      await waitFor('b wrote the change', () => pipe.server.documents('kv').some((d) => d.id === 1001), 30_000)
      b.kill('SIGTERM')
      expect(await b.exited).toBe(0)
    } finally {
      for (const p of [a, b]) {
        p?.kill('SIGKILL')
        await p?.exited
      }
    }
  }, 60_000)

  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    test(`${sig} finishes the write in flight, confirms it and exits 0`, async () => {
      const id = sig === 'SIGTERM' ? 2001 : 2002
      const port = await freePort()
      const c = run('--metrics-port', String(port), '--metrics-host', '127.0.0.1')
      try {
        await waitFor('streams', () => /"streaming"/.test(c.output()))
        // every write takes 3 s: the change's write is in flight (received, not yet confirmed) when the signal comes
        pipe.server.setLatency(3_000)
        const lsn = await insertAt(id)
        await waitFor('the change to be received', async () => await lagSeconds(port) > 0)
        expect(pipe.server.documents('kv').some((d) => d.id === id)).toBe(false)
        c.kill(sig)
        expect(await c.exited).toBe(0)
        expect(pipe.server.documents('kv').some((d) => d.id === id)).toBe(true)
        const [slot] = await pipe.db
          .sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok, active FROM pg_replication_slots
          WHERE slot_name = 'puffgres'`
        expect(slot).toEqual({ ok: true, active: false })
      } finally {
        pipe.server.setLatency(0)
        c.kill('SIGKILL')
        await c.exited
      }
    }, 60_000)
  }

  test('a second signal exits at once, without confirming; the next run writes the change', async () => {
    const c = run()
    await waitFor('streams', () => /"streaming"/.test(c.output()))
    const writes = pipe.server.stats().writes
    pipe.server.failNext(1_000_000, 503, 100) // hold the sink
    try {
      const lsn = await insertAt(3001)
      await waitFor('the batch to be in flight', () => pipe.server.stats().writes >= writes + 2)
      c.kill('SIGTERM')
      await waitFor('the graceful stop to begin', () => /finishing the batches in flight/.test(c.output()))
      const second = Date.now()
      c.kill('SIGTERM')
      expect(await c.exited).toBe(130)
      expect(Date.now() - second).toBeLessThan(5_000)
      expect(c.output()).toContain('second SIGTERM: exiting now')
      expect(pipe.server.documents('kv').some((d) => d.id === 3001)).toBe(false)
      const [slot] = await pipe.db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok FROM pg_replication_slots
        WHERE slot_name = 'puffgres'`
      expect(slot.ok).toBe(false)
    } finally {
      pipe.server.failNext(0)
    }
    const next = run()
    await waitFor('the next run to write it', () => pipe.server.documents('kv').some((d) => d.id === 3001))
    next.kill('SIGTERM')
    expect(await next.exited).toBe(0)
  }, 60_000)

  test('--discard confirms the slot and writes nothing', async () => {
    await pipe.db.sql`SELECT pg_create_logical_replication_slot('discard_test', 'pgoutput')`
    const c = run('--discard', '--slot', 'discard_test')
    try {
      await waitFor('streams', () => /"streaming"/.test(c.output()))
      const writes = pipe.server.stats().writes
      const lsn = await insertAt(4001)
      await waitFor(
        'discard_test confirmed past the insert',
        async () =>
          (await pipe.db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok FROM pg_replication_slots
            WHERE slot_name = 'discard_test'`)[0]?.ok,
      )
      expect(pipe.server.stats().writes).toBe(writes)
      expect(pipe.server.documents('kv').some((d) => d.id === 4001)).toBe(false)
      c.kill('SIGTERM')
      expect(await c.exited).toBe(0)
    } finally {
      c.kill()
      await c.exited
      await pipe.db.sql`SELECT pg_drop_replication_slot('discard_test')`
    }
    await pipe.db.sql`DELETE FROM kv WHERE id = 4001`
  }, 60_000)
})
