// backfill of rows holding a value it cannot decode: a timestamptz outside a JS Date, bytes that are not UTF-8 in a
// SQL_ASCII database. Each is a dead letter naming its column for the mappings that read it; the other rows, and
// the mappings that do not read it, are backfilled (issue 13: a bad row must become a dead letter).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import postgres from 'postgres'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { runCli } from './harness/cli.ts'
import { sharedCluster, type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'
import { docsById } from './harness/stream.ts'

let server: LocalServer

beforeAll(async () => {
  server = await startLocalServer()
})

afterAll(async () => {
  await server?.stop()
})

const docs = (ns: string) => docsById(server.documents(ns))

describe('backfill of a value outside a JS Date', () => {
  let db: TestDatabase
  let project: Project

  beforeAll(async () => {
    db = await testDatabase('bf_undecodable')
    await db.sql.unsafe(`
      CREATE TABLE bev (id int PRIMARY KEY, name text, at timestamptz);
      INSERT INTO bev VALUES (1, 'a', '2024-01-01 00:00:00+00'), (2, 'b', '290000-01-01'), (3, 'c', '2024-01-03 00:00:00+00');
    `)
    project = makeProject({
      databaseUrl: db.url,
      turbopufferUrl: server.url,
      migrations: {
        '001_bev_name.toml': migration({ name: 'bev_name', table: 'bev', columns: ['name'] }),
        '002_bev_at.toml': migration({ name: 'bev_at', table: 'bev', columns: ['at'] }),
      },
    })
    expect((await runCli(['-c', project.config, 'migrate'])).code).toBe(0)
  })

  afterAll(async () => {
    project?.remove()
    await db?.drop()
  })

  test('a dead letter for the mapping that reads it; every row for the one that does not', async () => {
    for (const m of ['bev_name', 'bev_at']) {
      const r = await runCli(['-c', project.config, 'backfill', m])
      if (r.code !== 0) throw new Error(`backfill exited ${r.code}: ${r.err}`)
    }
    expect([...docs('bev_name').keys()].sort()).toEqual([1, 2, 3])
    expect([...docs('bev_at').keys()].sort()).toEqual([1, 3])
    const dead = await db.sql<{ mapping: string; doc_id: string; error: string }[]>`
      SELECT mapping, doc_id, error FROM __puffgres_dlq ORDER BY id`
    expect(dead.map((d) => [d.mapping, d.doc_id])).toEqual([['bev_at', '2']])
    expect(dead[0].error).toMatch(/column "at": .*outside the range of a JS Date/)
  })
})

describe('backfill of a SQL_ASCII database', () => {
  let name = ''
  let sql: postgres.Sql
  let proj: Project

  beforeAll(async () => {
    const cluster = await sharedCluster()
    name = `bf_ascii_${process.pid}_${Date.now() % 100000}`
    const admin = postgres(cluster.url(), { max: 1, onnotice: () => {} })
    await admin.unsafe(
      `CREATE DATABASE "${name}" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
    )
    await admin.end()
    sql = postgres(cluster.url(name), { max: 2, onnotice: () => {} })
    // E'\xe9' and E'\xef': single Latin-1 bytes, not UTF-8 (SQL_ASCII stores whatever bytes it gets)
    await sql.unsafe(`
      CREATE TABLE words (id int PRIMARY KEY, word text, other text);
      INSERT INTO words VALUES (1, E'caf\\xe9', 'x'), (2, 'fine', E'na\\xefve'), (3, 'ok', 'y'), (4, 'déjà', 'z');
      -- a text key that is not UTF-8, the last row of a full first page (10 rows with --batch-size 1)
      CREATE TABLE tags (name text PRIMARY KEY, v int);
      INSERT INTO tags SELECT 'k0' || i, i FROM generate_series(0, 8) i;
      INSERT INTO tags VALUES (E'k\\xe9', 9), ('l1', 10);
    `)
    proj = makeProject({
      databaseUrl: cluster.url(name),
      turbopufferUrl: server.url,
      migrations: {
        '001_words.toml': migration({ name: 'ascii_words', table: 'words', columns: ['word'] }),
        '002_tags.toml': migration({ name: 'ascii_tags', table: 'tags', id: 'name', columns: ['v'] }),
      },
    })
    expect((await runCli(['-c', proj.config, 'migrate'])).code).toBe(0)
  })

  afterAll(async () => {
    await sql?.end({ timeout: 1 })
    proj?.remove()
    const admin = postgres((await sharedCluster()).url(), { max: 1, onnotice: () => {} })
    await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => {})
    await admin.end()
  })

  test('bytes that are not UTF-8: a dead letter where the mapping reads them, the other rows backfilled', async () => {
    const r = await runCli(['-c', proj.config, 'backfill', 'ascii_words'])
    if (r.code !== 0) throw new Error(`backfill exited ${r.code}: ${r.err}`)
    const got = docs('ascii_words')
    expect([...got.keys()].sort()).toEqual([2, 3, 4])
    expect(got.get(2)).toEqual({ word: 'fine' })
    // UTF-8 text stored in a SQL_ASCII database reads back as itself
    expect(got.get(4)).toEqual({ word: 'déjà' })
    const dead = await sql<{ doc_id: string; error: string }[]>`SELECT doc_id, error FROM __puffgres_dlq`
    expect(dead.map((d) => d.doc_id)).toEqual(['1'])
    expect(dead[0].error).toMatch(/column "word": the value is not valid UTF-8/)
  })
  test('a key that is not UTF-8 ends a full page: a dead letter, and paging goes on after it', async () => {
    const r = await runCli(['-c', proj.config, 'backfill', 'ascii_tags', '--batch-size', '1'])
    if (r.code !== 0) throw new Error(`backfill exited ${r.code}: ${r.err}`)
    const got = docs('ascii_tags')
    expect([...got.keys()].sort()).toEqual([...Array.from({ length: 9 }, (_, i) => `k0${i}`), 'l1'])
    const dead = await sql<{ error: string }[]>`SELECT error FROM __puffgres_dlq WHERE mapping = 'ascii_tags'`
    expect(dead).toHaveLength(1)
    expect(dead[0].error).toMatch(/column "name": the value is not valid UTF-8/)
  }, 60_000)
})
