// Backfill racing concurrent writers (docs/ARCHITECTURE.md, invariants 2 and 3): while a backfill runs, a writer updates,
// deletes, re-inserts and flips the membership of rows, aiming at the pages being read and written; `run` streams
// the same changes (already running, or started only after the backfill). Afterwards the namespace must equal the
// table's member rows exactly: no lost update, no older version winning, no deleted row brought back.
import { describe, expect, test } from 'bun:test'
import { isDeepStrictEqual } from 'node:util'
import type postgres from 'postgres'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import type { Sink } from '../src/turbopuffer/types.ts'
import { quietBackfill } from './harness/backfill.ts'
import { type Pipeline, usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor, waitForStreamPast } from './harness/wait.ts'

const ROWS = 1500
const BATCH = 20
const SEEDS = [11, 22, 33]

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * The real sink to the local server, each write of the backfill held back `delayMs` first: a page's upsert then
 * lands well after the stream has applied deletes committed after the page was read (the resurrection race).
 */
function slowSink(url: string, delayMs: number): Sink {
  const inner = new TurbopufferSink({ api_key: 'test-key', base_url: url })
  return {
    write: async (ns, ops, opts) => {
      await sleep(delayMs)
      return inner.write(ns, ops, opts)
    },
    deleteAllBefore: (ns, version) => inner.deleteAllBefore(ns, version),
    stats: () => inner.stats(),
  }
}

/** A small deterministic PRNG (mulberry32): a failing seed can be replayed. */
function prng(seed: number) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const tableSql = (t: string) => `
  CREATE TABLE ${t} (id int PRIMARY KEY, status text NOT NULL, v int NOT NULL, note text);
  INSERT INTO ${t} VALUES (0, 'on', 0, 'marker');
  INSERT INTO ${t} SELECT g, CASE WHEN g % 3 = 0 THEN 'off' ELSE 'on' END, 0, 'n' || g FROM generate_series(1, ${ROWS}) g;
`

const raceMigration = (t: string) => migration({ name: t, table: t, membership: "status = 'on'" })

/**
 * Mutates `table` until `stop()` says so: most changes hit ids just ahead of the backfill's last checkpoint (the
 * pages in flight), some anywhere. Returns how many transactions it committed.
 */
async function writer(sql: postgres.Sql, table: string, seed: number, stop: () => boolean): Promise<number> {
  const rnd = prng(seed)
  let cursor = 0
  let commits = 0
  while (!stop()) {
    if (commits % 5 === 0) {
      const [r] = await sql`SELECT (last_key->>0)::int AS k FROM __puffgres_backfill WHERE mapping = ${table}`
      cursor = r?.k ?? 0
    }
    const pick = () => rnd() < 0.8 ? cursor + 1 + Math.floor(rnd() * 3 * BATCH) : 1 + Math.floor(rnd() * ROWS * 1.1)
    const one = async (tx: postgres.TransactionSql) => {
      const id = pick()
      const r = rnd()
      if (r < 0.25) {
        await tx.unsafe(`UPDATE ${table} SET v = v + 1, note = $2 WHERE id = $1`, [id, `u${seed}.${commits}`])
      } else if (r < 0.45) await tx.unsafe(`DELETE FROM ${table} WHERE id = $1`, [id])
      else if (r < 0.65) {
        await tx.unsafe(
          `UPDATE ${table} SET status = CASE status WHEN 'on' THEN 'off' ELSE 'on' END, v = v + 1
          WHERE id = $1`,
          [id],
        )
      } else if (r < 0.85) {
        // re-inserts deleted ids (and ids past the end)
        await tx.unsafe(
          `INSERT INTO ${table} VALUES ($1, 'on', 100, 'again') ON CONFLICT (id) DO UPDATE SET v = ${table}.v + 1`,
          [id],
        )
      } else {
        // delete and re-insert one id in one transaction, and touch its neighbour
        await tx.unsafe(`DELETE FROM ${table} WHERE id = $1`, [id])
        await tx.unsafe(`INSERT INTO ${table} VALUES ($1, 'on', 7, 'reborn')`, [id])
        await tx.unsafe(`UPDATE ${table} SET v = v + 1 WHERE id = $1`, [id + 1])
      }
    }
    await sql.begin(async (tx) => {
      const n = 1 + Math.floor(rnd() * 3)
      for (let i = 0; i < n; i++) await one(tx)
    })
    commits++
    // paced so that the stream keeps up: its deletes must be able to land before the backfill's page does
    await sleep(2)
  }
  return commits
}

/**
 * Runs a backfill of `table` while the writer mutates it: through the CLI, or (`slow`) in-process with its writes
 * held back. Returns the writer's commits, what was printed, and how many stale rows the re-checks deleted.
 */
async function backfillUnderWrites(pipe: Pipeline, table: string, seed: number, slow = 0) {
  let done = false
  const writing = writer(pipe.db.sql, table, seed, () => done)
  let out = ''
  let deleted = 0
  try {
    if (slow) {
      const lines: string[] = []
      const r = await quietBackfill(pipe.project.config, {
        mapping: table,
        batchSize: BATCH,
        sink: slowSink(pipe.server.url, slow),
        say: (l) => lines.push(l),
      })
      expect(r.outcome).toBe('done')
      if (r.outcome === 'done') deleted = r.deleted
      out = lines.join('\n')
    } else {
      const r = await pipe.cli('backfill', table, '--batch-size', String(BATCH))
      expect(r.err).toBe('')
      expect(r.code).toBe(0)
      out = r.out
    }
  } finally {
    done = true
  }
  return { commits: await writing, out, deleted }
}

/** Waits until the stream has applied everything committed so far (a marker change, written last, arrived). */
async function caughtUp(pipe: Pipeline, table: string, seed: number) {
  await pipe.db.sql.unsafe(`UPDATE ${table} SET v = $1 WHERE id = 0`, [-seed])
  await waitFor(`${table} marker`, () => pipe.docs(table).get(0)?.v === -seed, 30_000)
}

async function expectProjection(pipe: Pipeline, table: string) {
  const rows = await pipe.db.sql.unsafe<{ id: number; status: string; v: number; note: string | null }[]>(
    `SELECT id, status, v, note FROM ${table} WHERE status = 'on' ORDER BY id`,
  )
  const got = pipe.docs(table)
  const expected = new Map(rows.map(({ id, ...rest }) => [id, rest]))
  const extra = [...got.keys()].filter((id) => !expected.has(id as number))
  const missing = [...expected.keys()].filter((id) => !got.has(id))
  const wrong = [...expected].filter(([id, row]) => got.has(id) && !isDeepStrictEqual(got.get(id), row))
  expect({ extra, missing, wrong: wrong.slice(0, 5) }).toEqual({ extra: [], missing: [], wrong: [] })
}

describe('backfill while `run` streams', () => {
  const tables = [...SEEDS.map((s) => `race_${s}`), 'race_recheck']
  const pipe = usePipeline({
    name: 'bfrace',
    sql: tables.map(tableSql).join('\n'),
    migrations: Object.fromEntries(tables.map((t, i) => [`00${i + 1}_${t}.toml`, raceMigration(t)])),
    // the rows above exist before the slot: only the backfill can bring them
    stream: { pollIntervalMs: 10, batchSize: 50 },
  })

  for (const seed of SEEDS) {
    test(`seed ${seed}: the namespace equals the table's member rows`, async () => {
      const table = `race_${seed}`
      const r = await backfillUnderWrites(pipe, table, seed, 100)
      expect(r.commits).toBeGreaterThan(30) // the writes really overlapped the backfill
      await caughtUp(pipe, table, seed)
      await expectProjection(pipe, table)
    }, 90_000)
  }

  test('the re-check deletes a row that went away, and was streamed, while its page was in flight', async () => {
    // The race made to happen: before the first page's write reaches turbopuffer, one of its rows is deleted and
    // the stream applies that delete (to no document yet); the page then writes the row, and only the re-check can
    // take it away again.
    const table = 'race_recheck'
    let victim: unknown
    const inner = slowSink(pipe.server.url, 0)
    const sink: Sink = {
      ...inner,
      write: async (ns, ops, opts) => {
        if (victim === undefined) {
          victim = ops.find((o) => o.kind === 'upsert' && o.id !== 0)?.id // not the marker row
          await pipe.db.sql.unsafe(`DELETE FROM ${table} WHERE id = $1`, [victim as number])
          await waitForStreamPast(pipe.db.sql, 'the stream to apply the delete')
        }
        return inner.write(ns, ops, opts)
      },
    }
    const r = await quietBackfill(pipe.project.config, { mapping: table, batchSize: BATCH, sink, say: () => {} })
    expect(r.outcome).toBe('done')
    expect(victim).toBeDefined()
    if (r.outcome === 'done') expect(r.deleted).toBe(1)
    expect(pipe.docs(table).has(victim)).toBe(false)
    await caughtUp(pipe, table, 99)
    await expectProjection(pipe, table)
  }, 90_000)
})

describe('backfill before `run` ever started', () => {
  const table = 'race_first'
  const pipe = usePipeline({
    name: 'bfrace0',
    sql: tableSql(table),
    migrations: { '001_race_first.toml': raceMigration(table) },
  })

  test('the slot is created first; run started afterwards converges', async () => {
    try {
      pipe.server.setLatency(20) // long enough for the writer's 30+ commits to overlap it, even on a loaded machine
      const { commits, out } = await backfillUnderWrites(pipe, table, 44)
      pipe.server.setLatency(0)
      expect(out).toContain('created replication slot "puffgres"')
      expect(commits).toBeGreaterThan(30)
      await pipe.startStream({ pollIntervalMs: 10 })
      await caughtUp(pipe, table, 44)
      await expectProjection(pipe, table)
    } finally {
      pipe.server.setLatency(0)
    }
  }, 90_000)
})
