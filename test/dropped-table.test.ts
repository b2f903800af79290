// `DROP TABLE` of a mapped table (logical replication sends nothing for it). What a Debezium or Sequin user expects:
// the other mappings go on, the documents stay, an error-level line names the mapping, the table and what to do,
// `status` shows it, changes committed before the drop are not dropped silently, and a restarted `run` leaves the
// mapping out instead of refusing to start. Retiring the mapping (removing its files, `migrate`) clears it.
import { beforeAll, expect, test } from 'bun:test'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'droptable',
  sql: `CREATE TABLE items (id int PRIMARY KEY, big text);
    CREATE TABLE other (id int PRIMARY KEY, v text);
    -- externally TOASTed: an update that leaves it unchanged makes run re-read the row
    INSERT INTO items VALUES (1, (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 4000)))`,
  migrations: {
    '001_items.toml': migration({ name: 'items', table: 'items', namespace: 'dropped_items' }),
    '002_other.toml': migration({ name: 'other', table: 'other', namespace: 'dropped_other' }),
  },
})

beforeAll(async () => {
  expect((await pipe.cli('backfill', 'items')).code).toBe(0)
})

/** `run` in process, checking for dropped tables every 100 ms; `errors()` are the messages of its error lines. */
async function run() {
  const stream = await pipe.startStream({ createSlot: 'if-new', tableCheckIntervalMs: 100 })
  const lines = () => stream.logs.map((l) => JSON.parse(l) as { level: string; msg: string })
  const errors = () => lines().filter((l) => l.level === 'error').map((l) => l.msg)
  return { ...stream, errors }
}

const { docs } = pipe

test('DROP TABLE while run streams: an error line, status shows it, the stream goes on, a restart too', async () => {
  const first = await run()
  try {
    await pipe.db.sql`INSERT INTO items VALUES (2, 'two')`
    await waitFor('item 2 streamed', () => docs('dropped_items').has(2))
    // committed before the drop: an insert, and an id change whose TOASTed column is unchanged (re-read by key)
    await pipe.db.sql.begin(async (tx) => {
      await tx`INSERT INTO items VALUES (3, 'three')`
      await tx`UPDATE items SET id = 11 WHERE id = 1`
    })
    await pipe.db.sql`DROP TABLE items`
    await pipe.db.sql`INSERT INTO other VALUES (1, 'one')`

    await waitFor('the error line', () => first.errors().some((m) => m.includes('public.items')))
    expect(first.errors()).toEqual([
      'table public.items of mapping "items" was dropped: its changes are no longer streamed; the documents in ' +
      'namespace "dropped_items" stay as they were. To retire the mapping, remove its migration files and run ' +
      '`puffgres migrate` (and delete the namespace if its documents are not wanted); if the table was re-created, ' +
      'run `puffgres migrate`, restart `puffgres run`, then `puffgres verify items --repair`',
    ])
    await waitFor('the other mapping streams on', () => docs('dropped_other').has(1))
    // the documents stay; the change that could not be re-read is a dead letter, not dropped in silence
    await waitFor('item 3 streamed', () => docs('dropped_items').has(3))
    expect([...docs('dropped_items').keys()].sort()).toEqual([2, 3])
    await waitFor('the dead letter', async () => (await pipe.db.sql`SELECT 1 FROM __puffgres_dlq`).length > 0)
    expect(await pipe.db.sql`SELECT mapping, doc_id, error FROM __puffgres_dlq`).toEqual([{
      mapping: 'items',
      doc_id: '11',
      error: 're-read: table public.items was dropped before the row could be read again (its change lacked ' +
        'unchanged TOAST or generated column values): the document keeps its earlier version',
    }])
  } finally {
    await first.stop()
  }

  const report = await pipe.status() as { mappings: { mapping: string; table_exists: boolean; dlq: number }[] }
  expect(report.mappings.map((m) => [m.mapping, m.table_exists, m.dlq])).toEqual([['items', false, 1], [
    'other',
    true,
    0,
  ]])
  const human = await pipe.cli('status')
  expect(human.out).toContain('error: table public.items of mapping "items" does not exist (dropped, or renamed')

  // a restart: the mapping is left out with the same advice, the others stream (before: "run `puffgres migrate`",
  // which refused too, since the table is gone)
  const second = await run()
  try {
    await pipe.db.sql`INSERT INTO other VALUES (2, 'two')`
    await waitFor('the other mapping streams after a restart', () => docs('dropped_other').has(2))
    expect(second.errors()).toHaveLength(1)
    expect(second.errors()[0]).toMatch(
      /^table public\.items of mapping "items" does not exist \(dropped, or renamed .*: the mapping is left out; /,
    )
  } finally {
    await second.stop()
  }

  // retired: its files removed, `migrate` takes it out of the publication; status and run are quiet about it
  rmSync(join(pipe.project.dir, 'puffgres', 'migrations', '001_items.toml'))
  const migrated = await pipe.cli('migrate')
  expect([migrated.code, migrated.err]).toEqual([0, expect.any(String)])
  expect((await pipe.cli('status')).out).not.toContain('error:')
})
