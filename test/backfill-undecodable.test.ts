// backfill of rows holding a value it cannot decode: a timestamptz outside a JS Date, bytes that are not UTF-8 in a
// SQL_ASCII database. Each is a dead letter naming its column for the mappings that read it; the other rows, and
// the mappings that do not read it, are backfilled (issue 13: a bad row must become a dead letter).
import { describe, expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'

describe('backfill of a value outside a JS Date', () => {
  const pipe = usePipeline({
    name: 'bf_undecodable',
    sql: `
      CREATE TABLE bev (id int PRIMARY KEY, name text, at timestamptz);
      INSERT INTO bev VALUES (1, 'a', '2024-01-01 00:00:00+00'), (2, 'b', '290000-01-01'), (3, 'c', '2024-01-03 00:00:00+00');
    `,
    migrations: {
      '001_bev_name.toml': migration({ name: 'bev_name', table: 'bev', columns: ['name'] }),
      '002_bev_at.toml': migration({ name: 'bev_at', table: 'bev', columns: ['at'] }),
    },
  })
  const { docs } = pipe

  test('a dead letter for the mapping that reads it; every row for the one that does not', async () => {
    for (const m of ['bev_name', 'bev_at']) {
      const r = await pipe.cli('backfill', m)
      if (r.code !== 0) throw new Error(`backfill exited ${r.code}: ${r.err}`)
    }
    expect([...docs('bev_name').keys()].sort()).toEqual([1, 2, 3])
    expect([...docs('bev_at').keys()].sort()).toEqual([1, 3])
    const dead = await pipe.db.sql<{ mapping: string; doc_id: string; error: string }[]>`
      SELECT mapping, doc_id, error FROM __puffgres_dlq ORDER BY id`
    expect(dead.map((d) => [d.mapping, d.doc_id])).toEqual([['bev_at', '2']])
    expect(dead[0].error).toMatch(/column "at": .*outside the range of a JS Date/)
  })
})

describe('backfill of a SQL_ASCII database', () => {
  const pipe = usePipeline({
    name: 'bf_ascii',
    encoding: 'SQL_ASCII',
    // E'\xe9' and E'\xef': single Latin-1 bytes, not UTF-8 (SQL_ASCII stores whatever bytes it gets)
    sql: `
      CREATE TABLE words (id int PRIMARY KEY, word text, other text);
      INSERT INTO words VALUES (1, E'caf\\xe9', 'x'), (2, 'fine', E'na\\xefve'), (3, 'ok', 'y'), (4, 'déjà', 'z');
      -- a text key that is not UTF-8, the last row of a full first page (10 rows with --batch-size 1)
      CREATE TABLE tags (name text PRIMARY KEY, v int);
      INSERT INTO tags SELECT 'k0' || i, i FROM generate_series(0, 8) i;
      INSERT INTO tags VALUES (E'k\\xe9', 9), ('l1', 10);
    `,
    migrations: {
      '001_words.toml': migration({ name: 'ascii_words', table: 'words', columns: ['word'] }),
      '002_tags.toml': migration({ name: 'ascii_tags', table: 'tags', id: 'name', columns: ['v'] }),
    },
  })
  const { docs } = pipe

  test('bytes that are not UTF-8: a dead letter where the mapping reads them, the other rows backfilled', async () => {
    const r = await pipe.cli('backfill', 'ascii_words')
    if (r.code !== 0) throw new Error(`backfill exited ${r.code}: ${r.err}`)
    const got = docs('ascii_words')
    expect([...got.keys()].sort()).toEqual([2, 3, 4])
    expect(got.get(2)).toEqual({ word: 'fine' })
    // UTF-8 text stored in a SQL_ASCII database reads back as itself
    expect(got.get(4)).toEqual({ word: 'déjà' })
    const dead = await pipe.db.sql<{ doc_id: string; error: string }[]>`SELECT doc_id, error FROM __puffgres_dlq`
    expect(dead.map((d) => d.doc_id)).toEqual(['1'])
    expect(dead[0].error).toMatch(/column "word": the value is not valid UTF-8/)
  })
  test('a key that is not UTF-8 ends a full page: a dead letter, and paging goes on after it', async () => {
    const r = await pipe.cli('backfill', 'ascii_tags', '--batch-size', '1')
    if (r.code !== 0) throw new Error(`backfill exited ${r.code}: ${r.err}`)
    const got = docs('ascii_tags')
    expect([...got.keys()].sort()).toEqual([...Array.from({ length: 9 }, (_, i) => `k0${i}`), 'l1'])
    const dead = await pipe.db.sql<{ error: string }[]>`SELECT error FROM __puffgres_dlq WHERE mapping = 'ascii_tags'`
    expect(dead).toHaveLength(1)
    expect(dead[0].error).toMatch(/column "name": the value is not valid UTF-8/)
  }, 60_000)
})
