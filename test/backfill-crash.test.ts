// A backfill that dies after writing part of a page, before that page's re-check: a row deleted after the page was
// read, whose streamed delete `run` applied before the page's upsert landed, must not stay in the namespace. The
// next backfill re-checks the pages the dead one had recorded as in flight.
import { expect, test } from 'bun:test'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import type { Sink } from '../src/turbopuffer/types.ts'
import { quietBackfill } from './harness/backfill.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'backfill_crash',
  sql: `
    CREATE TABLE ghosts (id int PRIMARY KEY, v text NOT NULL);
    INSERT INTO ghosts SELECT g, 'v' || g FROM generate_series(1, 100) g;
  `,
  migrations: { '001_ghosts.toml': migration({ name: 'ghosts', table: 'ghosts' }) },
  stream: { pollIntervalMs: 10 },
})

const ids = () => pipe.server.documents('ghosts').map((d) => Number(d.id)).sort((a, b) => a - b)
const journal = async () => (await pipe.db.sql`SELECT count(*)::int AS n FROM __puffgres_backfill_pages`)[0].n

test('the pages a dead backfill was writing are re-checked by the next one: no deleted row comes back', async () => {
  const inner = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
  let ghost: number | undefined
  // The first write: its first row is deleted and `run` confirms past that delete (a no-op: the document is not
  // there yet); then the upsert lands, carrying the page's older version, and the backfill "dies".
  const dying: Sink = {
    write: async (ns, ops, opts) => {
      if (ghost === undefined) {
        ghost = Number(ops[0].id)
        await pipe.db.sql`DELETE FROM ghosts WHERE id = ${ghost}`
        // the insert position: with synchronous_commit off, pg_current_wal_lsn() (written so far) can still be below
        // the delete's commit, and the slot would pass it before the delete is streamed
        const [{ lsn }] = await pipe.db.sql`SELECT pg_current_wal_insert_lsn()::text AS lsn`
        await waitFor('run confirms the delete', async () => {
          const [s] = await pipe.db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS done FROM pg_replication_slots
            WHERE slot_name = 'puffgres'`
          return s?.done === true
        }, 20_000)
        await inner.write(ns, ops, opts)
        throw new Error('simulated crash')
      }
      return inner.write(ns, ops, opts)
    },
    deleteAllBefore: (ns, v) => inner.deleteAllBefore(ns, v),
    stats: () => inner.stats(),
  }
  const config = pipe.project.config
  // batches of 10: one page of 100 rows, so the crash lands inside the page before its re-check
  const dead = quietBackfill(config, { mapping: 'ghosts', batchSize: 10, sink: dying })
  await expect(dead).rejects.toThrow('simulated crash')
  expect(ids()).toContain(ghost!) // the ghost: in the namespace, not in the table
  expect(await journal()).toBe(1)

  const lines: string[] = []
  const r = await quietBackfill(config, { mapping: 'ghosts', batchSize: 10, resume: true, say: (l) => lines.push(l) })
  expect(r.outcome).toBe('done')
  expect(lines.join('\n')).toContain(
    're-checked 100 rows of 1 page(s) an interrupted backfill was writing; deleted 1 document(s) whose rows are ' +
      'gone or left the predicate',
  )
  expect(ids()).not.toContain(ghost!)
  const rows = await pipe.db.sql<{ id: number }[]>`SELECT id FROM ghosts ORDER BY id`
  expect(ids()).toEqual(rows.map((x) => x.id))
  expect(await journal()).toBe(0)
}, 60_000)

test('pages an older version of the mapping left are forgotten with a warning that says what to run', async () => {
  await pipe.db.sql`INSERT INTO __puffgres_backfill_pages (mapping, version, lsn, keys)
    VALUES ('ghosts', 0, '0/1', '{{"1","2"}}')`
  const logs: string[] = []
  const r = await quietBackfill(pipe.project.config, { mapping: 'ghosts', restart: true }, logs)
  expect(r.outcome).toBe('done')
  expect(logs.join('\n')).toContain('run `puffgres verify --repair`')
  expect(await journal()).toBe(0)
})
