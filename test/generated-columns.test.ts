// Stored generated columns: pgoutput does not send them (before PostgreSQL 18, and on 18 unless the publication says
// publish_generated_columns), so the stream re-reads the row for them — its documents equal backfill's.
import { expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'generated',
  sql: `CREATE TABLE g (id int PRIMARY KEY, a int, twice int GENERATED ALWAYS AS (a * 2) STORED,
    label text GENERATED ALWAYS AS ('#' || a::text) STORED);
    INSERT INTO g (id, a) VALUES (1, 1)`,
  migrations: {
    // a column list with a generated column, a membership predicate on another; and the whole row
    '001_g.toml': migration({ name: 'g', table: 'g', columns: ['a', 'twice'], membership: "label <> '#0'" }),
    '002_g_all.toml': migration({ name: 'g_all', table: 'g', namespace: 'g_all' }),
  },
})

test('backfill and the stream both write stored generated columns', async () => {
  expect((await pipe.cli('backfill', 'g')).code).toBe(0)
  expect((await pipe.cli('backfill', 'g_all')).code).toBe(0)
  expect(pipe.docs('g').get(1)).toEqual({ a: 1, twice: 2 })
  await pipe.startStream()
  await pipe.db.sql`INSERT INTO g (id, a) VALUES (2, 5), (3, 0)`
  await pipe.db.sql`UPDATE g SET a = 7 WHERE id = 1`
  const g = () => pipe.docs('g')
  const all = () => pipe.docs('g_all')
  await waitFor('the stream', () => g().get(1)?.a === 7 && g().has(2) && all().get(1)?.a === 7 && all().has(3))
  expect(g().get(1)).toEqual({ a: 7, twice: 14 })
  expect(g().get(2)).toEqual({ a: 5, twice: 10 })
  expect(g().has(3)).toBe(false) // label '#0' is outside the membership predicate
  expect(all().get(1)).toEqual({ a: 7, twice: 14, label: '#7' })
  expect(all().get(3)).toEqual({ a: 0, twice: 0, label: '#0' })
})
