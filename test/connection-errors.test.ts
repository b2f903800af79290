// Every failure to reach or use PostgreSQL or turbopuffer is one line naming host, port and database (or the URL),
// never the password or key, saying what to check, with no stack trace (unless PUFFGRES_LOG=debug).
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { type RetryInfo, TurbopufferSink } from '../src/turbopuffer/sink.ts'
import { runCli } from './harness/cli.ts'
import { freePort, type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'

let db: TestDatabase
let server: LocalServer
const projects: Project[] = []
const SECRET = 'hunter2-secret'

/** A project with one mapping over `items`, connecting with `url` to turbopuffer at `tpuf`. */
function project(url: string, tpuf = server.url, apiKey = 'test-key'): Project {
  const p = makeProject({
    databaseUrl: url,
    turbopufferUrl: tpuf,
    migrations: { '001_items.toml': migration({ name: 'items', table: 'items' }) },
  })
  writeFileSync(p.config, readFileSync(p.config, 'utf8').replace('api_key = "test-key"', `api_key = "${apiKey}"`))
  projects.push(p)
  return p
}

/** The command's stderr: exactly one line, no stack, no secret. */
async function failure(args: string[]): Promise<string> {
  const r = await runCli(args)
  expect(r.code).toBe(1)
  expect(r.err.split('\n').length).toBe(1)
  expect(r.err).not.toContain(SECRET)
  expect(r.err).not.toMatch(/\n\s+at /)
  return r.err
}

beforeAll(async () => {
  db = await testDatabase('connerr')
  server = await startLocalServer({ apiKey: 'right-key' })
  await db.sql`CREATE TABLE items (id int PRIMARY KEY, name text)`
  await db.sql`INSERT INTO items VALUES (1, 'one')`
  // a role that needs a password (scram), and one without the REPLICATION attribute
  await db.sql.unsafe(`CREATE ROLE pw_user LOGIN PASSWORD 'right-password' SUPERUSER`)
  await db.sql.unsafe(`CREATE ROLE norepl_user LOGIN NOSUPERUSER NOREPLICATION`)
  const hba = join(db.cluster.dir, 'data', 'pg_hba.conf')
  writeFileSync(hba, `host all pw_user 127.0.0.1/32 scram-sha-256\n` + readFileSync(hba, 'utf8'))
  await db.sql`SELECT pg_reload_conf()`
}, 60_000)

afterAll(async () => {
  for (const p of projects) p.remove()
  await server?.stop()
  await db?.sql.unsafe('DROP OWNED BY pw_user, norepl_user').catch(() => {})
  await db?.sql.unsafe('DROP ROLE IF EXISTS pw_user').catch(() => {})
  await db?.sql.unsafe('DROP ROLE IF EXISTS norepl_user').catch(() => {})
  await db?.drop()
})

const port = () => db.cluster.port

test('unknown host', async () => {
  const p = project(`postgres://app:${SECRET}@nosuchhost.invalid:5432/shop`)
  expect(await failure(['-c', p.config, 'migrate'])).toBe(
    'error: cannot reach PostgreSQL at nosuchhost.invalid:5432 (database "shop", user "app"): host ' +
      '"nosuchhost.invalid" not found (DNS); check the host in the connection string ([postgres] connection_string' +
      ' / DATABASE_URL)',
  )
})

test('refused port', async () => {
  const free = await freePort()
  const p = project(`postgres://app:${SECRET}@127.0.0.1:${free}/shop`)
  expect(await failure(['-c', p.config, 'status'])).toBe(
    `error: cannot reach PostgreSQL at 127.0.0.1:${free} (database "shop", user "app"): connection refused; check ` +
      `that PostgreSQL runs there and listens on port ${free} (listen_addresses, firewall) and the host and port ` +
      'in the connection string ([postgres] connection_string / DATABASE_URL)',
  )
})

test('wrong password', async () => {
  const p = project(`postgres://pw_user:${SECRET}@127.0.0.1:${port()}/${db.name}`)
  expect(await failure(['-c', p.config, 'migrate'])).toBe(
    `error: PostgreSQL at 127.0.0.1:${port()} (database "${db.name}", user "pw_user") rejected the password for ` +
      'user "pw_user"; check the user and password in the connection string ([postgres] connection_string / ' +
      'DATABASE_URL)',
  )
})

test('missing database', async () => {
  const p = project(`postgres://postgres:${SECRET}@127.0.0.1:${port()}/no_such_db`)
  expect(await failure(['-c', p.config, 'backfill', 'items'])).toBe(
    `error: database "no_such_db" does not exist on PostgreSQL at 127.0.0.1:${port()}; create it or fix the ` +
      'database name in the connection string ([postgres] connection_string / DATABASE_URL)',
  )
})

test('no replication privilege', async () => {
  const ok = project(db.url)
  expect((await runCli(['-c', ok.config, 'migrate'])).code).toBe(0)
  await db.sql.unsafe('GRANT SELECT ON ALL TABLES IN SCHEMA public TO norepl_user')
  const p = project(`postgres://norepl_user:${SECRET}@127.0.0.1:${port()}/${db.name}`)
  const err = await failure(['-c', p.config, 'run'])
  // the middle is PostgreSQL's own words, which differ between versions
  const [head, tail] = [
    `error: user "norepl_user" may not use replication on PostgreSQL at 127.0.0.1:${port()} (database ` +
    `"${db.name}", user "norepl_user"): `,
    '; grant it with ALTER ROLE "norepl_user" WITH REPLICATION (managed services: their replication role, e.g. ' +
    'rds_replication)',
  ]
  expect({ head: err.slice(0, head.length), tail: err.slice(-tail.length) }).toEqual({ head, tail })
}, 60_000)

test('turbopuffer: wrong API key (401)', async () => {
  const p = project(db.url, server.url, SECRET)
  expect((await runCli(['-c', p.config, 'migrate'])).code).toBe(0)
  expect(await failure(['-c', p.config, 'backfill', 'items', '--restart'])).toBe(
    `error: turbopuffer at ${server.url} refused the API key (HTTP 401); check [turbopuffer] api_key ` +
      "(TURBOPUFFER_API_KEY) and that the key belongs to this region's organization",
  )
}, 60_000)

test('PUFFGRES_LOG=debug adds the stack trace (still without the password)', async () => {
  const p = project(`postgres://app:${SECRET}@nosuchhost.invalid:5432/shop`)
  const before = process.env.PUFFGRES_LOG
  process.env.PUFFGRES_LOG = 'debug'
  try {
    const r = await runCli(['-c', p.config, 'migrate'])
    expect(r.code).toBe(1)
    expect(r.err.split('\n')[0].startsWith('error: cannot reach PostgreSQL at nosuchhost.invalid:5432')).toBe(true)
    expect(r.err.split('\n').length).toBeGreaterThan(1)
    expect(r.err).not.toContain(SECRET)
  } finally {
    if (before === undefined) delete process.env.PUFFGRES_LOG
    else process.env.PUFFGRES_LOG = before
  }
})

test('TLS required by the connection string, not offered by the server', async () => {
  const p = project(`postgres://postgres:${SECRET}@127.0.0.1:${port()}/${db.name}?sslmode=require`)
  expect(await failure(['-c', p.config, 'migrate'])).toBe(
    `error: cannot reach PostgreSQL at 127.0.0.1:${port()} (database "${db.name}", user "postgres"): the TLS ` +
      'handshake failed (ECONNRESET), the server may not offer TLS; check sslmode in the connection string ' +
      "([postgres] connection_string / DATABASE_URL) (sslmode=disable for a server without TLS) and the server's " +
      'ssl setting',
  )
})

test('turbopuffer refusing connections: run and backfill retry, each warning naming the URL and what to check', async () => {
  const closed = await freePort()
  const stop = new AbortController()
  const retries: RetryInfo[] = []
  const sink = new TurbopufferSink({ api_key: SECRET, base_url: `http://127.0.0.1:${closed}` }, {
    backoff: { baseMs: 1, capMs: 5 },
    signal: stop.signal,
    onRetry: (info) => {
      retries.push(info)
      if (retries.length === 2) stop.abort(new Error('stopped'))
    },
  })
  await expect(sink.write('ns', [{ kind: 'upsert', id: 1, version: '1', attributes: {} }])).rejects.toThrow('stopped')
  expect(retries[0].error).toBe(
    `cannot reach turbopuffer at http://127.0.0.1:${closed}: connection refused; check [turbopuffer] base_url ` +
      '(TURBOPUFFER_BASE_URL) and that the server runs',
  )
})
