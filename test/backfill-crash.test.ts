// A backfill that dies after writing part of a page, before that page's re-check: a row deleted after the page was
// read, whose streamed delete `run` applied before the page's upsert landed, must not stay in the namespace. The
// next backfill re-checks the pages the dead one had recorded as in flight. With a namespace per tenant, a row of
// such a page that moved to another tenant meanwhile must not keep the page's copy in the tenant it left.
import { expect, test } from 'bun:test'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import type { Sink } from '../src/turbopuffer/types.ts'
import { ROW_ATTR } from '../src/types.ts'
import { quietBackfill } from './harness/backfill.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor, waitForStreamPast } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'backfill_crash',
  sql: `
    CREATE TABLE ghosts (id int PRIMARY KEY, v text NOT NULL);
    INSERT INTO ghosts SELECT g, 'v' || g FROM generate_series(1, 100) g;
    CREATE TABLE moves (id int PRIMARY KEY, ws text NOT NULL, t text);
    ALTER TABLE moves REPLICA IDENTITY FULL;
    INSERT INTO moves SELECT g, 't' || (g % 3), 'm' FROM generate_series(1, 9) g;
    CREATE TABLE shaped (id int PRIMARY KEY, ws text NOT NULL, t text);
    ALTER TABLE shaped REPLICA IDENTITY FULL;
    INSERT INTO shaped SELECT g, 't' || (g % 3), 's' FROM generate_series(1, 9) g;
    CREATE TABLE chunked (id int PRIMARY KEY, ws text NOT NULL, body text);
    ALTER TABLE chunked REPLICA IDENTITY FULL;
    INSERT INTO chunked SELECT g, 't' || (g % 3), rpad('a' || g, 79, 'x') || '.' || chr(10) || chr(10) ||
      rpad('b' || g, 79, 'x') || '.' FROM generate_series(1, 9) g;
  `,
  migrations: {
    '001_ghosts.toml': migration({ name: 'ghosts', table: 'ghosts' }),
    '002_moves.toml': migration({ name: 'moves', table: 'moves', namespace: 'moves_{ws}' }),
    '003_chunked.toml': migration({
      name: 'chunked',
      table: 'chunked',
      namespace: 'chunked_{ws}',
      extra: '[mapping.chunking]\nsource = "body"\nsize = 100\n',
    }),
    // a transform may name documents otherwise than their rows: its stale deletes still go to every namespace
    '004_shaped.toml': migration({ name: 'shaped', table: 'shaped', namespace: 'shaped_{ws}', transform: 'shape.ts' }),
  },
  files: {
    'shape.ts': `export default function (event) {
  if (event.type === 'delete') return { type: 'delete' }
  return { type: 'upsert', attributes: { loud: event.new.t.toUpperCase() } }
}
`,
  },
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

/**
 * The namespaces of the local server whose names start with `prefix`, each with the rows it holds documents of
 * (`ROW_ATTR` in row-documents mode, else the document ids), sorted; empty namespaces left out.
 */
function placed(prefix: string): Record<string, number[]> {
  const out: Record<string, number[]> = {}
  for (const ns of pipe.server.namespaces().filter((n) => n.startsWith(prefix)).sort()) {
    const rows = new Set(pipe.server.documents(ns).map((d) => Number(d[ROW_ATTR] ?? d.id)))
    if (rows.size) out[ns] = [...rows].sort((a, b) => a - b)
  }
  return out
}

for (const mapping of ['moves', 'chunked', 'shaped']) {
  test(
    `${mapping}: a row that moved to another tenant while a dead backfill wrote its page leaves no copy behind`,
    async () => {
      const inner = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
      let raced = false
      // The write of tenant t1 (rows 1, 4, 7): row 4 moves to t9 and row 7 is deleted, and the stream applies both
      // (its deletes in t1 find nothing yet, and leave no tombstone); then the page's copies land in t1 and the
      // backfill "dies" before its re-check. Only the next backfill, re-checking the page left in the journal without
      // knowing where its rows went, can take them away.
      const dying: Sink = {
        write: async (ns, ops, opts) => {
          if (!raced && ns === `${mapping}_t1` && ops.some((o) => String(o.id) === '4')) {
            raced = true
            await pipe.db.sql`UPDATE ${pipe.db.sql(mapping)} SET ws = 't9' WHERE id = 4`
            await pipe.db.sql`DELETE FROM ${pipe.db.sql(mapping)} WHERE id = 7`
            await waitForStreamPast(pipe.db.sql, 'the stream to apply the move and the delete')
            await inner.write(ns, ops, opts)
            throw new Error('simulated crash')
          }
          return inner.write(ns, ops, opts)
        },
        deleteAllBefore: (ns, v) => inner.deleteAllBefore(ns, v),
        stats: () => inner.stats(),
        attributeTypes: (ns) => inner.attributeTypes(ns),
        listNamespaces: (prefix, o) => inner.listNamespaces(prefix, o),
        newerRowVersions: (ns, keys, v) => inner.newerRowVersions(ns, keys, v),
      }
      const config = pipe.project.config
      const dead = quietBackfill(config, { mapping, batchSize: 100, sink: dying })
      await expect(dead).rejects.toThrow('simulated crash')
      expect(raced).toBe(true)
      expect(placed(`${mapping}_t1`)[`${mapping}_t1`]).toEqual([1, 4, 7]) // the stale copy and the ghost
      expect(placed(`${mapping}_t9`)).toEqual({ [`${mapping}_t9`]: [4] }) // the stream's
      expect(await journal()).toBe(1)

      const r = await quietBackfill(config, { mapping, batchSize: 100, resume: true })
      expect(r.outcome).toBe('done')
      expect(placed(`${mapping}_`)).toEqual({
        [`${mapping}_t0`]: [3, 6, 9],
        [`${mapping}_t1`]: [1],
        [`${mapping}_t2`]: [2, 5, 8],
        [`${mapping}_t9`]: [4],
      })
      expect(await journal()).toBe(0)
      expect(await pipe.deadLetters(mapping)).toEqual([])
    },
    60_000,
  )
}
