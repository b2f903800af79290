// A row whose membership cannot be evaluated becomes a dead letter whose error reads the same whichever path found
// it: `membership: <what>`, once, with no "Error:" or "MembershipError:" in between. The stream evaluates the
// predicate on the change's row; the re-read (an unchanged TOASTed column) on the row read back by key. (Backfill
// selects members in SQL: a predicate PostgreSQL cannot evaluate fails the backfill, it makes no dead letters.)
// The case: the predicate's column is dropped while `run` streams. `dlq retry` of such entries keeps them, saying
// the same.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { runCli } from './harness/cli.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'
import { type RunningStream, startStream, waitForSlotActive } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'

let db: TestDatabase
let server: LocalServer
let project: Project
let stream: RunningStream | undefined

beforeAll(async () => {
  db = await testDatabase('memberdlq')
  server = await startLocalServer()
  await db.sql`CREATE TABLE items (id int PRIMARY KEY, shown boolean, big text)`
  // an externally TOASTed value (incompressible enough to leave the row): an update not touching it re-reads the row
  await db.sql`INSERT INTO items VALUES (1, true,
    (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 4000)))`
  project = makeProject({
    databaseUrl: db.url,
    turbopufferUrl: server.url,
    migrations: {
      '001_items.toml': migration({ name: 'items', table: 'items', membership: 'shown', namespace: 'memberdlq' }),
    },
  })
  expect((await runCli(['-c', project.config, 'migrate'])).code).toBe(0)
}, 120_000)

afterAll(async () => {
  await stream?.stop()
  await server?.stop()
  project?.remove()
  await db?.drop()
})

test('stream and re-read: `membership: column "shown" is not in the row`', async () => {
  stream = startStream(project.config)
  await waitForSlotActive(db.sql)
  await db.sql`ALTER TABLE items DROP COLUMN shown`
  await db.sql`INSERT INTO items (id, big) VALUES (2, 'small')` // the stream's row: no "shown"
  await db.sql`UPDATE items SET id = id WHERE id = 1` // "big" unchanged TOAST: re-read by key, no "shown" either
  const letters = async () =>
    await db.sql<{ doc_id: string; error: string }[]>`SELECT doc_id, error FROM __puffgres_dlq ORDER BY doc_id`
  await waitFor('two dead letters', async () => (await letters()).length === 2)
  expect(await letters()).toEqual([
    { doc_id: '1', error: 'membership: column "shown" is not in the row' },
    { doc_id: '2', error: 'membership: column "shown" is not in the row' },
  ])
})

test('dlq retry of them: each entry stays with the same error, and the retry goes on to the next', async () => {
  const r = await runCli(['-c', project.config, 'dlq', 'retry', '--mapping', 'items'])
  expect(r.err).not.toContain('    at ') // no stack trace: before, the first entry ended the retry with one
  expect(r.code).toBe(1)
  expect(await db.sql`SELECT doc_id, error, attempts FROM __puffgres_dlq ORDER BY doc_id`).toEqual([
    { doc_id: '1', error: 'membership: column "shown" is not in the row', attempts: 2 },
    { doc_id: '2', error: 'membership: column "shown" is not in the row', attempts: 2 },
  ])
})
