// `pg_ctl restart -m fast` under a steady write load with `run` connected: PostgreSQL must be able to shut down
// (run never holds its walsender waiting for a flush confirmation), run reconnects and nothing is lost
// (docs/ARCHITECTURE.md, invariants 1, 7). A dedicated cluster: restarting the shared one would disturb other test files.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import process from 'node:process'
import postgres from 'postgres'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { type Cluster, pgBinDir, startCluster } from '../src/postgres/throwaway.ts'
import { runCli } from './harness/cli.ts'
import { makeProject, migration, type Project } from './harness/project.ts'
import { type RunningStream, startStream, waitForSlotActive } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'

let cluster: Cluster
let sql: postgres.Sql
let server: LocalServer
let project: Project
let stream: RunningStream | undefined

/** The test's own pool. Ended before PostgreSQL stops and made anew after: a pooled connection that the server
 * closes can surface as an error outside any query (postgres.js on Bun), failing whichever test runs then. */
const BURST = fileURLToPath(new URL('./fixtures/sql-burst.ts', import.meta.url))
const DENO_JSON = fileURLToPath(new URL('../deno.json', import.meta.url))
const onDeno = typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined'

const openPool = () => postgres(cluster.url(), { max: 2, onnotice: () => {} })

beforeAll(async () => {
  cluster = await startCluster()
  sql = openPool()
  server = await startLocalServer()
  await sql`CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL)`
  project = makeProject({
    databaseUrl: cluster.url(),
    turbopufferUrl: server.url,
    migrations: { '001_kv.toml': migration({ name: 'kv', table: 'kv' }) },
    // no heartbeat messages: nothing but the test's own writes reaches the stream
    extra: '[stream]\nheartbeat_interval_ms = 0',
  })
  expect((await runCli(['-c', project.config, 'migrate'])).code).toBe(0)
})

afterAll(async () => {
  await stream?.stop().catch(() => {})
  await sql?.end({ timeout: 1 })
  await server?.stop()
  project?.remove()
  cluster?.stop()
})

/** pg_ctl without blocking the event loop (the stream runs in this process and must go on reacting). */
function pgCtl(args: string[]): Promise<{ code: number | null; output: string }> {
  const cmd = join(pgBinDir(), 'pg_ctl')
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
  const child = isRoot ? spawn('runuser', ['-u', 'postgres', '--', cmd, ...args]) : spawn(cmd, args)
  let output = ''
  child.stdout.on('data', (d) => output += d)
  child.stderr.on('data', (d) => output += d)
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output })))
}

/**
 * `pg_ctl restart -m fast -w -t 25`, timed. When it fails, prints what the server and run were doing: the server's
 * log (whether the shutdown checkpoint finished), its processes by title (a walsender shows its state and position)
 * and run's last log lines. Seen once in CI (the whole suite in one process, PostgreSQL 17): the shutdown waited
 * until run was stopped.
 */
async function restartFast(): Promise<{ code: number | null; output: string; ms: number }> {
  const started = Date.now()
  const data = join(cluster.dir, 'data')
  const { code, output } = await pgCtl([
    '-D',
    data,
    '-l',
    join(cluster.dir, 'log'),
    '-m',
    'fast',
    '-w',
    '-t',
    '25',
    'restart',
  ])
  const ms = Date.now() - started
  if (code) {
    const tail = (text: string) => text.split('\n').slice(-40).join('\n')
    let serverLog = ''
    try {
      serverLog = readFileSync(join(cluster.dir, 'log'), 'utf8')
    } catch { /* none */ }
    const ps = spawnSync('ps', ['-eo', 'pid,stat,etime,args'], { encoding: 'utf8' }).stdout ?? ''
    const titles = ps.split('\n').filter((l) => /postgres:/.test(l)).join('\n')
    console.log(
      `the server's log, last lines:\n${tail(serverLog)}\nits processes:\n${titles}\n` +
        `run's log, last lines:\n${tail(stream?.logs.join('\n') ?? '')}`,
    )
  }
  return { code, output, ms }
}

/**
 * Small transactions of upserts and deletes until `stop()`, from psql child processes (a postgres.js pool in this
 * process can crash it when the server goes away under it: a write scheduled on a closed socket), retried through
 * the restart.
 */
function writeLoad() {
  let stopped = false
  let i = 0
  const txn = (n: number) => {
    const parts = []
    for (let k = 0; k < 5; k++) {
      const id = 1 + ((n * 7 + k * 13) % 400)
      parts.push(
        (n + k) % 9 === 0
          ? `DELETE FROM kv WHERE id = ${id};`
          : `INSERT INTO kv VALUES (${id}, ${n}) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v;`,
      )
    }
    return `BEGIN; ${parts.join(' ')} COMMIT;`
  }
  // each burst in a process of its own (test/fixtures/sql-burst.ts), as one simple-protocol query string: a shutdown
  // fails the burst, nothing more. Not psql: with the system's PostgreSQL hidden (CI) Debian's psql finds no client.
  const burst = (commands: string[]) =>
    new Promise<number | null>((resolve) => {
      const args = [BURST, cluster.url(), commands.join(' ')]
      const argv = onDeno ? ['run', '-A', '--quiet', '--config', DENO_JSON, ...args] : args
      const child = spawn(process.execPath, argv, { stdio: 'ignore' })
      child.on('exit', (code) => resolve(code))
    })
  const done = (async () => {
    while (!stopped) {
      const commands = Array.from({ length: 10 }, (_, k) => txn(i + k + 1))
      // a failed run may have committed some of its transactions: those count, the rest is written again
      i += 10
      if (await burst(commands) !== 0) await new Promise((r) => setTimeout(r, 50))
    }
  })()
  return {
    txns: () => i,
    stop: () => {
      stopped = true
      return done
    },
  }
}

/**
 * run streaming (`opts`) while turbopuffer refuses every write (503) and `changes` are made; once run retries them,
 * `pg_ctl restart -m fast`, which must succeed. The outage goes on; returns the restart's time.
 */
async function restartDuringOutage(opts: { batchSize?: number }, changes: () => Promise<void>): Promise<number> {
  await stream?.stop()
  stream = startStream(project.config, { pollIntervalMs: 20, ...opts })
  await waitForSlotActive(sql)
  server.failNext(1_000_000, 503)
  await changes()
  await waitFor('run to retry the writes', () => stream!.logs.some((l) => /request failed; retrying/.test(l)))
  await sql.end({ timeout: 1 })
  const { code, output, ms } = await restartFast()
  expect({ code, output: code ? output : '' }).toEqual({ code: 0, output: '' })
  sql = openPool()
  return ms
}

async function converged(): Promise<boolean> {
  const rows = await sql<{ id: number; v: number }[]>`SELECT id, v FROM kv ORDER BY id`
  const docs = server.documents('kv')
  if (docs.length !== rows.length) return false
  const byId = new Map(docs.map((d) => [d.id, d.v]))
  return rows.every((r) => byId.get(r.id) === r.v)
}

describe('run through a PostgreSQL restart', () => {
  test('pg_ctl restart -m fast under a write load completes at once; run reconnects; nothing lost', async () => {
    stream = startStream(project.config, { pollIntervalMs: 20, batchSize: 50 })
    await waitForSlotActive(sql)
    const load = writeLoad()
    await waitFor('the stream to write under load', () => stream!.flushes.length >= 20 && load.txns() >= 100)
    // a write to turbopuffer takes a while (as the real service's do): the shutdown lands while a batch is in flight
    server.setLatency(300)
    await waitFor('a batch in flight', () => stream!.flushes.length >= 22)
    await sql.end({ timeout: 1 })
    const { code, output, ms } = await restartFast()
    expect({ code, output: code ? output : '' }).toEqual({ code: 0, output: '' })
    expect(ms).toBeLessThan(10_000)
    sql = openPool()
    // the load goes on after the restart, and run follows it
    server.setLatency(0)
    const before = load.txns()
    await waitFor('the load to go on after the restart', () => load.txns() >= before + 200, 30_000)
    await load.stop()
    await waitFor('the namespace to equal the table', converged, 60_000, 200)
    expect(stream.logs.some((l) => /stream interrupted; reconnecting/.test(l))).toBe(true)
    expect((await sql`SELECT count(*)::int AS n FROM __puffgres_dlq`)[0].n).toBe(0)
    console.log(`pg_ctl restart -m fast took ${ms} ms`)
  }, 150_000)

  test('a turbopuffer outage does not hold pg_ctl restart -m fast; the changes land once it ends', async () => {
    let before = ''
    const ms = await restartDuringOutage({}, async () => {
      ;[{ before }] = await sql`SELECT pg_current_wal_lsn()::text AS before`
      await sql`INSERT INTO kv SELECT g, 7 FROM generate_series(30001, 30050) g`
      await sql`DELETE FROM kv WHERE id = 30002`
    })
    // a walsender exits at shutdown only once its client has reported everything it was sent: run reports what it
    // received without confirming it (docs/ARCHITECTURE.md, invariant 7)
    expect(ms).toBeLessThan(10_000)
    // what the walsender was told let it go without moving the slot past what landed
    const [{ behind }] = await sql`
      SELECT confirmed_flush_lsn <= ${before}::pg_lsn AS behind FROM pg_replication_slots WHERE slot_name = 'puffgres'`
    expect(behind).toBe(true)
    server.failNext(0, 503)
    await waitFor('the namespace to equal the table', converged, 60_000, 200)
    expect(server.documents('kv').some((d) => d.id === 30002)).toBe(false)
    expect((await sql`SELECT count(*)::int AS n FROM __puffgres_dlq`)[0].n).toBe(0)
  }, 120_000)

  test('with a backlog: the replication stream paused, run sheds what it read and streams it again', async () => {
    // small batches: a few hundred changes fill what run holds (pending and in flight), the rest fills its queue and
    // pauses the socket, so the walsender cannot send the end of the WAL
    const ms = await restartDuringOutage({ batchSize: 50 }, async () => {
      await sql`INSERT INTO kv SELECT g, 8 FROM generate_series(40001, 45000) g`
      await sql`DELETE FROM kv WHERE id BETWEEN 40001 AND 40010`
    })
    // within the shed's 10 s (stalled: nothing taken from the full queue), not when the outage ends
    expect(ms).toBeLessThan(20_000)
    console.log(`with a backlog, pg_ctl restart -m fast took ${ms} ms`)
    server.failNext(0, 503)
    await waitFor('the namespace to equal the table', converged, 60_000, 200)
    expect((await sql`SELECT count(*)::int AS n FROM __puffgres_dlq`)[0].n).toBe(0)
  }, 120_000)

  test('a lost stream abandons its writes in flight: a hot standby that takes the slot is not overtaken', async () => {
    await stream?.stop()
    const first = startStream(project.config, { pollIntervalMs: 20 })
    stream = first
    await waitForSlotActive(sql)
    server.failNext(1_000_000, 503)
    await sql`INSERT INTO kv VALUES (50001, 1)`
    await waitFor('run to retry the write', () => first.logs.some((l) => /request failed; retrying/.test(l)))
    const standby = startStream(project.config, { pollIntervalMs: 20, standbyRetryMs: 200 })
    try {
      await waitFor('the second run to wait', () => standby.logs.some((l) => /waiting as a hot standby/.test(l)))
      // the first run's walsender goes (as at a failover, a network cut): the slot is free
      await sql`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'puffgres'`
      await waitFor('the first run to abandon its write', () => first.logs.some((l) => /abandoned/.test(l)))
      const abandonedAt = first.logs.findIndex((l) => /abandoned/.test(l))
      await waitFor('the standby to stream', () => standby.logs.some((l) => /streaming/.test(l)))
      // the standby replays the insert, then a newer delete; were the first run's insert still retried, it could land
      // after that delete and bring the row back
      await sql`DELETE FROM kv WHERE id = 50001`
      server.failNext(0, 503)
      await waitFor('the namespace to equal the table', converged, 60_000, 200)
      await new Promise((r) => setTimeout(r, 1000))
      expect(server.documents('kv').some((d) => d.id === 50001)).toBe(false)
      const retriedAfter = first.logs.slice(abandonedAt).filter((l) => /request failed; retrying/.test(l))
      expect(retriedAfter).toEqual([])
    } finally {
      await standby.stop()
    }
  }, 120_000)

  test('a stream that shed keeps the slot until its writes have landed, then streams the rest again', async () => {
    await stream?.stop()
    stream = startStream(project.config, { pollIntervalMs: 20, batchSize: 50 })
    await waitForSlotActive(sql)
    const walsender = async () =>
      (await sql`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = 'puffgres'`)[0]?.pid
    const pid = await walsender()
    server.failNext(1_000_000, 503)
    await sql`INSERT INTO kv SELECT g, 9 FROM generate_series(60001, 65000) g`
    await waitFor('run to retry the writes', () => stream!.logs.some((l) => /request failed; retrying/.test(l)))
    // nothing taken from the full queue for 10 s, no write succeeding: the stream sheds (and reads on)
    await new Promise((r) => setTimeout(r, 18_000))
    server.failNext(0, 503)
    // the writes in flight land, then the stream lets go and streams the rest again: when the slot is first not this
    // walsender's, what run held (pending and in flight: 400 changes with batches of 50) has landed
    // (read after the walsender: the count when its release is first seen)
    let landed = 0
    for (const until = Date.now() + 60_000; Date.now() < until;) {
      const now = await walsender()
      landed = server.documents('kv').filter((d) => Number(d.id) > 60000).length
      if (now !== pid) break
    }
    console.log(`landed when the slot was let go: ${landed}`)
    expect(landed).toBeGreaterThanOrEqual(400)
    await waitFor('the namespace to equal the table', converged, 60_000, 200)
    await waitFor('the reconnect', () => stream!.logs.some((l) => /no change taken for 10 s/.test(l)))
    expect((await sql`SELECT count(*)::int AS n FROM __puffgres_dlq`)[0].n).toBe(0)
  }, 120_000)

  test('a batch that fails lets go of the walsender at once (not when the next change arrives)', async () => {
    await stream?.stop()
    stream = startStream(project.config, { pollIntervalMs: 20 })
    await waitForSlotActive(sql)
    await sql`INSERT INTO kv VALUES (10001, 1)`
    await waitFor('10001 written', () => server.documents('kv').some((d) => d.id === 10001))
    const walsender = async () =>
      (await sql`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = 'puffgres'`)[0]?.pid
    const first = await walsender()
    // a batch fails when its dead letters cannot be recorded (confirmation waits for the DLQ insert): the next
    // write is refused for good (a 400, isolated row by row into the DLQ) while this trigger refuses DLQ inserts
    await sql.unsafe(`
      CREATE FUNCTION refuse_dlq() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'dead letters refused by the test'; END $$;
      CREATE TRIGGER refuse_dlq BEFORE INSERT OR UPDATE ON __puffgres_dlq
        FOR EACH ROW EXECUTE FUNCTION refuse_dlq()`)
    server.failNext(1_000, 400)
    await sql`INSERT INTO kv VALUES (10002, 1)`
    await waitFor('the batch to fail', () => stream!.logs.some((l) => /writing a batch failed/.test(l)))
    // nothing else is written: only letting go at once ends this walsender
    await waitFor('the walsender of the failed stream to go', async () => (await walsender()) !== first, 5_000)
    server.failNext(0, 400)
    await sql`DROP TRIGGER refuse_dlq ON __puffgres_dlq`
    await waitFor('the namespace to equal the table', converged, 30_000, 100)
  }, 60_000)

  test('PostgreSQL down when run starts: run waits for it, then streams', async () => {
    await stream?.stop()
    const data = join(cluster.dir, 'data')
    await sql.end({ timeout: 1 })
    expect((await pgCtl(['-D', data, '-m', 'fast', '-w', 'stop'])).code).toBe(0)
    stream = startStream(project.config, { pollIntervalMs: 20 })
    let exited = false
    stream.done.then(() => exited = true, () => exited = true)
    await waitFor('run to wait for PostgreSQL', () => stream!.logs.some((l) => /cannot reach PostgreSQL/.test(l)))
    expect(exited).toBe(false)
    expect((await pgCtl(['-D', data, '-l', join(cluster.dir, 'log'), '-w', 'start'])).code).toBe(0)
    sql = openPool()
    await waitForSlotActive(sql, 'puffgres', 60_000)
    await sql`INSERT INTO kv VALUES (20001, 1)`
    await waitFor('20001 written', () => server.documents('kv').some((d) => d.id === 20001), 30_000)
  }, 120_000)
})
