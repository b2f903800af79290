// Stored generated columns: pgoutput does not send them (before PostgreSQL 18, and on 18 unless the publication says
// publish_generated_columns), so the stream re-reads the row for them — its documents equal backfill's.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { runCli } from './harness/cli.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'
import { docsById, type RunningStream, startStream, waitForSlotActive } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'

let db: TestDatabase
let server: LocalServer
let project: Project
let stream: RunningStream | undefined

beforeAll(async () => {
  db = await testDatabase('generated')
  server = await startLocalServer()
  await db.sql.unsafe(`CREATE TABLE g (id int PRIMARY KEY, a int, twice int GENERATED ALWAYS AS (a * 2) STORED,
    label text GENERATED ALWAYS AS ('#' || a::text) STORED)`)
  await db.sql`INSERT INTO g (id, a) VALUES (1, 1)`
  project = makeProject({
    databaseUrl: db.url,
    turbopufferUrl: server.url,
    migrations: {
      // a column list with a generated column, a membership predicate on another; and the whole row
      '001_g.toml': migration({ name: 'g', table: 'g', columns: ['a', 'twice'], membership: "label <> '#0'" }),
      '002_g_all.toml': migration({ name: 'g_all', table: 'g', namespace: 'g_all' }),
    },
  })
  expect((await runCli(['-c', project.config, 'migrate'])).code).toBe(0)
})

afterAll(async () => {
  await stream?.stop()
  await server?.stop()
  project?.remove()
  await db?.drop()
})

test('backfill and the stream both write stored generated columns', async () => {
  expect((await runCli(['-c', project.config, 'backfill', 'g'])).code).toBe(0)
  expect((await runCli(['-c', project.config, 'backfill', 'g_all'])).code).toBe(0)
  expect(docsById(server.documents('g')).get(1)).toEqual({ a: 1, twice: 2 })
  stream = startStream(project.config)
  await waitForSlotActive(db.sql)
  await db.sql`INSERT INTO g (id, a) VALUES (2, 5), (3, 0)`
  await db.sql`UPDATE g SET a = 7 WHERE id = 1`
  const g = () => docsById(server.documents('g'))
  const all = () => docsById(server.documents('g_all'))
  await waitFor('the stream', () => g().get(1)?.a === 7 && g().has(2) && all().get(1)?.a === 7 && all().has(3))
  expect(g().get(1)).toEqual({ a: 7, twice: 14 })
  expect(g().get(2)).toEqual({ a: 5, twice: 10 })
  expect(g().has(3)).toBe(false) // label '#0' is outside the membership predicate
  expect(all().get(1)).toEqual({ a: 7, twice: 14, label: '#7' })
  expect(all().get(3)).toEqual({ a: 0, twice: 0, label: '#0' })
})
