// Embeddings paid once with a namespace per tenant (issues 24 and 25): the stored hash of a row's document is looked
// up in the namespace the row's values name, so an update of another column sends no text to the provider, and a row
// that moved to another tenant (nothing stored there yet) is embedded again and leaves its old namespace.
import { afterAll, expect, test } from 'bun:test'
import { type EmbeddingServer, expectedVector, startEmbeddingServer } from './fixtures/transforms/embedding-server.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

let embeddings: EmbeddingServer

const pipe = usePipeline({
  name: 'tenantembed',
  prepare: async () => {
    embeddings = await startEmbeddingServer('embed-key')
  },
  sql: `CREATE TABLE notes (id int PRIMARY KEY, ws text NOT NULL, title text, stars int DEFAULT 0);
    ALTER TABLE notes REPLICA IDENTITY FULL;`,
  extra: () =>
    `[providers.embeddings]
type = "openai"
model = "test-model"
api_key = "embed-key"
base_url = "${embeddings.url}"
`,
  migrations: {
    '001_notes.toml': migration({
      name: 'notes',
      table: 'notes',
      namespace: 'notes_{ws}',
      extra: '[mapping.embedding]\nsource = ["title"]\n',
    }),
  },
  stream: true,
})

afterAll(async () => {
  await embeddings?.close()
})

/** Texts sent to the provider so far. */
const sent = () => embeddings.requests.reduce((n, r) => n + r.input.length, 0)

test('a tenant row is embedded once; an update of another column sends no text; a move embeds it in its new tenant', async () => {
  await pipe.db.sql`INSERT INTO notes (id, ws, title) VALUES (1, 'a', 'hello there')`
  await waitFor('note 1 in notes_a', () => pipe.docs('notes_a').has(1))
  expect(pipe.docs('notes_a').get(1)!.vector).toEqual(expectedVector('hello there'))
  expect(sent()).toBe(1)
  // a new `run` process: no in-memory cache, only the stored hash can spare the provider
  await pipe.stream.stop()
  await pipe.startStream()
  await pipe.db.sql`UPDATE notes SET stars = 5 WHERE id = 1`
  await waitFor('stars = 5', () => pipe.docs('notes_a').get(1)?.stars === 5)
  expect(sent()).toBe(1) // its stored hash, found in notes_a
  await pipe.db.sql`UPDATE notes SET ws = 'b' WHERE id = 1`
  await waitFor('note 1 in notes_b', () => pipe.docs('notes_b').has(1))
  expect(pipe.docs('notes_b').get(1)!.vector).toEqual(expectedVector('hello there'))
  expect(pipe.docs('notes_a').has(1)).toBe(false)
  expect(sent()).toBe(2) // nothing stored in notes_b: embedded for it
  expect(await pipe.deadLetters()).toEqual([])
})
