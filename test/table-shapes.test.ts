// Tables whose shape logical replication treats specially, end to end on real PostgreSQL: generated columns (not in
// pgoutput), partitioned tables (published through their root), and a membership predicate `migrate` must refuse
// exactly as `run` does.
import { describe, expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { runCli } from './harness/cli.ts'
import { makeProject, migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'shapes',
  sql: `
    CREATE TABLE gen (id int PRIMARY KEY, price int, qty int, total int GENERATED ALWAYS AS (price * qty) STORED);
    CREATE TABLE parts (id int, region text, name text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
    CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu');
    CREATE TABLE parts_us PARTITION OF parts FOR VALUES IN ('us');
    INSERT INTO parts VALUES (100, 'eu', 'old eu'), (101, 'us', 'old us');
    -- the publication an older puffgres created: partitions published as themselves
    CREATE PUBLICATION puffgres_pub FOR TABLE gen, parts;
  `,
  migrations: {
    '001_gen.toml': migration({ name: 'gen', table: 'gen', membership: 'total > 10' }),
    '002_parts.toml': migration({ name: 'parts', table: 'parts' }),
  },
})

const { docs } = pipe

/** `migrate --dry-run` of another project on the same database, holding only `migrations`. */
async function dryRun(migrations: Record<string, string>) {
  const p = makeProject({ databaseUrl: pipe.db.url, migrations })
  try {
    return await runCli(['-c', p.config, 'migrate', '--dry-run'])
  } finally {
    p.remove()
  }
}

describe('table shapes', () => {
  test('migrate warns about generated columns and partitions, and fixes an existing publication', async () => {
    expect(pipe.migrated.err).toMatch(
      /warning: .*001_gen\.toml: public\.gen: generated column\(s\) total are not in the replication stream/,
    )
    expect(pipe.migrated.err).toMatch(
      /warning: .*002_parts\.toml: public\.parts: partitioned table: published through its root/,
    )
    // pgoutput sends nothing for these (publish_via_partition_root sends only a TRUNCATE of the root): say so
    expect(pipe.migrated.err).toMatch(
      /TRUNCATE, DETACH PARTITION or DROP TABLE of one partition is not in the replication stream .*verify --repair/,
    )
    const [p] = await pipe.db.sql`SELECT pubviaroot FROM pg_publication WHERE pubname = 'puffgres_pub'`
    expect(p.pubviaroot).toBe(true)
    const again = await pipe.cli('migrate')
    expect(again.out).toBe('Nothing to migrate: the database is up to date.')
  })

  test('run streams a partitioned table; a row moving between partitions ends as one right document', async () => {
    await pipe.startStream()
    await pipe.db.sql`INSERT INTO parts VALUES (1, 'eu', 'one'), (2, 'us', 'two')`
    await waitFor('both partitions', () => docs('parts').get(1)?.name === 'one' && docs('parts').get(2)?.name === 'two')
    await pipe.db.sql`UPDATE parts SET region = 'us', name = 'moved' WHERE id = 1`
    await waitFor('1 moved', () => docs('parts').get(1)?.region === 'us')
    expect(docs('parts').get(1)).toEqual({ region: 'us', name: 'moved' })
    await pipe.db.sql`DELETE FROM parts WHERE id = 2`
    await waitFor('2 deleted', () => !docs('parts').has(2))
  })

  test('backfill copies a partitioned table', async () => {
    const r = await pipe.cli('backfill', 'parts')
    expect(r.code).toBe(0)
    expect(docs('parts').get(100)).toEqual({ region: 'eu', name: 'old eu' })
    expect(docs('parts').get(101)).toEqual({ region: 'us', name: 'old us' })
  })

  test('a generated column is right after streamed inserts and updates, and membership on it works', async () => {
    if (!pipe.streaming) await pipe.startStream()
    await pipe.db.sql`INSERT INTO gen (id, price, qty) VALUES (1, 2, 3), (2, 5, 5)`
    await waitFor('2 (total 25) in', () => docs('gen').get(2)?.total === 25)
    expect(docs('gen').has(1)).toBe(false) // total 6: not a member
    await pipe.db.sql`UPDATE gen SET qty = 1 WHERE id = 2` // total 5: leaves
    await pipe.db.sql`UPDATE gen SET qty = 10 WHERE id = 1` // total 20: enters
    await waitFor('1 in, 2 out', () => docs('gen').get(1)?.total === 20 && !docs('gen').has(2))
    expect(docs('gen').get(1)).toEqual({ price: 2, qty: 10, total: 20 })
    const dead = await pipe.db.sql`SELECT error FROM __puffgres_dlq`
    expect(dead).toEqual([])
  })

  test('migrate warns about a nullable id column', async () => {
    await pipe.db.sql`CREATE TABLE IF NOT EXISTS loose (code text UNIQUE, label text)`
    const r = await dryRun({ '010_loose.toml': migration({ name: 'loose', table: 'loose', id: 'code' }) })
    expect(r.code).toBe(0)
    expect(r.err).toContain(
      'warning: puffgres/migrations/010_loose.toml: public.loose: mapping.id column(s) code may be NULL',
    )
  })

  test('migrate refuses a membership predicate that run would refuse (an int column against a string)', async () => {
    const r = await dryRun({ '009_bad.toml': migration({ name: 'bad', table: 'gen', membership: "price = 'cheap'" }) })
    expect(r.code).toBe(1)
    expect(r.err).toContain(
      `error: puffgres/migrations/009_bad.toml: mapping.membership: 'cheap' is not a valid integer`,
    )
  })
})
