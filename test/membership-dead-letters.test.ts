// A row whose membership cannot be evaluated becomes a dead letter whose error reads the same whichever path found
// it: `membership: <what>`, once, with no "Error:" or "MembershipError:" in between. The stream evaluates the
// predicate on the change's row; the re-read (an unchanged TOASTed column) on the row read back by key. (Backfill
// selects members in SQL: a predicate PostgreSQL cannot evaluate fails the backfill, it makes no dead letters.)
// The case: the predicate's column is dropped while `run` streams. `dlq retry` of such entries keeps them, saying
// the same.
import { expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'memberdlq',
  // an externally TOASTed value (incompressible enough to leave the row): an update not touching it re-reads the row
  sql: `CREATE TABLE items (id int PRIMARY KEY, shown boolean, big text);
    INSERT INTO items VALUES (1, true, (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 4000)))`,
  migrations: {
    '001_items.toml': migration({ name: 'items', table: 'items', membership: 'shown', namespace: 'memberdlq' }),
  },
})

test('stream and re-read: `membership: column "shown" is not in the row`', async () => {
  await pipe.startStream()
  await pipe.db.sql`ALTER TABLE items DROP COLUMN shown`
  await pipe.db.sql`INSERT INTO items (id, big) VALUES (2, 'small')` // the stream's row: no "shown"
  await pipe.db.sql`UPDATE items SET id = id WHERE id = 1` // "big" unchanged TOAST: re-read by key, no "shown" either
  const letters = async () =>
    await pipe.db.sql<{ doc_id: string; error: string }[]>`SELECT doc_id, error FROM __puffgres_dlq ORDER BY doc_id`
  await waitFor('two dead letters', async () => (await letters()).length === 2)
  expect(await letters()).toEqual([
    { doc_id: '1', error: 'membership: column "shown" is not in the row' },
    { doc_id: '2', error: 'membership: column "shown" is not in the row' },
  ])
})

test('dlq retry of them: each entry stays with the same error, and the retry goes on to the next', async () => {
  const r = await pipe.cli('dlq', 'retry', '--mapping', 'items')
  expect(r.err).not.toContain('    at ') // no stack trace: before, the first entry ended the retry with one
  expect(r.code).toBe(1)
  expect(await pipe.db.sql`SELECT doc_id, error, attempts FROM __puffgres_dlq ORDER BY doc_id`).toEqual([
    { doc_id: '1', error: 'membership: column "shown" is not in the row', attempts: 2 },
    { doc_id: '2', error: 'membership: column "shown" is not in the row', attempts: 2 },
  ])
})
