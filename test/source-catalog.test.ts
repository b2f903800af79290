// The source reader's catalog (src/source/catalog.ts): the one lookup of a table by name and of its unique indexes,
// read by the read plan and by tableInfo (migrate, doctor, the routes). docs/ARCHITECTURE.md, invariant 12.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { loadConfig } from '../src/config/load.ts'
import { findTable, uniqueIndexColumns } from '../src/source/catalog.ts'
import { planReads, tableInfo } from '../src/source/mod.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'

let db: TestDatabase
let project: Project

beforeAll(async () => {
  db = await testDatabase('source_catalog')
  await db.sql.unsafe(`
    CREATE SCHEMA other;
    CREATE TABLE plain (id int PRIMARY KEY, v text);
    INSERT INTO plain SELECT g, 'v' || g FROM generate_series(1, 500) g;
    ANALYZE plain;
    CREATE TABLE other.plain (id int, v text);
    CREATE TABLE fresh (id int PRIMARY KEY);
    CREATE TABLE partial (id int, v text);
    CREATE UNIQUE INDEX partial_id ON partial (id) WHERE id > 0;
    CREATE TABLE pair (a int, b text, c int);
    CREATE UNIQUE INDEX pair_ab ON pair (b, a);
    CREATE UNIQUE INDEX pair_c ON pair (c);
    CREATE TABLE parted (id int PRIMARY KEY, at date) PARTITION BY RANGE (id);
    CREATE VIEW seen AS SELECT * FROM plain;
  `)
  project = makeProject({
    databaseUrl: db.url,
    migrations: {
      '001_plain.toml': migration({ name: 'plain', table: 'plain' }),
      '002_fresh.toml': migration({ name: 'fresh', table: 'fresh' }),
      '003_partial.toml': migration({ name: 'partial', table: 'partial' }),
      '004_pair.toml': migration({ name: 'pair', table: 'pair', id: ['a', 'b'] }),
      '005_pair_c.toml': migration({ name: 'pair_c', table: 'pair', id: 'c' }),
      '006_seen.toml': migration({ name: 'seen', table: 'seen' }),
    },
  })
})

afterAll(async () => {
  project?.remove()
  await db?.drop()
})

const mapping = (name: string) => loadConfig(project.config).mappings.find((m) => m.name === name)!

describe('findTable', () => {
  test('a plain or partitioned table by schema and name; a view or a missing table is none', async () => {
    const plain = await findTable(db.sql, 'public', 'plain')
    const [{ oid }] = await db.sql<{ oid: number }[]>`SELECT 'public.plain'::regclass::oid::int AS oid`
    expect(plain?.oid).toBe(oid)
    expect(plain?.reltuples).toBe(500)
    expect(plain?.relreplident).toBe('d')
    expect((await findTable(db.sql, 'other', 'plain'))?.oid).not.toBe(oid)
    expect(await findTable(db.sql, 'public', 'parted')).toBeDefined()
    expect(await findTable(db.sql, 'public', 'seen')).toBeUndefined()
    expect(await findTable(db.sql, 'public', 'nowhere')).toBeUndefined()
  })
})

describe('uniqueIndexColumns', () => {
  test('each valid unique index (its columns as a set), partial ones left out', async () => {
    const oidOf = async (t: string) => (await findTable(db.sql, 'public', t))!.oid
    expect(await uniqueIndexColumns(db.sql, await oidOf('plain'))).toEqual([['id']])
    expect(await uniqueIndexColumns(db.sql, await oidOf('partial'))).toEqual([])
    const pair = await uniqueIndexColumns(db.sql, await oidOf('pair'))
    expect(pair.map((cols) => cols.toSorted().join(',')).sort()).toEqual(['a,b', 'c'])
  })
})

describe('the read plan reads the catalog through it', () => {
  test('keyset paging is exact only under a unique index of the id columns (a partial one does not count)', async () => {
    expect((await planReads(db.sql, mapping('plain'), undefined)).keyIndexed).toBe(true)
    expect((await planReads(db.sql, mapping('pair'), undefined)).keyIndexed).toBe(true)
    expect((await planReads(db.sql, mapping('pair_c'), undefined)).keyIndexed).toBe(true)
    expect((await planReads(db.sql, mapping('partial'), undefined)).keyIndexed).toBe(false)
  })

  test('the estimate is the analyzed row count, none for a table never analyzed', async () => {
    expect((await planReads(db.sql, mapping('plain'), undefined)).estimate).toBe(500)
    // PostgreSQL 14+ says -1 for a table never analyzed (before 14: 0, an estimate of 0)
    expect([undefined, 0]).toContain((await planReads(db.sql, mapping('fresh'), undefined)).estimate)
  })

  test('a view is not a table: one line naming the mapping file, as tableInfo finds none', async () => {
    const m = mapping('seen')
    await expect(planReads(db.sql, m, undefined)).rejects.toThrow(`${m.file}: source: table public.seen does not exist`)
    expect(await tableInfo(db.sql, 'public', 'seen')).toBeUndefined()
  })
})
