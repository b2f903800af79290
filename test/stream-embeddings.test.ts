// `[mapping.embedding]` end to end: the stream embeds the source columns through an OpenAI-compatible provider (a
// local server speaking its API), batching rows into few requests and not paying again for unchanged text.
import { afterAll, expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'
import {
  type EmbeddingServer,
  expectedVector,
  providerToml,
  startEmbeddingServer,
} from './fixtures/transforms/embedding-server.ts'

let embeddings: EmbeddingServer

const pipe = usePipeline({
  name: 'embed',
  prepare: async () => {
    embeddings = await startEmbeddingServer('embed-key')
  },
  sql: 'CREATE TABLE notes (id int PRIMARY KEY, title text, body text, stars int)',
  extra: () => providerToml(embeddings),
  migrations: {
    '001_notes.toml': migration({
      name: 'notes',
      table: 'notes',
      extra: '[mapping.embedding]\nsource = ["title", "body"]',
    }).replace('[target]', '[target]\ndistance_metric = "cosine_distance"'),
  },
  stream: true,
})

afterAll(async () => {
  await embeddings?.close()
})

test('rows get the vector of their text, in one request per batch; unchanged text costs nothing', async () => {
  await pipe.db.sql`INSERT INTO notes SELECT g, 'title ' || g, 'body ' || g, 0 FROM generate_series(1, 50) g`
  await waitFor('50 documents with vectors', () => pipe.server.documents('notes').filter((d) => d.vector).length === 50)
    .catch((e) => {
      throw new Error(e.message + pipe.stream.logs.filter((l) => /warn|error/.test(l)).slice(0, 3).join('\n'))
    })
  const doc7 = pipe.server.documents('notes').find((d) => d.id === 7)!
  const want = expectedVector('title 7\n\nbody 7')
  ;(doc7.vector as number[]).forEach((x, i) => expect(x).toBeCloseTo(want[i], 5))
  expect(embeddings.requests.every((r) => r.authorization === 'Bearer embed-key')).toBe(true)
  expect(embeddings.requests.length).toBeLessThanOrEqual(2) // one transaction: one batch, ≤ 2 provider calls
  const before = embeddings.requests.reduce((n, r) => n + r.input.length, 0)

  await pipe.db.sql`UPDATE notes SET stars = 5 WHERE id <= 10` // the embedded text did not change
  await waitFor('the updates', () => pipe.server.documents('notes').filter((d) => d.stars === 5).length === 10)
  expect(embeddings.requests.reduce((n, r) => n + r.input.length, 0)).toBe(before)

  await pipe.db.sql`UPDATE notes SET body = 'changed' WHERE id = 1`
  await waitFor('the new vector', () => {
    const v = pipe.server.documents('notes').find((d) => d.id === 1)?.vector as number[]
    return v && Math.abs(v[0] - expectedVector('title 1\n\nchanged')[0]) < 1e-5
  })
  expect(embeddings.requests.reduce((n, r) => n + r.input.length, 0)).toBe(before + 1)
})
