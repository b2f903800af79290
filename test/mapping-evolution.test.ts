// Mappings change while `run` streams (docs/ARCHITECTURE.md, invariant 10): a mapping added, a replica identity that
// no longer covers a mapping's id. Nothing of a published table may be confirmed unless it was applied or
// dead-lettered (invariant 1).
import { describe, expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'evolve',
  sql: `
    CREATE TABLE a (id int PRIMARY KEY, v int);
    CREATE TABLE ri (id int PRIMARY KEY, sku text NOT NULL UNIQUE, v int);
  `,
  migrations: {
    '001_a.toml': migration({ name: 'a', table: 'a' }),
    '002_ri.toml': migration({ name: 'ri', table: 'ri' }),
  },
  stream: true,
})

/** The rows of a table as the documents should be: SQL, not puffgres. */
async function rowsOf(table: string): Promise<Map<unknown, Record<string, unknown>>> {
  const rows = await pipe.db.sql.unsafe(`SELECT id, v FROM ${table} ORDER BY id`)
  return new Map(rows.map((r) => [r.id, { v: r.v }]))
}

describe('mappings that change while run streams', () => {
  test('a mapping added while run streams: its changes arrive, and none is confirmed before it is routed', async () => {
    await pipe.db.sql`INSERT INTO a VALUES (1, 1)`
    await waitFor('a 1', () => pipe.docs('a').get(1)?.v === 1)
    await pipe.db.sql`CREATE TABLE b (id int PRIMARY KEY, v int)`
    await pipe.db.sql`INSERT INTO b VALUES (1, 1), (2, 2)`
    pipe.project.write('puffgres/migrations/003_b.toml', migration({ name: 'b', table: 'b' }))
    expect((await pipe.cli('migrate')).code).toBe(0)
    const backfill = await pipe.cli('backfill', 'b')
    expect(backfill.code).toBe(0)
    await pipe.db.sql`INSERT INTO b VALUES (3, 3)`
    await pipe.db.sql`UPDATE b SET v = 20 WHERE id = 2`
    await pipe.db.sql`DELETE FROM b WHERE id = 1`
    await pipe.db.sql`INSERT INTO a VALUES (2, 2)`
    const want = await rowsOf('b')
    await waitFor("b's changes", () => {
      const got = pipe.docs('b')
      return got.size === want.size && [...want].every(([id, d]) => got.get(id)?.v === d.v)
    }, 20_000)
    await waitFor('a 2', () => pipe.docs('a').get(2)?.v === 2)
    // and after a restart nothing comes back: what was confirmed had been written
    await pipe.stream.stop()
    await pipe.startStream()
    await pipe.db.sql`UPDATE b SET v = 30 WHERE id = 3`
    await waitFor('b 3 after the restart', () => pipe.docs('b').get(3)?.v === 30)
    expect(pipe.docs('b')).toEqual(await rowsOf('b'))
  })

  test('a published table no mapping reads: nothing after its change is confirmed until its mapping is migrated', async () => {
    await pipe.db.sql`CREATE TABLE c (id int PRIMARY KEY, v int)`
    await pipe.db.sql`ALTER PUBLICATION puffgres_pub ADD TABLE c`
    await pipe.db.sql`INSERT INTO c VALUES (1, 1)`
    const [{ lsn }] = await pipe.db.sql`SELECT pg_current_wal_insert_lsn()::text AS lsn`
    await pipe.db.sql`INSERT INTO a VALUES (3, 3)`
    await waitFor(
      'the message naming the table',
      () => pipe.stream.logs.some((l) => l.includes('table public.c is in')),
    )
    const confirmedPast = async () =>
      (await pipe.db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS past FROM pg_replication_slots
        WHERE slot_name = 'puffgres'`)[0].past
    await new Promise((r) => setTimeout(r, 1500))
    expect(await confirmedPast()).toBe(false)
    const doctor = await pipe.cli('doctor')
    expect(doctor.out).toMatch(/✗ publication: "puffgres_pub" publishes public\.c, which no mapping reads/)
    pipe.project.write('puffgres/migrations/004_c.toml', migration({ name: 'c', table: 'c' }))
    expect((await pipe.cli('migrate')).code).toBe(0)
    await waitFor("c's row and a's later one", () => pipe.docs('c').get(1)?.v === 1 && pipe.docs('a').has(3), 40_000)
    await waitFor('the slot confirmed past it', confirmedPast)
  })

  test('a REPLICA IDENTITY changed mid-stream that no longer covers the id: its updates are dead-lettered with the fix, logged once', async () => {
    await pipe.db.sql`INSERT INTO ri VALUES (1, 's1', 1), (2, 's2', 2)`
    await waitFor('ri 1 and 2', () => pipe.docs('ri').size === 2)
    await pipe.db.sql`ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_sku_key`
    // the id changes, the identity (sku) does not: the change carries no old id
    await pipe.db.sql`UPDATE ri SET id = 10 WHERE id = 1`
    await pipe.db.sql`UPDATE ri SET id = 20 WHERE id = 2`
    await waitFor('the new ids', () => pipe.docs('ri').has(10) && pipe.docs('ri').has(20))
    await waitFor('the dead letters', async () => (await pipe.deadLetters('ri')).length === 2)
    const dead = await pipe.deadLetters('ri')
    expect(dead.map((d) => d.doc_id).sort()).toEqual(['10', '20'])
    expect(dead[0].error).toMatch(/REPLICA IDENTITY .*does not include id column\(s\) id/)
    expect(dead[0].error).toMatch(/ALTER TABLE public\.ri REPLICA IDENTITY (DEFAULT|FULL)/)
    const said = pipe.stream.logs.filter((l) => l.includes('does not include id column'))
    expect(said).toHaveLength(1)
    await pipe.db.sql`ALTER TABLE ri REPLICA IDENTITY DEFAULT`
  })

  test('a new version into a new namespace while run streams: later changes go through it; status shows its own backfill', async () => {
    await pipe.db.sql`INSERT INTO a VALUES (10, 10)`
    expect((await pipe.cli('backfill', 'a')).code).toBe(0)
    await waitFor('a 10', () => pipe.docs('a').has(10))
    pipe.project.write(
      'puffgres/migrations/005_a.toml',
      migration({ name: 'a', version: 2, table: 'a', namespace: 'a_v2' }),
    )
    expect((await pipe.cli('migrate')).code).toBe(0)
    // finding 2: the new version's namespace has no backfill yet; v1's "done" is not shown under it
    const before = (await pipe.status()).mappings.find((m: { mapping: string }) => m.mapping === 'a')
    expect(before.namespace).toBe('a_v2')
    expect(before.backfill).toBeNull()
    await pipe.db.sql`INSERT INTO a VALUES (11, 11)`
    await pipe.db.sql`UPDATE a SET v = 100 WHERE id = 10`
    await waitFor(
      'the change after migrate in the new namespace',
      () => pipe.docs('a_v2').get(11)?.v === 11 && pipe.docs('a_v2').get(10)?.v === 100,
    )
    // the old namespace got no change committed after migrate
    expect(pipe.docs('a').has(11)).toBe(false)
    expect(pipe.docs('a').get(10)?.v).toBe(10)
    expect((await pipe.cli('backfill', 'a')).code).toBe(0)
    expect(pipe.docs('a_v2')).toEqual(await rowsOf('a'))
    const after = (await pipe.status()).mappings.find((m: { mapping: string }) => m.mapping === 'a')
    expect(after.backfill).toMatchObject({ version: 2, status: 'done' })
    // applied with migrate: nothing is kept live, so there is nothing for reindex to build or retire
    const reindex = await pipe.cli('reindex', 'a')
    expect(reindex.code).toBe(1)
    expect(reindex.err).toMatch(/version 2 is applied and no older version is live/)
    expect((await pipe.cli('reindex', 'a', '--retire')).err).toMatch(/no older version live: nothing to retire/)
    expect((await pipe.cli('reindex', 'a', '--delete-namespace')).code).toBe(2)
  })

  test('a mapping removed while run streams: its table leaves the publication, the stream goes on, a restart too', async () => {
    await pipe.stream.stop()
    // changes of c still in the slot when its mapping goes: replayed by the next run, which no longer reads c
    await pipe.db.sql`INSERT INTO c VALUES (2, 2)`
    const { rmSync } = await import('node:fs')
    rmSync(`${pipe.project.dir}/puffgres/migrations/004_c.toml`)
    expect((await pipe.cli('migrate')).code).toBe(0)
    await pipe.startStream()
    await pipe.db.sql`INSERT INTO c VALUES (3, 3)`
    await pipe.db.sql`INSERT INTO a VALUES (20, 20)`
    await waitFor('a 20', () => pipe.docs('a_v2').get(20)?.v === 20)
    expect(pipe.docs('c').has(3)).toBe(false)
    expect(pipe.stream.logs.some((l) => l.includes('is in publication'))).toBe(false)
  })
})
