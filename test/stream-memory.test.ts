// Bounded memory (docs/ARCHITECTURE.md, invariant 4): one transaction far larger than the memory bound streams through
// `puffgres run` (a child process, so its RSS is its own) into the local turbopuffer server, and the child's peak
// RSS (VmHWM, sampled from /proc while it streams) stays under the bound. The rows carry ~1 kB each, 200 MB in all:
// a `run` that held the transaction (or the table) in memory would pass the bound many times over. Then `backfill`
// copies the same 200 MB table in a child process, under a bound below the table's size.
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { parseLsn } from '../src/postgres/lsn.ts'
import { type Child, spawnCli } from './harness/child.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitForSlotActive } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'

const ROWS = 200_000
const ROW_BYTES = 1000
/**
 * `run`, measured on the shared 2-core machine (loaded): Deno 232-261 MB and Bun 183-196 MB since run forces a full
 * collection once heap plus external memory have grown 16 MB (Bun 32 MB; runtime.ts, boundHeapGrowth); before, Deno
 * 310-353 MB (heap growth bounded at 32 MB, at most 2 collections a second) and Bun 248-278 MB (its own collector);
 * Deno 370-380 MB with V8's own policy (the heap grew to ~4x what was alive). PUFFGRES_MEMORY_TRACE=<file> has run
 * log its memory (runtime.ts, traceMemory).
 */
const BOUND_MB = 300
/**
 * measured: 160-202 MB on Bun, 186-273 MB on Deno (1,000-row batches on Bun: 280-310 MB, the garbage collector's
 * slack grows with the page); pages as big as the table: 407 MB on Bun
 */
const BACKFILL_BOUND_MB = 300

let child: Child | undefined

const pipe = usePipeline({
  name: 'memory',
  // stored inline and uncompressed, so the WAL and pgoutput carry every byte
  sql: 'CREATE TABLE big (id int PRIMARY KEY, body text); ALTER TABLE big ALTER COLUMN body SET STORAGE PLAIN',
  migrations: { '001_big.toml': migration({ name: 'big', table: 'big' }) },
})
pipe.defer(async () => {
  if (child) {
    child.kill('SIGKILL')
    await child.exited
  }
})

function peakRssKb(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined // exited
  }
}

async function confirmedFlush(slot: string): Promise<bigint> {
  const [r] = await pipe.db.sql<{ lsn: string | null }[]>`
    SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ${slot}`
  return r?.lsn ? parseLsn(r.lsn) : 0n
}

async function docCount(ns: string): Promise<number> {
  const r = await fetch(`${pipe.server.url}/v2/namespaces/${ns}/query`, {
    method: 'POST',
    headers: { authorization: 'Bearer test-key', 'content-type': 'application/json' },
    body: JSON.stringify({ aggregate_by: { n: ['Count'] } }),
  })
  return r.ok ? (await r.json()).aggregations.n : 0
}

describe('puffgres run memory', () => {
  test(
    `a ${ROWS}-row transaction of ${(ROWS * ROW_BYTES) / 1e6} MB streams with peak RSS under ${BOUND_MB} MB`,
    async () => {
      child = spawnCli(['-c', pipe.project.config, 'run', '--slot', 'memory', '--poll-interval-ms', '100'], {
        PUFFGRES_LOG: 'info',
      })
      const pid = child.proc.pid!
      await waitForSlotActive(pipe.db.sql, 'memory', 30_000)
      const idle = peakRssKb(pid)!

      let peakKb = 0
      const sampler = setInterval(() => peakKb = Math.max(peakKb, peakRssKb(pid) ?? 0), 20)
      // the commit record lies past this position, so a confirmed flush LSN beyond it covers the whole transaction
      let beforeCommit = 0n
      await pipe.db.sql.begin(async (tx) => {
        await tx.unsafe(
          `INSERT INTO big SELECT g, repeat(chr(97 + g % 26), ${ROW_BYTES}) FROM generate_series(1, ${ROWS}) g`,
        )
        const [{ lsn }] = await tx<{ lsn: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS lsn`
        beforeCommit = parseLsn(lsn)
      })
      try {
        await waitFor(
          'the transaction to be confirmed',
          async () => {
            if (child!.proc.exitCode !== null) {
              throw new Error(
                `run exited ${child!.proc.exitCode}: ${child!.output()}`,
              )
            }
            return (await confirmedFlush('memory')) > beforeCommit
          },
          240_000,
          100,
        ).catch((e) => {
          throw new Error(`${(e as Error).message}; puffgres run said:\n${child!.output().slice(-3000)}`)
        })
        peakKb = Math.max(peakKb, peakRssKb(pid) ?? 0)
      } finally {
        clearInterval(sampler)
      }
      console.log(
        `puffgres run streamed ${ROWS} rows (${(ROWS * ROW_BYTES) / 1e6} MB) in one transaction: ` +
          `peak RSS ${(peakKb / 1024).toFixed(0)} MB (idle ${(idle / 1024).toFixed(0)} MB, bound ${BOUND_MB} MB)`,
      )
      expect(child.proc.exitCode).toBeNull()
      expect(await docCount('big')).toBe(ROWS)
      expect(peakKb).toBeGreaterThan(0)
      expect(peakKb / 1024).toBeLessThan(BOUND_MB)

      child.kill('SIGTERM')
      expect(await child.exited).toBe(0)
      child = undefined
    },
    300_000,
  )
})
describe('puffgres backfill memory', () => {
  test(
    `a ${(ROWS * ROW_BYTES) / 1e6} MB table backfills (--batch-size 200) with peak RSS under ${BACKFILL_BOUND_MB} MB`,
    async () => {
      // the table the test above filled (run in the same file, before this one)
      expect((await pipe.db.sql`SELECT count(*)::int AS n FROM big`)[0].n).toBe(ROWS)
      const writes = pipe.server.stats().writes
      // 200-row batches: 2,000-row pages of 1 kB rows; a backfill that held the table (200 MB) would pass the bound
      const c = spawnCli(['-c', pipe.project.config, 'backfill', 'big', '--slot', 'memory', '--batch-size', '200'], {
        PUFFGRES_LOG: 'info',
      })
      const pid = c.proc.pid!
      let peakKb = 0
      const sampler = setInterval(() => peakKb = Math.max(peakKb, peakRssKb(pid) ?? 0), 20)
      let code: number | null
      try {
        code = await c.exited
      } finally {
        clearInterval(sampler)
      }
      expect([code, c.output().slice(-2000)]).toEqual([
        0,
        expect.stringContaining(`done: ${ROWS.toLocaleString('en-US')} rows`),
      ])
      console.log(
        `puffgres backfill copied ${ROWS} rows (${(ROWS * ROW_BYTES) / 1e6} MB): peak RSS ${
          (peakKb / 1024).toFixed(0)
        } MB`,
      )
      expect(pipe.server.stats().writes - writes).toBeGreaterThanOrEqual(ROWS / 200) // it wrote (200-row batches)
      expect(peakKb).toBeGreaterThan(0)
      expect(peakKb / 1024).toBeLessThan(BACKFILL_BOUND_MB)
    },
    300_000,
  )
})
