// Every `puffgres dlq` subcommand end to end: a transform that throws for some rows while a flag file exists; the
// stream dead-letters them; list, show, a failing retry, the fix, retries against the rows' current state, clear.
import { beforeAll, describe, expect, test } from 'bun:test'
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { VERSION_ATTR } from '../src/types.ts'
import { loadConfig } from '../src/config/load.ts'
import { addDeadLetters, listDeadLetters } from '../src/postgres/dlq.ts'
import { retryDeadLetters } from '../src/ops/dlq-retry.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import { quietLogger } from './harness/stream.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

let flag: string

// Throws for rows named "bad…" while the file `broken` exists next to it (the "bug"); removing the file "fixes" it.
const TRANSFORM = `import { existsSync } from 'node:fs'
const flag = new URL('./broken', import.meta.url)
export default function (event) {
  if (event.type === 'delete') return { type: 'delete' }
  if (existsSync(flag) && event.new.name.startsWith('bad')) throw new Error('cannot handle ' + event.new.name)
  return { type: 'upsert', attributes: { name: event.new.name } }
}
`

const pipe = usePipeline({
  name: 'dlq',
  sql: `CREATE TABLE items (id int PRIMARY KEY, name text, secret text);
    CREATE TABLE events (dev int, at timestamptz, name text, PRIMARY KEY (dev, at))`,
  migrations: {
    '001_items.toml': migration({ name: 'items', table: 'items', transform: 'transforms/items.ts' }),
    '002_events.toml': migration({
      name: 'events',
      table: 'events',
      id: ['dev', 'at'],
      transform: 'transforms/items.ts',
    }),
  },
  files: { 'transforms/items.ts': TRANSFORM },
})

beforeAll(async () => {
  flag = join(pipe.project.dir, 'puffgres', 'transforms', 'broken')
  writeFileSync(flag, '')
  await pipe.startStream()
})

const dlq = (...args: string[]) => pipe.cli('dlq', ...args)
const docs = () => pipe.docs('items')
const entries = async () =>
  await pipe.db.sql<{ id: string; doc_id: string; attempts: number; error: string }[]>`
    SELECT id::text, doc_id, attempts, error FROM __puffgres_dlq ORDER BY id`

describe('puffgres dlq', () => {
  test('rows a transform rejects are listed and shown', async () => {
    await pipe.db
      .sql`INSERT INTO items VALUES (1, 'one', 's1'), (2, 'bad two', 's2'), (3, 'three', 's3'), (4, 'bad four', 's4')`
    await waitFor('two dead letters', async () => (await entries()).length === 2)
    await waitFor('the good rows', () => docs().size === 2)
    expect([...docs().keys()].sort()).toEqual([1, 3])

    const list = await dlq('list')
    expect(list.code).toBe(0)
    const lines = list.out.split('\n')
    expect(lines[0]).toMatch(/^ID\s+MAPPING\s+DOC ID\s+ATTEMPTS\s+LAST FAILED\s+LSN\s+ERROR$/)
    expect(lines).toHaveLength(3)
    expect(lines[1]).toMatch(
      /^\d+\s+items\s+2\s+1\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+[0-9A-F]+\/[0-9A-F]+\s+.*cannot handle bad two/,
    )
    expect((await dlq('list', '--limit', '1')).out.split('\n')).toHaveLength(2)
    expect((await dlq('list', '--mapping', 'other')).out).toBe('the dead-letter queue is empty')
    const json = JSON.parse((await dlq('list', '--json')).out)
    expect(json.map((e: { doc_id: string }) => e.doc_id)).toEqual(['2', '4'])
    expect(json[0]).toMatchObject({ mapping: 'items', attempts: 1, event: { type: 'insert', new: { id: 2 } } })

    const [first] = await entries()
    const show = await dlq('show', first.id)
    expect(show.code).toBe(0)
    expect(show.out).toContain(`id:              ${first.id}`)
    expect(show.out).toContain('doc id:          2')
    expect(show.out).toMatch(/error: .*cannot handle bad two/)
    expect(show.out).toContain('"name": "bad two"')
    expect((await dlq('show', '999999')).code).toBe(1)
    expect((await dlq('show')).code).toBe(2)
  })

  test('a retry that fails again keeps the entry and counts the attempt', async () => {
    const [first] = await entries()
    const r = await dlq('retry', '--id', first.id)
    expect(r.code).toBe(1)
    expect(r.out).toContain(`failed  ${first.id} (items id 2)`)
    expect(r.out).toContain('0 retried, 1 failed')
    const [after] = await entries()
    expect(after.id).toBe(first.id)
    expect(after.attempts).toBe(2)
    expect(after.error).toContain('cannot handle bad two')
  })

  test("after the fix, retries write the rows' current state and remove the entries", async () => {
    // The stream is stopped, so whatever reaches the namespace now is the retry's doing. Row 2 changes after it
    // failed (a retry of the stale event would write "bad two"); row 4 is deleted meanwhile and a stale document 4
    // waits in the namespace (only a retry that deletes by the row's current state removes it).
    await pipe.stream.stop()
    await pipe.db.sql`UPDATE items SET name = 'good two' WHERE id = 2`
    await pipe.db.sql`DELETE FROM items WHERE id = 4`
    await pipe.namespace('items').write({
      upsert_rows: [{ id: 4, name: 'stale four', [VERSION_ATTR]: '0'.repeat(24) }],
    })
    expect(docs().has(2)).toBe(false)
    expect(docs().get(4)?.name).toBe('stale four')
    rmSync(flag) // the fix
    const [e2, e4] = await entries()

    // a retry whose write fails keeps its entry (and counts the attempt)
    pipe.server.failNext(100, 400)
    const refused = await dlq('retry', '--id', e2.id)
    pipe.server.failNext(0)
    expect(refused.code).toBe(1)
    expect(refused.out).toContain('0 retried, 1 failed')
    const kept = (await entries()).find((e) => e.id === e2.id)
    expect(kept?.attempts).toBe(3)
    expect(kept?.error).toContain('400')
    expect(docs().has(2)).toBe(false)

    const one = await dlq('retry', '--id', e2.id)
    expect(one.code).toBe(0)
    expect(one.out).toBe(`retried ${e2.id} (items id 2): upsert\n1 retried, 0 failed`)
    expect(docs().get(2)?.name).toBe('good two')

    const all = await dlq('retry', '--mapping', 'items')
    expect(all.code).toBe(0)
    expect(all.out).toBe(`retried ${e4.id} (items id 4): delete\n1 retried, 0 failed`)
    expect(docs().has(4)).toBe(false)
    expect(await entries()).toEqual([])

    await pipe.startStream()
  })

  test('a row that fails again while its retry writes keeps its entry (the newer failure is not removed with it)', async () => {
    writeFileSync(flag, '') // the bug again
    await pipe.db.sql`INSERT INTO items VALUES (21, 'bad twenty-one', 'x')`
    await waitFor('the dead letter', async () => (await entries()).some((e) => e.doc_id === '21'))
    rmSync(flag)
    const listed = (await listDeadLetters(pipe.db.sql, { mapping: 'items' })).filter((e) => e.doc_id === '21')
    // while the retry writes, the stream files a newer failure of row 21 on the same entry
    class RacingSink extends TurbopufferSink {
      override async write(ns: string, ops: Parameters<TurbopufferSink['write']>[1], opts?: object) {
        await addDeadLetters(pipe.db.sql, [{
          mapping: 'items',
          docId: '21',
          lsn: 1n << 40n,
          event: {},
          error: 'newer',
        }])
        return await super.write(ns, ops, opts)
      }
    }
    const sink = new RacingSink({ api_key: 'test-key', base_url: pipe.server.url })
    const out = await retryDeadLetters(loadConfig(pipe.project.config), pipe.db.sql, sink, listed, quietLogger())
    expect(out.map((o) => o.ok)).toEqual([false])
    const kept = (await entries()).find((e) => e.doc_id === '21')
    expect(kept?.error).toBe('newer')
    await dlq('clear', '--id', kept!.id)
  })

  test('clear by id, by mapping, all', async () => {
    writeFileSync(flag, '')
    await pipe.db.sql`INSERT INTO items VALUES (10, 'bad ten', 'x'), (11, 'bad eleven', 'x'), (12, 'bad twelve', 'x')`
    await waitFor('three dead letters', async () => (await entries()).length === 3)
    const [a] = await entries()
    expect((await dlq('clear')).code).toBe(2)
    expect((await dlq('clear', '--id', a.id, '--all')).code).toBe(2)
    expect((await dlq('clear', '--id', a.id)).out).toBe('removed 1 entry')
    expect((await dlq('clear', '--id', a.id)).code).toBe(1)
    expect((await dlq('clear', '--mapping', 'other')).out).toBe('removed 0 entries')
    expect((await dlq('clear', '--mapping', 'items')).out).toBe('removed 2 entries')
    await pipe.db.sql`INSERT INTO items VALUES (13, 'bad thirteen', 'x')`
    await waitFor('one dead letter', async () => (await entries()).length === 1)
    expect((await dlq('clear', '--all')).out).toBe('removed 1 entry')
    expect(await entries()).toEqual([])
    expect(existsSync(flag)).toBe(true)
  })

  test('bad usage', async () => {
    expect((await dlq()).code).toBe(2)
    expect((await dlq('frobnicate')).code).toBe(2)
    expect((await dlq('retry')).code).toBe(2)
    expect((await dlq('retry', '--id', 'x')).code).toBe(2)
    const r = await dlq('retry', '--mapping', 'nope')
    expect(r.code).toBe(1)
    expect(r.err).toContain('no mapping named "nope"')
  })

  test('a retry finds a row keyed by a timestamp with microseconds (the entry keeps the key texts)', async () => {
    writeFileSync(flag, '')
    await pipe.db.sql`INSERT INTO events VALUES (3, '2024-05-06 07:08:09.123456+00', 'bad event')`
    await waitFor('the dead letter', async () => (await entries()).length === 1)
    const [e] = await entries()
    rmSync(flag)
    const r = await dlq('retry', '--id', e.id)
    expect(r.out).toBe(`retried ${e.id} (events id 3:2024-05-06T07\\:08\\:09.123456Z): upsert\n1 retried, 0 failed`)
    expect(pipe.docs('events').get('3:2024-05-06T07\\:08\\:09.123456Z')).toEqual({ name: 'bad event' })
  })
})
