// `[mapping.embedding]` end to end: the stream embeds the source columns through an OpenAI-compatible provider (a
// local server speaking its API), batching rows into few requests and not paying again for unchanged text.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { runCli } from './harness/cli.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'
import { type RunningStream, startStream } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'
import { type EmbeddingServer, expectedVector, startEmbeddingServer } from './fixtures/transforms/embedding-server.ts'

let db: TestDatabase
let server: LocalServer
let embeddings: EmbeddingServer
let project: Project
let stream: RunningStream

beforeAll(async () => {
  db = await testDatabase('embed')
  server = await startLocalServer()
  embeddings = await startEmbeddingServer('embed-key')
  await db.sql`CREATE TABLE notes (id int PRIMARY KEY, title text, body text, stars int)`
  project = makeProject({
    databaseUrl: db.url,
    turbopufferUrl: server.url,
    extra: `[providers.embeddings]
type = "openai"
model = "test-model"
api_key = "embed-key"
base_url = "${embeddings.url}"
`,
    migrations: {
      '001_notes.toml': migration({
        name: 'notes',
        table: 'notes',
        extra: '[mapping.embedding]\nsource = ["title", "body"]',
      }).replace('[target]', '[target]\ndistance_metric = "cosine_distance"'),
    },
  })
  expect((await runCli(['-c', project.config, 'migrate'])).code).toBe(0)
  stream = startStream(project.config)
  await waitFor('streaming', () => stream.logs.some((l) => l.includes('"streaming"')))
})

afterAll(async () => {
  await stream?.stop()
  await server?.stop()
  await embeddings?.close()
  project?.remove()
  await db?.drop()
})

test('rows get the vector of their text, in one request per batch; unchanged text costs nothing', async () => {
  await db.sql`INSERT INTO notes SELECT g, 'title ' || g, 'body ' || g, 0 FROM generate_series(1, 50) g`
  await waitFor('50 documents with vectors', () => server.documents('notes').filter((d) => d.vector).length === 50)
    .catch((e) => {
      throw new Error(e.message + stream.logs.filter((l) => /warn|error/.test(l)).slice(0, 3).join('\n'))
    })
  const doc7 = server.documents('notes').find((d) => d.id === 7)!
  const want = expectedVector('title 7\n\nbody 7')
  ;(doc7.vector as number[]).forEach((x, i) => expect(x).toBeCloseTo(want[i], 5))
  expect(embeddings.requests.every((r) => r.authorization === 'Bearer embed-key')).toBe(true)
  expect(embeddings.requests.length).toBeLessThanOrEqual(2) // one transaction: one batch, ≤ 2 provider calls
  const before = embeddings.requests.reduce((n, r) => n + r.input.length, 0)

  await db.sql`UPDATE notes SET stars = 5 WHERE id <= 10` // the embedded text did not change
  await waitFor('the updates', () => server.documents('notes').filter((d) => d.stars === 5).length === 10)
  expect(embeddings.requests.reduce((n, r) => n + r.input.length, 0)).toBe(before)

  await db.sql`UPDATE notes SET body = 'changed' WHERE id = 1`
  await waitFor('the new vector', () => {
    const v = server.documents('notes').find((d) => d.id === 1)?.vector as number[]
    return v && Math.abs(v[0] - expectedVector('title 1\n\nchanged')[0]) < 1e-5
  })
  expect(embeddings.requests.reduce((n, r) => n + r.input.length, 0)).toBe(before + 1)
})
