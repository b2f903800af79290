// `puffgres run` as a process: kill -9 at random moments under load, turbopuffer error storms, hot standby,
// graceful shutdown. The namespace must end equal to the table's projection, with nothing in the DLQ.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { type Child, spawnCli } from './harness/child.ts'
import { runCli } from './harness/cli.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

let db: TestDatabase
let server: LocalServer
let project: Project
const children: Child[] = []

beforeAll(async () => {
  db = await testDatabase('resilience')
  server = await startLocalServer()
  await db.sql`CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL, member bool NOT NULL)`
  project = makeProject({
    databaseUrl: db.url,
    turbopufferUrl: server.url,
    migrations: { '001_kv.toml': migration({ name: 'kv', table: 'kv', membership: 'member' }) },
  })
  expect((await runCli(['-c', project.config, 'migrate'])).code).toBe(0)
})

afterAll(async () => {
  for (const c of children) c.kill()
  await server?.stop()
  project?.remove()
  await db?.drop()
})

function run(...extra: string[]) {
  const c = spawnCli(['-c', project.config, 'run', '--poll-interval-ms', '50', '--batch-size', '200', ...extra])
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
    await db.sql.begin(async (tx) => {
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
  const rows = await db.sql<{ id: number; v: number }[]>`SELECT id, v FROM kv WHERE member ORDER BY id`
  const docs = server.documents('kv')
  if (docs.length !== rows.length) return false
  const byId = new Map(docs.map((d) => [d.id, d.v]))
  return rows.every((r) => byId.get(r.id) === r.v)
}

async function drift(): Promise<string> {
  const rows = await db.sql<{ id: number; v: number }[]>`SELECT id, v FROM kv WHERE member ORDER BY id`
  const docs = new Map(server.documents('kv').map((d) => [d.id, d.v]))
  const want = new Map(rows.map((r) => [r.id, r.v]))
  const missing = rows.filter((r) => !docs.has(r.id)).map((r) => r.id)
  const extra = [...docs.keys()].filter((id) => !want.has(id as number))
  const wrong = rows.filter((r) => docs.has(r.id) && docs.get(r.id) !== r.v).map((r) =>
    `${r.id}:${docs.get(r.id)}≠${r.v}`
  )
  const dlq = await db.sql`SELECT doc_id, error FROM __puffgres_dlq LIMIT 3`
  const [slot] = await db
    .sql`SELECT confirmed_flush_lsn::text AS c, pg_current_wal_lsn()::text AS now FROM pg_replication_slots`
  return `slot ${JSON.stringify(slot)} dlq ${JSON.stringify(dlq)} missing ${
    missing.slice(0, 10)
  } (${missing.length}), extra ${extra.slice(0, 10)} (${extra.length}), ` +
    `wrong ${wrong.slice(0, 10)} (${wrong.length})`
}

async function dlqCount(): Promise<number> {
  return (await db.sql`SELECT count(*)::int AS n FROM __puffgres_dlq`)[0].n
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
    server.setFailRate(0.4)
    server.failNext(10, 429, 20)
    await writeLoad(99, 200)
    await waitFor('convergence through the storm', converged, 60_000, 200)
    server.setFailRate(0)
    expect(await dlqCount()).toBe(0)
    expect(c.output()).toMatch(/retry/i)
    c.kill('SIGTERM')
    expect(await c.exited).toBe(0)
  }, 120_000)

  test('a second run waits as a hot standby and takes over when the first dies', async () => {
    const a = run()
    await waitFor('a streams', () => /"streaming"/.test(a.output()))
    const b = run()
    await waitFor('b waits as a standby', () => /hot standby/.test(b.output()))
    a.kill('SIGKILL')
    await a.exited
    await db.sql`INSERT INTO kv VALUES (1001, 1, true)`
    await waitFor('b took over and wrote the change', () => server.documents('kv').some((d) => d.id === 1001), 30_000)
    expect(b.output()).toMatch(/"streaming"/)
    b.kill('SIGTERM')
    expect(await b.exited).toBe(0)
  }, 60_000)

  test('SIGTERM finishes the batch in flight, confirms it and exits 0', async () => {
    const c = run('--poll-interval-ms', '3000')
    await waitFor('streams', () => /"streaming"/.test(c.output()))
    await db.sql`INSERT INTO kv VALUES (2001, 1, true)`
    const [{ lsn }] = await db.sql`SELECT pg_current_wal_lsn()::text AS lsn`
    await new Promise((r) => setTimeout(r, 300)) // received, but still waiting in the batch (poll interval 3 s)
    c.kill('SIGTERM')
    expect(await c.exited).toBe(0)
    expect(server.documents('kv').some((d) => d.id === 2001)).toBe(true)
    const [slot] = await db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok, active FROM pg_replication_slots
      WHERE slot_name = 'puffgres'`
    expect(slot).toEqual({ ok: true, active: false })
  }, 60_000)
})
