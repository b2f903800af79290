// `puffgres doctor` on a good setup (every line ✓, exit 0) and on a broken one (each problem a ✗ line naming the
// fix, exit 1), against real PostgreSQL and the local turbopuffer server.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { runCli } from './harness/cli.ts'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { type HttpServer, serveHttp } from '../src/runtime.ts'
import { freePort, type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'

let db: TestDatabase
let server: LocalServer
let provider: HttpServer // a stand-in embeddings provider (OpenAI-compatible)
const projects: Project[] = []

const TRANSFORM = `import { RowEvent, Action } from 'puffgres';
export default function transform(event: RowEvent): Action {
  return { type: 'upsert', attributes: { name: event.new.name } };
}
`

beforeAll(async () => {
  db = await testDatabase('doctor')
  server = await startLocalServer({ apiKey: 'test-key' })
  provider = await serveHttp({
    port: 0,
    hostname: '127.0.0.1',
    fetch: async (req) => {
      const body = await req.json() as { input: string[] }
      if (req.headers.get('authorization') !== 'Bearer emb-key') {
        return new Response('{"error":"bad key"}', { status: 401 })
      }
      return Response.json({ data: body.input.map((_, index) => ({ index, embedding: [0.1, 0.2, 0.3] })) })
    },
  })
  await db.sql`CREATE TABLE items (id int PRIMARY KEY, name text)`
  await db.sql`CREATE TABLE logs (id int, line text)` // no primary key: replica identity has no columns
}, 60_000)

afterAll(async () => {
  for (const p of projects) p.remove()
  await server?.stop()
  await provider?.stop()
  await db?.drop()
})

test('a good setup: every check passes, exit 0', async () => {
  const p = makeProject({
    databaseUrl: db.url,
    turbopufferUrl: server.url,
    extra: '[providers.embeddings]\ntype = "openai"\nmodel = "tiny"\napi_key = "emb-key"\n' +
      `base_url = "http://127.0.0.1:${provider.port}"\n`,
    migrations: { '001_items.toml': migration({ name: 'items', table: 'items', transform: 'transforms/items.ts' }) },
    files: { 'transforms/items.ts': TRANSFORM },
  })
  projects.push(p)
  expect((await runCli(['-c', p.config, 'migrate'])).code).toBe(0)
  const r = await runCli(['-c', p.config, 'doctor'])
  const lines = r.out.split('\n')
  expect(lines.filter((l) => l.startsWith('✗'))).toEqual([])
  for (
    const name of [
      'connection',
      'wal_level',
      'replication privilege',
      'max_replication_slots',
      'max_wal_senders',
      'publication',
      'replication slot',
      'replica identity public.items',
      'turbopuffer',
      'transform items',
      'embeddings',
    ]
  ) {
    expect(lines.some((l) => l.startsWith(`✓ ${name}: `))).toBe(true)
  }
  expect(lines).toContain('✓ wal_level: logical')
  expect(lines).toContain(`✓ turbopuffer: ${server.url} accepts the API key`)
  expect(lines).toContain('✓ embeddings: openai tiny answers (3 dimensions)')
  expect(lines.at(-1)).toMatch(/^all \d+ checks passed$/)
  expect(r.code).toBe(0)
})

test('a broken setup: one ✗ line per problem with its fix, exit 1', async () => {
  const closed = await freePort()
  const p = makeProject({
    databaseUrl: db.url,
    turbopufferUrl: `http://127.0.0.1:${closed}`,
    extra: '[stream]\npublication = "doctor_pub"\n\n[providers.embeddings]\ntype = "openai"\nmodel = "tiny"\n' +
      `api_key = "wrong"\nbase_url = "http://127.0.0.1:${provider.port}"\n`,
    migrations: {
      '001_logs.toml': migration({ name: 'logs', table: 'logs', transform: 'transforms/broken.ts' }),
      '002_gone.toml': migration({ name: 'gone', table: 'no_such_table' }),
    },
    files: { 'transforms/broken.ts': 'throw new Error("broken at load")\nexport default () => ({})\n' },
  })
  projects.push(p)
  const r = await runCli(['-c', p.config, 'doctor'])
  expect(r.code).toBe(1)
  const failed = r.out.split('\n').filter((l) => l.startsWith('✗'))
  expect(failed).toEqual([
    '✗ publication: "doctor_pub" does not exist: run `puffgres migrate`',
    '✗ replica identity public.no_such_table: table public.no_such_table does not exist (mapping "gone", ' +
    'puffgres/migrations/002_gone.toml)',
    '✗ replica identity public.logs: default (primary key) with no key columns: deletes cannot be mapped; ' +
    'ALTER TABLE "public"."logs" REPLICA IDENTITY FULL (or add a primary key)',
    `✗ turbopuffer: cannot reach turbopuffer at http://127.0.0.1:${closed}: connection refused; check ` +
    '[turbopuffer] base_url (TURBOPUFFER_BASE_URL) and that the server runs',
    '✗ transform logs: transform transforms/broken.ts could not be loaded: broken at load',
    `✗ embeddings: openai tiny: embeddings (openai, tiny) refused by http://127.0.0.1:${provider.port}/embeddings: ` +
    'HTTP 401: bad key; check [providers.embeddings] (api_key, base_url, model)',
  ])
  expect(r.out.split('\n').at(-1)).toMatch(/^6 of \d+ checks failed$/)
})

test('a wrong API key and an unreachable PostgreSQL', async () => {
  const closed = await freePort()
  const p = makeProject({
    databaseUrl: `postgres://app:secret@127.0.0.1:${closed}/shop`,
    turbopufferUrl: server.url,
    migrations: { '001_items.toml': migration({ name: 'items', table: 'items' }) },
  })
  projects.push(p)
  p.write('puffgres.toml', readFileSync(p.config, 'utf8').replace('test-key', 'wrong-key'))
  const r = await runCli(['-c', p.config, 'doctor'])
  expect(r.code).toBe(1)
  expect(r.out).not.toContain('secret')
  expect(r.out.split('\n').filter((l) => l.startsWith('✗'))).toEqual([
    `✗ connection: cannot reach PostgreSQL at 127.0.0.1:${closed} (database "shop", user "app"): connection ` +
    `refused; check that PostgreSQL runs there and listens on port ${closed} (listen_addresses, firewall) and ` +
    'the host and port in the connection string ([postgres] connection_string / DATABASE_URL)',
    `✗ turbopuffer: turbopuffer at ${server.url} refused the API key (HTTP 401); check [turbopuffer] api_key ` +
    "(TURBOPUFFER_API_KEY) and that the key belongs to this region's organization",
  ])
})
