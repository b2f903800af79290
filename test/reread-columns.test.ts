// The stream's re-read (a generated column, an unchanged TOAST value) reads the columns its mapping needs, as
// backfill, `dlq retry` and `verify` do: not every column of the table. A sync role granted only those columns (a
// table with a password hash, say) must be able to stream, and a big column no mapping uses is not read again.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { runCli } from './harness/cli.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'
import { docsById, type RunningStream, startStream } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'
import type { Mapping } from '../src/config/load.ts'
import type { Intent } from '../src/pipeline/changes.ts'
import { rereadIntents } from '../src/pipeline/row-identity.ts'
import { rowKey } from '../src/pipeline/row-key.ts'
import type { DeadLetter } from '../src/postgres/dlq.ts'
import { encodeVersion } from '../src/types.ts'
import { parseNamespaceTemplate } from '../src/config/row-documents.ts'
import { intentNamespace } from '../src/pipeline/intent-namespace.ts'
import { createIdentityRunner } from '../src/pipeline/transform/runner.ts'

let db: TestDatabase
let server: LocalServer
let admin: Project
let limited: Project
let stream: RunningStream | undefined
const role = `sync_${process.pid}_${Date.now() % 100000}`

beforeAll(async () => {
  db = await testDatabase('rereadcols')
  server = await startLocalServer()
  await db.sql.unsafe(`
    CREATE TABLE accounts (id int PRIMARY KEY, price int, qty int, total int GENERATED ALWAYS AS (price * qty) STORED,
                           password_hash text);
    CREATE TABLE orders (id int PRIMARY KEY, price int, qty int);
    CREATE TABLE ratios (id int PRIMARY KEY, price int, ratio float8 GENERATED ALWAYS AS (price / 4.0) STORED);
    CREATE TABLE labels (id int PRIMARY KEY, name text, code varchar(20) GENERATED ALWAYS AS (upper(left(name, 20)))
                         STORED);
    CREATE ROLE ${role} LOGIN REPLICATION;
  `)
  const migrations = {
    '001_accounts.toml': migration({ name: 'accounts', table: 'accounts', columns: ['price', 'total'] }),
    '002_ratios.toml': migration({ name: 'ratios', table: 'ratios', columns: ['ratio'] }),
    '003_orders.toml': migration({ name: 'orders', table: 'orders' }),
    '004_labels.toml': migration({ name: 'labels', table: 'labels', columns: ['code'] }),
  }
  admin = makeProject({ databaseUrl: db.url, turbopufferUrl: server.url, migrations })
  expect((await runCli(['-c', admin.config, 'migrate'])).code).toBe(0)
  // least privilege: the columns the mapping needs, and puffgres's own state
  await db.sql.unsafe(`
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role};
    REVOKE ALL ON accounts FROM ${role};
    GRANT SELECT (id, price, total) ON accounts TO ${role};
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${role};
  `)
  const url = db.url.replace('postgres://postgres@', `postgres://${role}@`)
  limited = makeProject({ databaseUrl: url, turbopufferUrl: server.url, migrations })
}, 60_000)

afterAll(async () => {
  await stream?.stop()
  await server?.stop()
  admin?.remove()
  limited?.remove()
  await db?.drop()
  const { sharedCluster } = await import('./harness/pg.ts')
  const postgres = (await import('postgres')).default
  const a = postgres((await sharedCluster()).url(), { max: 1, onnotice: () => {} })
  await a.unsafe(`DROP ROLE IF EXISTS ${role}`).catch(() => {})
  await a.end()
})

test('a role granted only the needed columns backfills, and streams rows with a generated column', async () => {
  await db.sql`INSERT INTO accounts (id, price, qty, password_hash) VALUES (1, 2, 3, 'secret')`
  // backfill reads the needed columns only: the grant is enough
  const b = await runCli(['-c', limited.config, 'backfill', 'accounts'])
  expect(b.err).toBe('')
  expect(b.code).toBe(0)
  const docs = () => docsById(server.documents('accounts'))
  expect(docs().get(1)).toEqual({ price: 2, total: 6 })

  stream = startStream(limited.config)
  await waitFor(
    'the slot is active',
    async () => (await db.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'puffgres' AND active`).length > 0,
  )
  // every insert and update of this table is re-read for `total`: with the table's every column, it was refused
  await db.sql`INSERT INTO accounts (id, price, qty, password_hash) VALUES (2, 5, 5, ${'x'.repeat(100_000)})`
  await db.sql`UPDATE accounts SET qty = 10 WHERE id = 1`
  await waitFor('2 in, 1 updated', () => docs().get(2)?.total === 25 && docs().get(1)?.total === 20, 20_000)
  expect(docs().get(2)).toEqual({ price: 5, total: 25 })
  expect(stream.logs.join('\n')).not.toContain('permission denied')
})

test('a re-read of 40,000 two-column keys (past 65,535 parameters and the planner stack) is read in chunks', async () => {
  // a batch of 40,000 changes to a table with a two-column key and a generated column: 80,000 key texts
  const n = 40_000
  await db.sql.unsafe(`
    CREATE TABLE pairs (a int, b int, v int, w int GENERATED ALWAYS AS (v * 2) STORED, PRIMARY KEY (a, b));
    INSERT INTO pairs (a, b, v) SELECT g, g, g FROM generate_series(1, ${n}) g;`)
  const [{ oid }] = await db.sql`SELECT 'pairs'::regclass::oid::int AS oid`
  const mapping = { name: 'pairs', schema: 'public', table: 'pairs', idColumns: ['a', 'b'] } as unknown as Mapping
  const route = { mapping, keyTypes: ['integer', 'integer'] }
  const intents: Intent[] = Array.from({ length: n }, (_, k) => {
    const row = { a: k + 1, b: k + 1 }
    const key = rowKey(mapping, row, [String(k + 1), String(k + 1)])
    return {
      route,
      id: key.id,
      kind: 'upsert',
      event: { type: 'update', op: 'update', new: row },
      version: encodeVersion(1n),
      lsn: 1n,
      reread: true,
      relid: oid,
      key,
    } as unknown as Intent
  })
  const dead: DeadLetter[] = []
  const out = await rereadIntents(db.sql, intents, dead)
  expect(dead).toEqual([])
  expect(out).toHaveLength(n)
  expect(out[n - 1].event.new).toEqual({ a: n, b: n, v: n, w: 2 * n })
})

test("a generated column is declared in the streamed writes' schema (its type from the table, not from a value)", async () => {
  // pgoutput's relation message leaves generated columns out, so their types must come from the catalog: else the
  // first value pins the type (1 pins int) and a later 1.5 is refused (the strict local server, like turbopuffer)
  stream ??= startStream(limited.config)
  await waitFor(
    'the slot is active',
    async () => (await db.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'puffgres' AND active`).length > 0,
  )
  await db.sql`INSERT INTO ratios (id, price) VALUES (1, 4)`
  const docs = () => docsById(server.documents('ratios'))
  await waitFor('1 in', () => docs().get(1)?.ratio === 1)
  await db.sql`INSERT INTO ratios (id, price) VALUES (2, 6)`
  await waitFor(
    '2 in, or a dead letter',
    async () => docs().get(2)?.ratio === 1.5 || (await db.sql`SELECT 1 FROM __puffgres_dlq`).length > 0,
  )
  expect(await db.sql`SELECT error FROM __puffgres_dlq`).toEqual([])
  expect(docs().get(2)).toEqual({ ratio: 1.5 })
})

test('a generated column added while run streams is in the documents of later changes', async () => {
  // a mapping of every column: the column added later is needed too, and pgoutput does not send it
  stream ??= startStream(limited.config)
  await waitFor(
    'the slot is active',
    async () => (await db.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'puffgres' AND active`).length > 0,
  )
  await db.sql`INSERT INTO orders VALUES (1, 2, 3)`
  const docs = () => docsById(server.documents('orders'))
  await waitFor('1 in', () => docs().get(1)?.qty === 3)
  await db.sql`ALTER TABLE orders ADD COLUMN total int GENERATED ALWAYS AS (price * qty) STORED`
  await db.sql.unsafe(`GRANT SELECT ON orders TO ${role}`)
  await db.sql`INSERT INTO orders VALUES (2, 5, 5)`
  await db.sql`UPDATE orders SET qty = 4 WHERE id = 1`
  await waitFor('2 in, 1 updated', () => docs().get(2)?.qty === 5 && docs().get(1)?.qty === 4)
  expect(docs().get(2)).toEqual({ price: 5, qty: 5, total: 25 })
  expect(docs().get(1)).toEqual({ price: 2, qty: 4, total: 8 })
})

test('a generated varchar(n) column is declared filterable by the stream, as backfill declares it', async () => {
  // its typmod comes from the catalog as backfill's does: without it varchar(20) looked unbounded (filterable: false)
  stream ??= startStream(limited.config)
  await waitFor(
    'the slot is active',
    async () => (await db.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'puffgres' AND active`).length > 0,
  )
  await db.sql`INSERT INTO labels (id, name) VALUES (1, 'abc')`
  await waitFor('1 in', () => docsById(server.documents('labels')).get(1)?.code === 'ABC')
  const res = await fetch(`${server.url}/v1/namespaces/labels/schema`, { headers: { authorization: 'Bearer k' } })
  expect(res.status).toBe(200)
  expect((await res.json()).code).toEqual({ type: 'string', filterable: true })
})

test("a re-read row's write schema is typed from the columns it was read with, not the change's older ones", async () => {
  // a column added after the change (its relation message carried the old shape) is in the re-read row: its type
  // must be declared from the catalog, or turbopuffer would infer one from the first value and keep it
  await db.sql`CREATE TABLE reshaped (id int PRIMARY KEY, v int)`
  await db.sql`INSERT INTO reshaped VALUES (1, 1)`
  const [{ oid }] = await db.sql`SELECT 'reshaped'::regclass::oid::int AS oid`
  await db.sql`ALTER TABLE reshaped ADD COLUMN added_at timestamptz DEFAULT now()`
  const mapping = { name: 'reshaped', schema: 'public', table: 'reshaped', idColumns: ['id'] } as unknown as Mapping
  const old = [{ name: 'id', typeOid: 23 }, { name: 'v', typeOid: 23 }]
  const intent = {
    route: { mapping, keyTypes: ['integer'] },
    id: 1,
    kind: 'upsert',
    event: { type: 'update', op: 'update', new: { id: 1, v: 1 } },
    version: encodeVersion(1n),
    lsn: 1n,
    reread: true,
    relid: oid,
    columns: old,
    key: rowKey(mapping, { id: 1 }, ['1']),
  } as unknown as Intent
  const [out] = await rereadIntents(db.sql, [intent], [])
  expect(Object.keys(out.event.new!)).toEqual(['id', 'v', 'added_at'])
  expect(out.columns?.map((c) => c.name)).toEqual(['id', 'v', 'added_at'])
})

test('a re-read tenant move whose row is gone is a delete in the namespace it leaves, not an upsert of its new values there', async () => {
  // the row moved from t_a to t_b, its change lacked a TOAST value, and it was deleted before the re-read: its
  // streamed delete goes to t_b, so this intent must take the document out of t_a (an upsert there left it readable)
  await db.sql`CREATE TABLE moved (id int PRIMARY KEY, ws text, body text)`
  const [{ oid }] = await db.sql`SELECT 'moved'::regclass::oid::int AS oid`
  const mapping = {
    name: 'moved',
    schema: 'public',
    table: 'moved',
    idColumns: ['id'],
    namespace: 't_{ws}',
    namespaceTemplate: parseNamespaceTemplate('t_{ws}'),
  } as unknown as Mapping
  const intent = {
    route: { mapping, keyTypes: ['integer'] },
    id: 1,
    kind: 'upsert',
    event: { type: 'update', op: 'update', id: 1, old: { id: 1, ws: 'a', body: 'x' }, new: { id: 1, ws: 'b' } },
    version: encodeVersion(1n),
    lsn: 1n,
    reread: true,
    relid: oid,
    key: rowKey(mapping, { id: 1 }, ['1']),
    leave: ['t_a'],
  } as unknown as Intent
  const [out] = await rereadIntents(db.sql, [intent], [])
  expect(out.kind).toBe('delete')
  expect(intentNamespace(out)).toEqual({ ok: true, namespace: 't_a' })
  const [res] = await createIdentityRunner({ mapping: 'moved' }).run([out.event])
  expect(res).toEqual({ ok: true, action: { type: 'delete', id: 1 } })
})
