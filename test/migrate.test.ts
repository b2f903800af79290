import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startCluster, type TestDatabase, testDatabase } from './harness/pg.ts'
import { runCli } from './harness/cli.ts'
import { makeProject, migration, type Project } from './harness/project.ts'

let db: TestDatabase
const projects: Project[] = []

beforeAll(async () => {
  db = await testDatabase('migrate')
  await db.sql.unsafe(`
    CREATE TABLE items (id int PRIMARY KEY, name text, status text, deleted_at timestamptz);
    CREATE TABLE pairs (a int, b int, v text, PRIMARY KEY (a, b));
    CREATE TABLE nokey (x int, y text);
    CREATE SCHEMA other;
    CREATE TABLE other.things (uid uuid PRIMARY KEY, label text);
  `)
})
afterAll(async () => {
  for (const p of projects) p.remove()
  await db.drop()
})

function project(migrations: Record<string, string>, url = db.url) {
  const p = makeProject({ databaseUrl: url, migrations })
  projects.push(p)
  return p
}

const migrate = (p: Project, ...args: string[]) => runCli(['-c', p.config, 'migrate', ...args])

async function stateTables() {
  const rows = await db.sql`SELECT relname FROM pg_class WHERE relname LIKE '__puffgres_%' AND relkind = 'r'`
  return rows.map((r) => r.relname).sort()
}

describe('migrate', () => {
  test('--dry-run prints the plan and touches nothing', async () => {
    const p = project({
      '001_items.toml': migration({ name: 'items', table: 'items', membership: 'deleted_at IS NULL' }),
    })
    const r = await migrate(p, '--dry-run')
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(r.out).toContain('dry run')
    expect(r.out).toContain('apply items v1 (puffgres/migrations/001_items.toml): public.items → namespace items')
    expect(r.out).toContain('CREATE PUBLICATION "puffgres_pub" FOR TABLE "public"."items"')
    expect(await stateTables()).toEqual([])
    expect(await db.sql`SELECT 1 FROM pg_publication`).toHaveLength(0)
  })

  test('applies: state tables, recorded migrations with hashes, publication; twice changes nothing', async () => {
    const p = project({
      '001_items.toml': migration({ name: 'items', table: 'items', columns: ['name', 'status'] }),
      '002_pairs.toml': migration({ name: 'pairs', table: 'pairs', id: ['a', 'b'] }),
      '003_things.toml': migration({ name: 'things', table: 'things', id: 'uid' }).replace(
        'table = "things"',
        'table = "things"\nschema = "other"',
      ),
    })
    const r = await migrate(p)
    expect(r.code).toBe(0)
    expect(await stateTables()).toEqual([
      '__puffgres_backfill',
      '__puffgres_backfill_pages',
      '__puffgres_checkpoints',
      '__puffgres_dlq',
      '__puffgres_migrations',
    ])
    const recorded = await db.sql`SELECT name, version, file, hash FROM __puffgres_migrations ORDER BY name`
    expect(recorded.map((m) => `${m.name}@${m.version}`)).toEqual(['items@1', 'pairs@1', 'things@1'])
    expect(recorded[0].hash).toMatch(/^[0-9a-f]{64}$/)
    const pub = await db.sql`SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = 'puffgres_pub'
      ORDER BY 1, 2`
    expect(pub.map((t) => `${t.schemaname}.${t.tablename}`)).toEqual(['other.things', 'public.items', 'public.pairs'])

    const before = await db.sql`SELECT name, version, applied_at FROM __puffgres_migrations ORDER BY name`
    const again = await migrate(p)
    expect(again.code).toBe(0)
    expect(again.out).toBe('Nothing to migrate: the database is up to date.')
    expect(await db.sql`SELECT name, version, applied_at FROM __puffgres_migrations ORDER BY name`).toEqual(before)

    // an edited applied file is refused, and nothing changes
    p.write('puffgres/migrations/001_items.toml', migration({ name: 'items', table: 'items', columns: ['name'] }))
    const edited = await migrate(p)
    expect(edited.code).toBe(1)
    expect(edited.err).toMatch(
      /^error: puffgres\/migrations\/001_items\.toml: was edited after it was applied .* add a new version/,
    )
    // a new version is the way: accepted, and the publication follows the active mappings
    p.write(
      'puffgres/migrations/001_items.toml',
      migration({ name: 'items', table: 'items', columns: ['name', 'status'] }),
    )
    p.write('puffgres/migrations/004_items.toml', migration({ name: 'items', version: 2, table: 'items' }))
    const v2 = await migrate(p)
    expect(v2.code).toBe(0)
    expect(v2.out).toContain('apply items v2')

    // a database migrated by an older puffgres, without a state table added since: named, and migrate adds it
    await db.sql.unsafe('DROP TABLE __puffgres_backfill_pages')
    const old = await runCli(['-c', p.config, 'backfill', 'items'])
    expect(old.code).toBe(1)
    expect(old.err).toBe(
      'error: state table __puffgres_backfill_pages is missing: run `puffgres migrate` to create it',
    )
    const upgrade = await migrate(p)
    expect(upgrade.code).toBe(0)
    expect(upgrade.out).toContain('create state tables __puffgres_backfill_pages')
    expect(await stateTables()).toContain('__puffgres_backfill_pages')
    await db.sql.unsafe('DROP PUBLICATION puffgres_pub')
  })

  test('unknown table, column, id and membership column are named', async () => {
    const cases: Array<[string, RegExp]> = [
      [migration({ name: 'x', table: 'nope' }), /001_x\.toml: source: table public\.nope does not exist/],
      [
        migration({ name: 'x', table: 'items', id: 'uid' }),
        /001_x\.toml: mapping\.id: column "uid" not in public\.items/,
      ],
      [
        migration({ name: 'x', table: 'items', columns: ['name', 'colour'] }),
        /mapping\.columns: column "colour" not in public\.items/,
      ],
      [
        migration({ name: 'x', table: 'items', membership: "colour = 'red'" }),
        /mapping\.membership: column "colour" not in public\.items/,
      ],
    ]
    for (const [m, re] of cases) {
      const r = await migrate(project({ '001_x.toml': m }))
      expect(r.code).toBe(1)
      expect(r.err).toMatch(re)
    }
  })

  test('warns where the replica identity cannot give the id of deleted rows', async () => {
    const r = await migrate(project({ '001_n.toml': migration({ name: 'n', table: 'nokey', id: 'x' }) }), '--dry-run')
    expect(r.code).toBe(0)
    expect(r.err).toMatch(/warning: .*public\.nokey has no replica identity.*REPLICA IDENTITY FULL/)
    const r2 = await migrate(
      project({ '001_i.toml': migration({ name: 'i', table: 'items', id: 'name' }) }),
      '--dry-run',
    )
    expect(r2.err).toMatch(/mapping\.id \(name\) is not covered by the replica identity of public\.items \(id\)/)
  })

  test('a transform file that is missing is refused', async () => {
    const r = await migrate(
      project({ '001_t.toml': migration({ name: 't', table: 'items', transform: 'transforms/missing.ts' }) }),
      '--dry-run',
    )
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/001_t\.toml: mapping\.transform: /)
  })

  test('wal_level other than logical is refused with how to fix it', async () => {
    const replica = await startCluster({ wal_level: 'replica' })
    try {
      const p = project({}, replica.url())
      const r = await migrate(p)
      expect(r.code).toBe(1)
      expect(r.err).toMatch(/wal_level is "replica", puffgres needs "logical": .*rds\.logical_replication/)
    } finally {
      replica.stop()
    }
  })
})
