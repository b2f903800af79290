// The original puffgres's README (github.com/lucasgelfond/puffgres), followed word for word as a user would: its
// quick start, every command line of its CLI reference, its products migration with the TypeScript transform and
// the `[target.schema]` shorthand. Each command runs as a child process of the test's runtime, in the project
// folder, so this file run on Deno (scripts/test-deno.sh) walks it with `deno run -A src/cli.ts` from a folder
// without deno.json or package.json, as `deno run -A jsr:@puffgres/cli` would.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { connect } from '../src/postgres/connect.ts'
import { addDeadLetters } from '../src/postgres/dlq.ts'
import { cli, type CliRun, onDeno, startCli } from './harness/cli-child.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { waitFor } from './harness/wait.ts'

// --- the README's files, verbatim ---
const PUFFGRES_TOML = `[postgres]
connection_string = "\${DATABASE_URL}"

[turbopuffer]
api_key = "\${TURBOPUFFER_API_KEY}"
`

const USERS_MIGRATION = `[migration]
name = "users"
version = 1

[source]
table = "users"
schema = "public"

[mapping]
id = "id"                    # Column to use as document ID
columns = ["id", "name", "email", "bio", "created_at"]

# Optional: Only sync active users
# membership = "status = 'active'"

[target]
namespace = "users"          # turbopuffer namespace
`

const PRODUCTS_MIGRATION = `[migration]
name = "products"
version = 1

[source]
table = "products"
schema = "public"

[mapping]
id = "id"
columns = ["id", "name", "description", "price", "category"]

# Filter rows to sync
membership = "active = true AND deleted_at IS NULL"

# Custom transform (optional)
transform = "transforms/product_transform.ts"

[target]
namespace = "products"

# Schema hints for turbopuffer
[target.schema]
price = "float"
category = "string"
`

const TRANSFORM = `import { RowEvent, Action } from 'puffgres';

export default function transform(event: RowEvent): Action {
  if (event.type === 'delete') {
    return { type: 'delete', id: event.id };
  }

  const { id, name, description } = event.new;

  return {
    type: 'upsert',
    id,
    attributes: {
      name,
      description,
      // Combine fields for better search
      searchText: \`\${name} \${description}\`,
    },
  };
}
`

let db: TestDatabase
let server: LocalServer
let home: string
let project: string
let env: Record<string, string>

/** `puffgres <line>` in the project folder; the line is split on spaces, as a shell would here. */
const puffgres = (line: string): Promise<CliRun> => cli(line.split(' '), { cwd: project, env })
const docs = (ns: string) => new Map(server.documents(ns).map((d) => [Number(d.id), d]))
const ok = (r: CliRun) => {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.err}${r.out}`)
  return r
}

beforeAll(async () => {
  db = await testDatabase('readme')
  server = await startLocalServer()
  home = mkdtempSync(join(tmpdir(), 'puffgres-readme-'))
  project = join(home, 'my-project')
  // "1. Set up your environment" (the local turbopuffer server stands in for turbopuffer)
  env = { DATABASE_URL: db.url, TURBOPUFFER_API_KEY: 'your-turbopuffer-api-key', TURBOPUFFER_BASE_URL: server.url }
  await db.sql`CREATE TABLE users (id bigint PRIMARY KEY, name text, email text, bio text, created_at timestamptz
    DEFAULT now(), status text DEFAULT 'active')`
  await db.sql`INSERT INTO users (id, name, email, bio)
    SELECT g, 'user ' || g, 'u' || g || '@example.com', 'bio ' || g FROM generate_series(1, 1200) g`
  await db.sql`CREATE TABLE products (id int PRIMARY KEY, name text, description text, price numeric,
    category text, active boolean, deleted_at timestamptz)`
  await db.sql`INSERT INTO products VALUES (1, 'lamp', 'a desk lamp', 19.5, 'home', true, NULL),
    (2, 'chair', 'an old chair', 40, 'home', true, now()), (3, 'pen', 'a blue pen', 2.25, 'office', false, NULL)`
}, 60_000)

afterAll(async () => {
  await server?.stop()
  if (home) rmSync(home, { recursive: true, force: true })
  await db?.drop()
})

describe("the original README's quick start", () => {
  test('3. puffgres init my-project', async () => {
    ok(await cli(['init', 'my-project'], { cwd: home, env }))
    expect(existsSync(join(project, 'puffgres.toml'))).toBe(true)
    expect(existsSync(join(project, 'puffgres', 'migrations'))).toBe(true)
    expect(existsSync(join(project, 'puffgres', 'transforms'))).toBe(true)
    // the README's project starts without migrations: drop our scaffolded example
    rmSync(join(project, 'puffgres', 'migrations', '001_example.toml'))
  })

  test('4–6. puffgres.toml, 001_users.toml, puffgres migrate --dry-run, puffgres migrate', async () => {
    writeFileSync(join(project, 'puffgres.toml'), PUFFGRES_TOML)
    writeFileSync(join(project, 'puffgres', 'migrations', '001_users.toml'), USERS_MIGRATION)
    const dry = ok(await puffgres('migrate --dry-run'))
    expect(dry.out).toContain('dry run')
    ok(await puffgres('migrate'))
    expect((await puffgres('migrate')).out).toContain('up to date')
  })

  test('7. puffgres backfill users, --batch-size 500, --resume', async () => {
    ok(await puffgres('backfill users --batch-size 500'))
    expect(docs('users').size).toBe(1200)
    expect(docs('users').get(7)).toMatchObject({ name: 'user 7', email: 'u7@example.com', bio: 'bio 7' })
    const resumed = ok(await puffgres('backfill users --resume'))
    expect(resumed.out).toContain('nothing to resume')
    ok(await puffgres('backfill users'))
  }, 120_000)

  // A slot of another name than the one puffgres already streamed through would start after a gap: refused, with what to do
  test('puffgres run --slot my-slot (a new slot after streaming through another): refused with the fix', async () => {
    const r = await cli(['run', '--slot', 'my-slot'], { cwd: project, env })
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^error: replication slot "my_slot" does not exist, but puffgres had written changes up to /m)
    expect(r.err).toMatch(/--create-slot true/)
  })

  // "8. Start real-time sync" and each line of `puffgres run` in the CLI reference
  for (
    const [line, id] of [
      ['run', 2001],
      ['run --create-slot', 2003],
      ['run --poll-interval-ms 500', 2004],
      ['run --create-slot=false', 2005],
      // a slot of another name, after puffgres streamed through "puffgres": told to create it, it does (then warns)
      ['run --slot my-slot --create-slot', 2002],
      ['run --no-create-slot --slot my-slot', 2006],
    ] as const
  ) {
    test(`puffgres ${line}`, async () => {
      const p = startCli(line.split(' '), { cwd: project, env })
      try {
        // the stream is up once a change made now reaches turbopuffer
        await waitFor(`${line}: a change streamed`, async () => {
          // an update each time: the stream may start (a new slot) after the first insert
          await db.sql`INSERT INTO users (id, name) VALUES (${id}, ${'live ' + id})
            ON CONFLICT (id) DO UPDATE SET bio = clock_timestamp()::text`
          return docs('users').get(id)?.name === `live ${id}` || /^error/m.test(p.output())
        }, 60_000)
        expect(p.output()).not.toMatch(/^error/m)
      } finally {
        p.kill('SIGTERM')
      }
      // SIGTERM: finishes the batches in flight, says so, exits 0. (Deno's node:child_process reports a child it
      // signalled as killed, code null, even when the child handled the signal and exited 0.)
      const r = await p.done
      expect(r.err).toMatch(/SIGTERM: finishing the batches in flight[^]*\bstopped\b/)
      if (!onDeno) expect(r.code).toBe(0)
    }, 90_000)
  }

  test('puffgres status', async () => {
    const r = ok(await puffgres('status'))
    expect(r.out).toContain('users')
  })
})

describe("the original README's CLI reference", () => {
  test('-V, --version, -h, --help, -c/--config', async () => {
    for (const f of ['-V', '--version']) expect(ok(await puffgres(f)).out).toMatch(/^puffgres \d+\.\d+\.\d+/)
    for (const f of ['-h', '--help']) expect(ok(await puffgres(f)).out).toContain('Usage: puffgres')
    mkdirSync(join(project, 'elsewhere'), { recursive: true })
    writeFileSync(join(project, 'elsewhere', 'other.toml'), readFileSync(join(project, 'puffgres.toml'), 'utf8'))
    // -c names a config in another folder; its migrations are looked up next to it (none there)
    const other = await cli(['-c', 'elsewhere/other.toml', 'migrate', '--dry-run'], { cwd: project, env })
    expect(other.code).toBe(0)
    expect(ok(await puffgres('--config puffgres.toml status')).out).toContain('users')
  })

  test('puffgres init ./my-project (PATH form) refuses to overwrite', async () => {
    const r = await cli(['init', './my-project'], { cwd: home, env })
    expect(r.code).toBe(1)
    expect(r.err).toContain('refusing to overwrite')
  })

  test('every dlq form', async () => {
    // two dead letters for existing users (what a failing transform or a refused write leaves)
    const sql = connect(db.url, { max: 1 })
    try {
      await addDeadLetters(
        sql,
        [1, 2, 3, 4].map((id) => ({
          mapping: 'users',
          docId: String(id),
          lsn: 0n,
          event: { type: 'update', id, new: { id } },
          error: `simulated failure ${id}`,
        })),
      )
    } finally {
      await sql.end()
    }
    const list = ok(await puffgres('dlq list'))
    expect(list.out).toContain('simulated failure 1')
    expect(ok(await puffgres('dlq list --mapping users')).out).toContain('simulated failure 4')
    const limited = ok(await puffgres('dlq list --limit 10'))
    expect(limited.out).toContain('simulated failure 2')
    const ids = [...list.out.matchAll(/^\s*(\d+)\s/gm)].map((m) => m[1])
    expect(ids.length).toBe(4)
    expect(ok(await puffgres(`dlq show ${ids[0]}`)).out).toContain('simulated failure')
    ok(await puffgres(`dlq retry --id ${ids[0]}`))
    ok(await puffgres(`dlq clear --id ${ids[1]}`))
    ok(await puffgres('dlq retry --mapping users'))
    expect(ok(await puffgres('dlq list')).out).not.toContain('simulated failure')
    ok(await puffgres('dlq clear --mapping users'))
    ok(await puffgres('dlq clear --all'))
  }, 60_000)

  test('the products migration: membership, the TypeScript transform, [target.schema] shorthand', async () => {
    writeFileSync(join(project, 'puffgres', 'migrations', '002_products.toml'), PRODUCTS_MIGRATION)
    writeFileSync(join(project, 'puffgres', 'transforms', 'product_transform.ts'), TRANSFORM)
    ok(await puffgres('migrate'))
    ok(await puffgres('backfill products'))
    const d = docs('products')
    expect([...d.keys()]).toEqual([1])
    expect(d.get(1)).toMatchObject({ name: 'lamp', description: 'a desk lamp', searchText: 'lamp a desk lamp' })
  }, 60_000)
})
