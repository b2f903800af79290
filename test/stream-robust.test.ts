// `run` on real databases: a value it cannot decode, bytes that are not UTF-8 (SQL_ASCII), a table renamed while
// it streams, a nullable id set to NULL. None of them may stop the stream or lose a change silently
// (docs/ARCHITECTURE.md, invariants 1, 7, 9).
import { describe, expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'robust',
  sql: `
    CREATE TABLE ev (id int PRIMARY KEY, name text, at timestamptz);
    CREATE TABLE ren (id int PRIMARY KEY, v int);
    CREATE TABLE nid (pk serial PRIMARY KEY, ext text UNIQUE, v int);
    ALTER TABLE nid REPLICA IDENTITY FULL;
    CREATE TABLE nid_key (pk serial PRIMARY KEY, ext text UNIQUE, v int);
    -- body is stored out of line (TOAST): an update that leaves it alone streams it as "unchanged", and run re-reads
    CREATE TABLE tev (id int PRIMARY KEY, body text, at timestamptz, other timestamptz, n int);
    ALTER TABLE tev ALTER body SET STORAGE EXTERNAL;
    CREATE DOMAIN posint AS int CHECK (VALUE > 0);
    CREATE TABLE dom (id int PRIMARY KEY, body text, n posint);
    ALTER TABLE dom ALTER body SET STORAGE EXTERNAL;
  `,
  migrations: {
    '001_ev.toml': migration({ name: 'ev', table: 'ev', columns: ['name'] }),
    '002_ev_at.toml': migration({ name: 'ev_at', table: 'ev', columns: ['at'] }),
    '003_ren.toml': migration({ name: 'ren', table: 'ren' }),
    '004_nid.toml': migration({ name: 'nid', table: 'nid', id: 'ext', columns: ['v'] }),
    '005_nid_key.toml': migration({ name: 'nid_key', table: 'nid_key', id: 'ext', columns: ['v'] }),
    '006_tev.toml': migration({ name: 'tev', table: 'tev', columns: ['body'] }),
    '007_tev_at.toml': migration({ name: 'tev_at', table: 'tev', columns: ['body', 'at'] }),
    '008_dom.toml': migration({ name: 'dom', table: 'dom', columns: ['body', 'n'] }),
  },
  stream: true,
})

const { docs, deadLetters } = pipe

describe('run on real databases', () => {
  test('a timestamptz outside a JS Date: nothing in a mapping that does not read it, a dead letter in one that does', async () => {
    await pipe.db.sql`INSERT INTO ev VALUES (1, 'far', '290000-01-01')`
    await pipe.db.sql`INSERT INTO ev VALUES (2, 'near', '2024-01-02 03:04:05+00')`
    await waitFor('both rows in "ev" (it does not read "at")', () => docs('ev').size === 2)
    expect(docs('ev').get(1)).toEqual({ name: 'far' })
    await waitFor('row 2 in "ev_at"', () => docs('ev_at').has(2))
    expect(docs('ev_at').get(2)).toEqual({ at: '2024-01-02T03:04:05.000Z' })
    expect(docs('ev_at').has(1)).toBe(false)
    // dead letters are recorded after the batch's documents are written
    await waitFor('the dead letter', async () => (await deadLetters('ev_at')).length === 1)
    const dead = await deadLetters('ev_at')
    expect(dead).toHaveLength(1)
    expect(dead[0].doc_id).toBe('1')
    expect(dead[0].error).toMatch(/column "at".*outside the range of a JS Date/)
    expect(await deadLetters('ev')).toHaveLength(0)
  })

  test('a table renamed while run streams: its changes still flow', async () => {
    await pipe.db.sql`INSERT INTO ren VALUES (1, 1)`
    await waitFor('ren 1', () => docs('ren').get(1)?.v === 1)
    await pipe.db.sql`ALTER TABLE ren RENAME TO ren_renamed`
    await pipe.db.sql`INSERT INTO ren_renamed VALUES (2, 2)`
    await pipe.db.sql`UPDATE ren_renamed SET v = 10 WHERE id = 1`
    await waitFor("the renamed table's changes", () => docs('ren').get(2)?.v === 2 && docs('ren').get(1)?.v === 10)
    await pipe.db.sql`DELETE FROM ren_renamed WHERE id = 2`
    await waitFor('the delete', () => !docs('ren').has(2))
  })

  test('a nullable id set to NULL: the old document is deleted (REPLICA IDENTITY FULL)', async () => {
    await pipe.db.sql`INSERT INTO nid (ext, v) VALUES ('a', 1), ('b', 2)`
    await waitFor('a and b', () => docs('nid').size === 2)
    await pipe.db.sql`UPDATE nid SET ext = NULL WHERE ext = 'a'`
    await pipe.db.sql`UPDATE nid SET v = 3 WHERE ext = 'b'` // a later change: the stream went on
    await waitFor('a gone, b updated', () => !docs('nid').has('a') && docs('nid').get('b')?.v === 3)
    expect(await deadLetters('nid')).toHaveLength(0)
    // the row without an id comes back with one: a document again
    await pipe.db.sql`UPDATE nid SET ext = 'c' WHERE ext IS NULL`
    await waitFor('c', () => docs('nid').get('c')?.v === 1)
  })

  test('a nullable id set to NULL where the change does not carry the old id: a dead letter with the real cause', async () => {
    await pipe.db.sql`INSERT INTO nid_key (ext, v) VALUES ('a', 1)`
    await waitFor('a', () => docs('nid_key').has('a'))
    await pipe.db.sql`UPDATE nid_key SET ext = NULL WHERE ext = 'a'`
    await waitFor('a dead letter', async () => (await deadLetters('nid_key')).length === 1)
    const [dead] = await deadLetters('nid_key')
    expect(dead.error).toMatch(/NULL in id column\(s\) ext: a row without an id cannot be a document/)
    expect(dead.error).toMatch(/REPLICA IDENTITY FULL would/)
    expect(dead.error).not.toMatch(/is the table's REPLICA IDENTITY enough/)
  })

  test("a TOAST re-read reads only the mapping's columns: a bad value in another does not stop the stream", async () => {
    await pipe.db.sql`INSERT INTO tev VALUES (1, repeat(md5('1'), 200), '2024-01-01', '290000-01-01', 0)`
    await waitFor('row 1', () => docs('tev').has(1) && docs('tev_at').has(1))
    // body unchanged (TOAST): both mappings re-read the row, whose "other" no JS Date holds
    await pipe.db.sql`UPDATE tev SET n = 1 WHERE id = 1`
    // a later change of another row (one of the same row could replace the re-read in its batch): the stream went on
    await pipe.db.sql`INSERT INTO tev VALUES (10, 'later', '2024-01-10', NULL, 0)`
    await waitFor('the later row', () => docs('tev').has(10) && docs('tev_at').has(10))
    expect(docs('tev').get(1)).toEqual({ body: 'c4ca4238a0b923820dcc509a6f75849b'.repeat(200) })
    expect(await deadLetters('tev')).toHaveLength(0)
    expect(await deadLetters('tev_at')).toHaveLength(0)
  })

  test('a TOAST re-read that finds a value it cannot decode: a dead letter for that row, the stream goes on', async () => {
    await pipe.db.sql`INSERT INTO tev VALUES (2, repeat(md5('2'), 200), '2024-01-01', NULL, 0)`
    await waitFor('row 2', () => docs('tev_at').has(2))
    // one transaction: the first update is re-read (body unchanged) after the second made "at" unreadable
    await pipe.db.sql.begin(async (tx) => {
      await tx`UPDATE tev SET n = 2 WHERE id = 2`
      await tx`UPDATE tev SET at = '290000-01-01' WHERE id = 2`
    })
    await pipe.db.sql`INSERT INTO tev VALUES (3, 'later', '2024-01-03', NULL, 0)`
    await waitFor('the later row', () => docs('tev_at').has(3) && docs('tev').has(3))
    await waitFor(
      "the re-read's dead letter",
      async () => /^re-read/.test((await deadLetters('tev_at'))[0]?.error ?? ''),
    )
    // one entry per mapping and document: the stream's for the second update, then the re-read's (the last error)
    const dead = await deadLetters('tev_at')
    expect(dead.map((d) => d.doc_id)).toEqual(['2'])
    expect(dead[0].error).toMatch(
      /^re-read of public\.tev: cannot decode column "at": .*outside the range of a JS Date/,
    )
    // the mapping that does not read "at" re-read the row as it is
    expect(docs('tev').get(2)?.body).toBe('c81e728d9d4c2f636f067f89cc14862c'.repeat(200))
    expect(await deadLetters('tev')).toHaveLength(0)
  })

  test('dlq retry of a row that still cannot be decoded: that entry fails with the reason, the others are retried', async () => {
    // row 5 holds a timestamp no JS Date holds; row 4 is dead-lettered the same way, then fixed
    await pipe.db.sql`INSERT INTO tev VALUES (5, 'five', '290000-01-01', NULL, 0)`
    await pipe.db.sql`INSERT INTO tev VALUES (4, 'four', '290000-01-01', NULL, 0)`
    await waitFor('their dead letters', async () => {
      const ids = (await deadLetters('tev_at')).map((d) => d.doc_id)
      return ids.includes('4') && ids.includes('5')
    })
    await pipe.db.sql`UPDATE tev SET at = '2024-01-04 00:00:00+00' WHERE id = 4`
    await waitFor('row 4 fixed', () => docs('tev_at').get(4)?.at === '2024-01-04T00:00:00.000Z')
    const r = await pipe.cli('dlq', 'retry', '--mapping', 'tev_at')
    expect(r.code).toBe(1) // a retry failed
    const dead = await deadLetters('tev_at')
    expect(dead.map((d) => d.doc_id)).not.toContain('4')
    expect(dead.find((d) => d.doc_id === '5')?.error).toMatch(
      /^re-read of public\.tev: cannot decode column "at": .*outside the range of a JS Date/,
    )
  })

  test('a TOAST re-read decodes a domain as its base type, as the stream does', async () => {
    await pipe.db.sql`INSERT INTO dom VALUES (1, repeat(md5('1'), 200), 5)`
    await waitFor('row 1', () => docs('dom').get(1)?.n === 5)
    await pipe.db.sql`UPDATE dom SET n = 6 WHERE id = 1` // body unchanged: re-read
    await waitFor('n = 6, a number', () => docs('dom').get(1)?.n === 6).catch(async (e) => {
      const dead = await deadLetters('dom')
      throw new Error(`${e.message}: document ${JSON.stringify(docs('dom').get(1)?.n)}, ${JSON.stringify(dead)}`)
    })
    expect(await deadLetters('dom')).toHaveLength(0)
  })

  test('migrate warns about a nullable id column', () => {
    expect(pipe.migrated.err).toMatch(/004_nid\.toml: public\.nid: mapping\.id column\(s\) ext may be NULL/)
    expect(pipe.migrated.err).toMatch(/005_nid_key\.toml: public\.nid_key: mapping\.id column\(s\) ext may be NULL/)
    expect(pipe.migrated.err).not.toMatch(/001_ev\.toml: .*may be NULL/)
  })
})

describe('run on a SQL_ASCII database', () => {
  const ascii = usePipeline({
    name: 'robust_ascii',
    encoding: 'SQL_ASCII',
    sql: `CREATE TABLE words (id int PRIMARY KEY, word text, other text);
      CREATE TABLE pages (id int PRIMARY KEY, body text, note text, n int);
      ALTER TABLE pages ALTER body SET STORAGE EXTERNAL`,
    migrations: {
      '001_words.toml': migration({ name: 'words', table: 'words', columns: ['word'] }),
      '002_pages.toml': migration({ name: 'pages', table: 'pages', columns: ['body', 'note'] }),
    },
    // slot names are per cluster: the other database of this file streams from "puffgres"
    stream: { slot: 'puffgres_ascii' },
  })
  test('bytes that are not UTF-8: a dead letter where the mapping reads them, nothing where not; the stream goes on', async () => {
    // E'\xe9': one byte, Latin-1 é, which is not UTF-8 (SQL_ASCII stores whatever bytes it gets)
    await ascii.db.sql.unsafe(`INSERT INTO words VALUES (1, E'caf\\xe9', 'x')`)
    await ascii.db.sql.unsafe(`INSERT INTO words VALUES (2, 'fine', E'na\\xefve')`)
    await ascii.db.sql.unsafe(`INSERT INTO words VALUES (3, 'later', 'y')`)
    await waitFor('rows 2 and 3', () => ascii.docs('words').has(2) && ascii.docs('words').has(3), 8000).catch((e) => {
      throw new Error(e.message + ascii.stream.logs.filter((l) => /warn|error/.test(l)).slice(-5).join('\n'))
    })
    // dead letters are written with their batch, which may land after later batches (several in flight)
    await waitFor('the dead letter', async () => (await ascii.db.sql`SELECT 1 FROM __puffgres_dlq`).length > 0)
    expect(ascii.docs('words').get(2)).toEqual({ word: 'fine' })
    expect(ascii.docs('words').has(1)).toBe(false)
    // dead letters are recorded after the batch's documents are written
    const count = async () =>
      (await ascii.db.sql`SELECT count(*)::int AS n FROM __puffgres_dlq WHERE mapping = 'words'`)[0].n
    await waitFor('the dead letter', async () => await count() === 1)
    const dead = await ascii.db.sql<{ doc_id: string; error: string }[]>`
      SELECT doc_id, error FROM __puffgres_dlq WHERE mapping = 'words'`
    expect(dead).toHaveLength(1)
    expect(dead[0].doc_id).toBe('1')
    expect(dead[0].error).toMatch(/column "word": the value is not valid UTF-8/)
  })

  test('a TOAST re-read of bytes that are not UTF-8: a dead letter, never U+FFFD in the document', async () => {
    await ascii.db.sql`INSERT INTO pages VALUES (1, repeat(md5('1'), 200), 'ok', 0)`
    await waitFor('page 1', () => ascii.docs('pages').get(1)?.note === 'ok')
    // one transaction: the first update is re-read (body unchanged) after the second wrote a Latin-1 byte
    await ascii.db.sql.begin(async (tx) => {
      await tx`UPDATE pages SET n = 1 WHERE id = 1`
      await tx.unsafe(`UPDATE pages SET note = E'caf\\xe9' WHERE id = 1`)
    })
    await ascii.db.sql`INSERT INTO pages VALUES (2, 'later', 'fine', 0)`
    await waitFor('page 2', () => ascii.docs('pages').has(2)).catch((e) => {
      throw new Error(e.message + ascii.stream.logs.filter((l) => /warn|error/.test(l)).slice(-5).join('\n'))
    })
    const error = async () =>
      (await ascii.db.sql`SELECT error FROM __puffgres_dlq WHERE mapping = 'pages'`)[0]?.error ?? ''
    await waitFor("the re-read's dead letter", async () => /^re-read/.test(await error()))
    expect(ascii.docs('pages').get(1)?.note).toBe('ok')
    const dead = await ascii.db.sql<{ doc_id: string; error: string }[]>`
      SELECT doc_id, error FROM __puffgres_dlq WHERE mapping = 'pages' ORDER BY id`
    expect(dead.map((d) => d.doc_id)).toEqual(['1'])
    expect(dead[0].error).toMatch(
      /^re-read of public\.pages: cannot decode column "note": the value is not valid UTF-8/,
    )
  })
})
