// One row-identity path (pipeline/row-identity.ts) under real schema changes and races: the stream's re-read of a row
// whose update left TOASTed columns out survives a DROP COLUMN; `dlq retry` and `verify --repair` do not bring back a
// row deleted while its transform ran.
import { describe, expect, test } from 'bun:test'
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const BIG = () => Array.from({ length: 400 }, () => Math.random().toString(36).slice(2, 10)).join('') // ~3 kB

// Rejects inserts and updates while `reject` exists; while `slow` exists, says it `started` and waits for `release`
// (a slow embedding call), which it consumes. Deletes pass at once (the stream's delete is applied while a retry waits).
const TRANSFORM = `import { existsSync, rmSync, writeFileSync } from 'node:fs'
const at = (f) => new URL('./' + f, import.meta.url)
export default async function (event) {
  if (event.type === 'delete') return { type: 'delete' }
  if (existsSync(at('reject'))) throw new Error('rejected ' + event.new.name)
  if (existsSync(at('slow'))) {
    writeFileSync(at('started'), '')
    while (!existsSync(at('release'))) await new Promise((r) => setTimeout(r, 20))
    rmSync(at('release'))
  }
  return { type: 'upsert', attributes: { name: event.new.name } }
}
`

const pipe = usePipeline({
  name: 'rowid',
  sql: `
    CREATE TABLE notes (id int PRIMARY KEY, name text, extra int, body text);
    ALTER TABLE notes ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE slow (id int PRIMARY KEY, name text);
    CREATE TABLE memo (id int PRIMARY KEY, label text, body text);
    CREATE TABLE keyed (id int PRIMARY KEY, n int, body text);
    ALTER TABLE keyed ALTER COLUMN body SET STORAGE EXTERNAL;
    ALTER TABLE memo ALTER COLUMN body SET STORAGE EXTERNAL;
  `,
  migrations: {
    '001_notes.toml': migration({ name: 'notes', table: 'notes' }),
    '002_slow.toml': migration({ name: 'slow', table: 'slow', transform: 'transforms/slow.ts' }),
    '003_memo.toml': migration({ name: 'memo', table: 'memo' }),
    '004_keyed.toml': migration({ name: 'keyed', table: 'keyed' }),
  },
  files: { 'transforms/slow.ts': TRANSFORM },
  stream: true,
})

const { docs } = pipe
const dir = () => join(pipe.project.dir, 'puffgres', 'transforms')
const flag = (name: string, on: boolean) =>
  on ? writeFileSync(join(dir(), name), '') : rmSync(join(dir(), name), { force: true })

describe('row identity', () => {
  test('a TOAST re-read after DROP COLUMN reads the columns the table has now (the stream goes on)', async () => {
    const body = BIG()
    await pipe.db.sql`INSERT INTO notes VALUES (1, 'one', 7, ${body})`
    await waitFor('note 1', () => docs('notes').get(1)?.body === body)
    // while the stream is stopped: an update that leaves the TOASTed body alone, then the column list changes.
    // On restart the update is replayed with the relation message of its time, which still lists `extra`.
    await pipe.stream.stop()
    await pipe.db.sql`UPDATE notes SET name = 'uno' WHERE id = 1`
    await pipe.db.sql`ALTER TABLE notes DROP COLUMN extra`
    await pipe.startStream()
    await waitFor('note 1 renamed, body kept', () => docs('notes').get(1)?.name === 'uno', 30_000)
    expect(docs('notes').get(1)?.body).toBe(body)
    expect(pipe.stream.logs.join('\n')).not.toContain('writing a batch failed')
    // and the stream goes on
    await pipe.db.sql`INSERT INTO notes VALUES (2, 'two', 'b2')`
    await waitFor('note 2', () => docs('notes').get(2)?.name === 'two')
  })

  test('a TOAST re-read after a column and the table were renamed finds the table by OID', async () => {
    const body = BIG()
    await pipe.db.sql`INSERT INTO memo VALUES (1, 'one', ${body})`
    await waitFor('memo 1', () => docs('memo').get(1)?.body === body)
    // in the update's own transaction: its relation message names `memo` and `label`, which are gone by the re-read
    await pipe.db.sql.begin(async (tx) => {
      await tx`UPDATE memo SET label = 'uno' WHERE id = 1`
      await tx`ALTER TABLE memo RENAME COLUMN label TO caption`
      await tx`ALTER TABLE memo RENAME TO memo_renamed`
    })
    try {
      await waitFor('memo 1 re-read', () => docs('memo').get(1)?.caption === 'uno', 30_000)
      expect(docs('memo').get(1)?.body).toBe(body)
      expect(pipe.stream.logs.join('\n')).not.toContain('writing a batch failed')
    } finally {
      await pipe.db.sql`ALTER TABLE memo_renamed RENAME TO memo` // the project names it `memo`
    }
  })

  test('a TOAST re-read after the id column was renamed: a dead letter, and the stream goes on', async () => {
    await pipe.db.sql`INSERT INTO keyed VALUES (1, 1, ${BIG()})`
    await waitFor('keyed 1', () => docs('keyed').get(1)?.n === 1)
    await pipe.db.sql.begin(async (tx) => {
      await tx`UPDATE keyed SET n = 2 WHERE id = 1`
      await tx`ALTER TABLE keyed RENAME COLUMN id TO key`
    })
    try {
      await waitFor(
        'a dead letter for keyed 1',
        async () =>
          (await pipe.db.sql`SELECT error FROM __puffgres_dlq WHERE mapping = 'keyed' AND doc_id = '1'`)[0]?.error
            ?.includes('re-read: id column(s) id no longer in public.keyed (renamed or dropped)'),
      )
      await pipe.db.sql`INSERT INTO notes (id, name) VALUES (3, 'three')`
      await waitFor('the stream goes on', () => docs('notes').get(3)?.name === 'three')
    } finally {
      await pipe.db.sql`ALTER TABLE keyed RENAME COLUMN key TO id`
    }
  })

  test('dlq retry does not bring back a row deleted while its transform ran', async () => {
    flag('reject', true)
    await pipe.db.sql`INSERT INTO slow VALUES (5, 'five')`
    const entry = async () =>
      (await pipe.db.sql<{ id: string }[]>`SELECT id::text FROM __puffgres_dlq WHERE doc_id = '5'`)[0]
    await waitFor('a dead letter for 5', async () => !!(await entry()))
    const { id } = (await entry())!
    flag('reject', false)
    flag('slow', true)
    try {
      const retry = pipe.cli('dlq', 'retry', '--id', id)
      // the retry has read row 5 (it exists) and waits in its transform
      await waitFor('the retry in its transform', () => existsSync(join(dir(), 'started')), 30_000)
      const before = pipe.stream.flushes.length
      await pipe.db.sql`DELETE FROM slow WHERE id = 5`
      // the stream applies the delete first: there is no document yet, so it deletes nothing
      await waitFor('the stream handled the delete', () => pipe.stream.flushes.slice(before).some((f) => f.docs > 0))
      flag('release', true)
      const r = await retry
      expect(r.code).toBe(0)
      expect(docs('slow').has(5)).toBe(false)
    } finally {
      for (const f of ['slow', 'started', 'release']) flag(f, false)
    }
  })

  test('verify --repair does not bring back a row deleted while its transform ran', async () => {
    await pipe.db.sql`INSERT INTO slow VALUES (6, 'six')`
    await waitFor('document 6', () => docs('slow').get(6)?.name === 'six')
    // drift: the document went missing, so the repair writes it again from the row
    await pipe.namespace('slow').write({ deletes: [6] })
    const started = join(dir(), 'started')
    flag('slow', true)
    try {
      const verify = pipe.cli('verify', 'slow', '--repair')
      // verify's projection transforms row 6 first
      await waitFor('the projection in its transform', () => existsSync(started), 30_000)
      flag('started', false)
      flag('release', true)
      // then the repair, which has read row 6 again (it exists)
      await waitFor('the repair in its transform', () => existsSync(started), 30_000)
      const before = pipe.stream.flushes.length
      await pipe.db.sql`DELETE FROM slow WHERE id = 6`
      await waitFor('the stream handled the delete', () => pipe.stream.flushes.slice(before).some((f) => f.docs > 0))
      flag('release', true)
      const r = await verify
      expect(r.out).toMatch(/repaired at [0-9A-F]+\/[0-9A-F]+: 1 upserted, 1 deleted/)
      expect(docs('slow').has(6)).toBe(false)
    } finally {
      for (const f of ['slow', 'started', 'release']) flag(f, false)
    }
  })
})
