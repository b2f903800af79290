// One home per job (docs/ARCHITECTURE.md, invariant 12), through the stream itself: each mapping's transform gets
// its own copy of a row; membership types a domain by its base type on every path, as the decoder does; a row whose
// predicate is NULL has no document (the route's own rule, not the evaluator's).
import { beforeAll, describe, expect, test } from 'bun:test'
import { loadConfig } from '../src/config/load.ts'
import { deleteIntent } from '../src/pipeline/row-identity.ts'
import { documentKey } from '../src/pipeline/row-key.ts'
import { buildRoutes } from '../src/pipeline/routes.ts'
import { writeIntents } from '../src/pipeline/writer.ts'
import { parseLsn } from '../src/postgres/lsn.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import { VERSION_ATTR } from '../src/types.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

// mutates everything it can reach of its event: another mapping of the table must not see any of it
const MUTATING = `export default function (event) {
  if (event.type === 'delete') return { type: 'delete' }
  const row = event.new
  row.name = row.name.toUpperCase()
  delete row.secret
  row.tags.push('mutated')
  return { type: 'upsert', attributes: { name: row.name } }
}
`

const pipe = usePipeline({
  name: 'onepath_stream',
  sql: `CREATE TABLE items (id int PRIMARY KEY, name text, secret text, tags text[]);
    CREATE DOMAIN myint AS integer;
    CREATE TABLE dom (id int PRIMARY KEY, m myint, n information_schema.cardinal_number, note text);
    CREATE TABLE nulls (id int PRIMARY KEY, status text, note text);
    CREATE TABLE replay (id int PRIMARY KEY, name text);
    INSERT INTO dom VALUES (1, 5, 1, 'seed m'), (2, 1, 7, 'seed n'), (3, 1, 1, 'seed none');`,
  migrations: {
    '001_upper.toml': migration({ name: 'upper', table: 'items', transform: 'transforms/mutate.ts' }),
    '002_plain.toml': migration({ name: 'plain', table: 'items', columns: ['name', 'secret', 'tags'] }),
    '003_dom.toml': migration({ name: 'dom', table: 'dom', columns: ['note'], membership: "m = '05' OR n = '7'" }),
    '004_domgt.toml': migration({ name: 'domgt', table: 'dom', columns: ['note'], membership: 'm > 4' }),
    '005_nulls.toml': migration({ name: 'nulls', table: 'nulls', columns: ['note'], membership: "status = 'on'" }),
    '006_replay.toml': migration({ name: 'replay', table: 'replay' }),
  },
  files: { 'transforms/mutate.ts': MUTATING },
})

beforeAll(async () => {
  await pipe.startStream()
})

describe('each mapping gets its own copy of the row', () => {
  test('a transform that mutates event.new does not change what another mapping of the table stores', async () => {
    await pipe.db.sql`INSERT INTO items VALUES (1, 'alice', 's3cret', '{a,b}')`
    await waitFor('both documents', () => pipe.docs('upper').size === 1 && pipe.docs('plain').size === 1)
    expect(pipe.docs('upper').get(1)).toMatchObject({ name: 'ALICE' })
    expect(pipe.docs('plain').get(1)).toMatchObject({ name: 'alice', secret: 's3cret', tags: ['a', 'b'] })
    await pipe.db.sql`UPDATE items SET name = 'bob' WHERE id = 1`
    await waitFor(
      'the update',
      () => pipe.docs('plain').get(1)?.name === 'bob' && pipe.docs('upper').get(1)?.name === 'BOB',
    )
    expect(pipe.docs('plain').get(1)).toMatchObject({ name: 'bob', secret: 's3cret', tags: ['a', 'b'] })
  })
})

describe('membership on a domain column', () => {
  test('migrate accepted it, backfill and the stream agree, nothing is dead-lettered', async () => {
    for (const m of ['dom', 'domgt']) expect((await pipe.cli('backfill', m)).code).toBe(0)
    expect([...pipe.docs('dom').keys()].sort()).toEqual([1, 2])
    expect([...pipe.docs('domgt').keys()].sort()).toEqual([1])
    await pipe.db.sql`INSERT INTO dom VALUES (4, 5, 1, 'streamed m'), (5, 2, 7, 'streamed n'), (6, 2, 2, 'none')`
    await pipe.db.sql`UPDATE dom SET m = 9 WHERE id = 3`
    await waitFor('the streamed members', () => pipe.docs('dom').size === 4 && pipe.docs('domgt').size === 3)
    expect([...pipe.docs('dom').keys()].sort()).toEqual([1, 2, 4, 5])
    expect([...pipe.docs('domgt').keys()].sort()).toEqual([1, 3, 4])
    expect(await pipe.deadLetters('dom')).toEqual([])
    expect(await pipe.deadLetters('domgt')).toEqual([])
  })
})

describe('a NULL predicate is not membership (the stream, not the evaluator)', () => {
  test('a row whose predicate is NULL has no document; a member updated to NULL loses its document', async () => {
    await pipe.db.sql`INSERT INTO nulls VALUES (1, NULL, 'null'), (2, 'on', 'member'), (3, 'off', 'not')`
    await waitFor('the member', () => pipe.docs('nulls').has(2))
    await pipe.db.sql`UPDATE nulls SET status = NULL WHERE id = 2`
    await pipe.db.sql`INSERT INTO nulls VALUES (4, 'on', 'a later member')`
    // the later member landed: the update before it did too (one stream, commit order)
    await waitFor('the later member', () => pipe.docs('nulls').has(4))
    await waitFor('the document of the row gone NULL', () => !pipe.docs('nulls').has(2))
    expect([...pipe.docs('nulls').keys()]).toEqual([4])
  })
})

describe('an older delete replayed after a newer upsert (docs/ARCHITECTURE.md, invariant 2)', () => {
  test('does not remove the document: the delete is written conditionally on its version', async () => {
    await pipe.db.sql`INSERT INTO replay VALUES (1, 'first')`
    await waitFor('the document', () => pipe.docs('replay').has(1))
    // the row's delete, as the stream writes it, at the position just before a backfill's snapshot (the stream coming
    // back after a crash replays it after the backfill wrote the row again at that snapshot)
    const [{ lsn }] = await pipe.db.sql<{ lsn: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS lsn`
    await pipe.db.sql`UPDATE replay SET name = 'again' WHERE id = 1`
    expect((await pipe.cli('backfill', 'replay')).code).toBe(0)
    const version = () => pipe.server.documents('replay').find((d) => d.id === 1)?.[VERSION_ATTR]
    const backfilled = version()
    const log = { debug() {}, info() {}, warn() {}, error() {} }
    const config = loadConfig(pipe.project.config)
    const routes = await buildRoutes(
      { ...config, mappings: config.mappings.filter((m) => m.name === 'replay') },
      pipe.db.sql,
      log,
    )
    const sink = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
    try {
      const older = deleteIntent(routes[0], documentKey(routes[0].mapping, 1), parseLsn(lsn))
      const w = await writeIntents([older], [], { sink, sql: pipe.db.sql, log })
      expect(w.skipped).toBe(1)
    } finally {
      for (const r of routes) await r.runner.close()
    }
    expect(pipe.docs('replay').get(1)?.name).toBe('again')
    expect(version()).toBe(backfilled)
  })
})
