// A namespace per tenant (issue 24; docs/ARCHITECTURE.md "A row's documents") end to end on real PostgreSQL and the
// strict local server: each row is written to the namespace its values name (`namespace = "items_{ws}"`), a row that
// moves between tenants leaves the old namespace before it is written to the new one (no copy left behind), a value
// that names no namespace is a dead letter and the stream goes on, TRUNCATE empties every namespace of the mapping,
// and `dlq retry` of a move deletes from the old namespace first.
import { describe, expect, test } from 'bun:test'
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { chunkText } from '../src/pipeline/chunking.ts'
import { CHUNK_ATTR, ROW_ATTR } from '../src/types.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import type { Sink } from '../src/turbopuffer/types.ts'
import { quietBackfill } from './harness/backfill.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor, waitForStreamPast } from './harness/wait.ts'
import { quietLogger, startStream } from './harness/stream.ts'
import { loadConfig } from '../src/config/load.ts'
import { listDeadLetters } from '../src/postgres/dlq.ts'
import { retryDeadLetters } from '../src/ops/dlq-retry.ts'
import { verifyMapping } from '../src/ops/verify.ts'

const pipe = usePipeline({
  name: 'tenants',
  sql: `CREATE TABLE items (id int PRIMARY KEY, ws text, title text);
    ALTER TABLE items REPLICA IDENTITY FULL;
    CREATE TABLE notes (id int PRIMARY KEY, ws text, title text);
    ALTER TABLE notes REPLICA IDENTITY FULL;
    CREATE TABLE pages (id int PRIMARY KEY, ws text, body text);
    ALTER TABLE pages REPLICA IDENTITY FULL;
    ALTER TABLE pages ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE logs (id int PRIMARY KEY, ws int, line text);
    ALTER TABLE logs REPLICA IDENTITY FULL;
    CREATE TABLE kept (id int PRIMARY KEY, ws int, line text);
    ALTER TABLE kept REPLICA IDENTITY FULL;
    CREATE TABLE early (id int PRIMARY KEY, region text NOT NULL, org int NOT NULL, title text);
    CREATE UNIQUE INDEX early_key ON early (id, region, org);
    ALTER TABLE early REPLICA IDENTITY USING INDEX early_key;
    CREATE TABLE racing (id int PRIMARY KEY, ws text NOT NULL, title text);
    ALTER TABLE racing REPLICA IDENTITY FULL;
    INSERT INTO racing SELECT g, 't' || (g % 3), 'r' FROM generate_series(1, 9) g;
    CREATE TABLE moving (id int PRIMARY KEY, ws text NOT NULL, title text);
    ALTER TABLE moving REPLICA IDENTITY FULL;
    INSERT INTO moving SELECT g, 't' || (g % 3), 'm' FROM generate_series(1, 9) g;
    CREATE TABLE tagged (id int PRIMARY KEY, ws text, title text);
    ALTER TABLE tagged REPLICA IDENTITY FULL;
    CREATE TABLE shown (id int PRIMARY KEY, ws text, visible bool, body text);
    ALTER TABLE shown REPLICA IDENTITY FULL;
    ALTER TABLE shown ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE drifting (id int PRIMARY KEY, ws text NOT NULL, title text);
    ALTER TABLE drifting REPLICA IDENTITY FULL;
    INSERT INTO early SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g % 3, 'early ' || g
      FROM generate_series(1, 30) g;`,
  migrations: {
    '001_items.toml': migration({ name: 'items', table: 'items', namespace: 'items_{ws}' }),
    // the transform returns a `ws` attribute and even changes the event: the namespace is still the row's
    '002_notes.toml': migration({
      name: 'notes',
      table: 'notes',
      namespace: 'notes_{ws}',
      transform: 'transforms/notes.ts',
    }),
    '003_pages.toml': migration({
      name: 'pages',
      table: 'pages',
      namespace: 'pages_{ws}',
      extra: '[mapping.chunking]\nsource = "body"\nsize = 100\n',
    }),
    '004_logs.toml': migration({ name: 'logs', table: 'logs', namespace: 'logs_{ws}' }),
    '005_kept.toml': migration({ name: 'kept', table: 'kept', namespace: 'kept_{ws}', extra: 'truncate = "ignore"' }),
    '006_early.toml': migration({ name: 'early', table: 'early', namespace: 'early_{region}_{org}' }),
    '007_racing.toml': migration({ name: 'racing', table: 'racing', namespace: 'racing_{ws}' }),
    '008_moving.toml': migration({ name: 'moving', table: 'moving', namespace: 'moving_{ws}' }),
    '009_drifting.toml': migration({ name: 'drifting', table: 'drifting', namespace: 'drifting_{ws}' }),
    // the transform's document id names the tenant: a move must delete the id the old row's document had
    '010_tagged.toml': migration({
      name: 'tagged',
      table: 'tagged',
      namespace: 'tagged_{ws}',
      transform: 'transforms/tagged.ts',
    }),
    // the same transform with a membership predicate: a row may move and leave the membership in one change
    '011_shown.toml': migration({
      name: 'shown',
      table: 'shown',
      namespace: 'shown_{ws}',
      membership: 'visible = true',
      transform: 'transforms/tagged.ts',
    }),
  },
  files: {
    'transforms/notes.ts': `export default function (event) {
  if (event.type === 'delete') return { type: 'delete' }
  const ws = event.new.ws
  event.new.ws = 'chosen_by_the_transform'
  return { type: 'upsert', attributes: { loud: event.new.title.toUpperCase(), ws: 'attr-' + ws } }
}
`,
    'transforms/tagged.ts': `export default function (event) {
  if (event.type === 'delete') return { type: 'delete', id: event.old.ws + ':' + event.old.id }
  return { type: 'upsert', id: event.new.ws + ':' + event.new.id, attributes: { title: event.new.title } }
}
`,
  },
  stream: true,
})

/** The namespaces of the local server whose names start with `prefix`, each with its document ids (sorted). */
function placed(prefix: string): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {}
  for (const ns of pipe.server.namespaces().filter((n) => n.startsWith(prefix)).sort()) {
    const ids = [...pipe.docs(ns).keys()].sort((a, b) => Number(a) - Number(b))
    if (ids.length) out[ns] = ids
  }
  return out
}

async function expectPlaced(prefix: string, want: Record<string, unknown[]>, what: string): Promise<void> {
  // a generous wait: the machine is shared with benchmarks
  await waitFor(what, () => JSON.stringify(placed(prefix)) === JSON.stringify(want), 60_000).catch((e) => {
    // the stream's warnings and errors say why, if it stopped
    const logs = pipe.stream.logs.filter((l) => /warn|error/.test(l)).slice(-5).join('\n')
    throw new Error(`${e.message}: ${JSON.stringify(placed(prefix))}, want ${JSON.stringify(want)}\n${logs}`)
  })
}

/** `n` paragraphs of 80 characters: with chunks of 100 characters, one chunk each. */
function body(n: number, tag = 'p'): string {
  const paras: string[] = []
  for (let i = 0; i < n; i++) paras.push(`${tag}${i} `.padEnd(79, 'x') + '.')
  return paras.join('\n\n')
}

describe('a namespace per tenant, streamed', () => {
  test('rows go to the namespace of their values', async () => {
    await pipe.db.sql`INSERT INTO items VALUES (1, 'a', 'one'), (2, 'b', 'two'), (3, 'a', 'three'), (4, 'c.d', 'x')`
    await expectPlaced('items_', { items_a: [1, 3], items_b: [2], 'items_c.d': [4] }, 'each row in its tenant')
    expect(pipe.docs('items_a').get(1)).toEqual({ ws: 'a', title: 'one' })
  })

  test.skipIf(!('Bun' in globalThis))(
    "on Bun, writes keep their own connections: no word of fetch's 256 requests at once",
    () => {
      expect(pipe.stream.logs.some((l) => l.includes('BUN_CONFIG_MAX_HTTP_REQUESTS=1024'))).toBe(false)
    },
  )

  test.skipIf(!('Bun' in globalThis))(
    "on Bun through fetch (PUFFGRES_HTTP=fetch, a proxy): run says how to lift fetch's 256 requests at once",
    async () => {
      // read by the sink when run starts: set for this run only
      const saved = { http: process.env.PUFFGRES_HTTP, max: process.env.BUN_CONFIG_MAX_HTTP_REQUESTS }
      process.env.PUFFGRES_HTTP = 'fetch'
      delete process.env.BUN_CONFIG_MAX_HTTP_REQUESTS
      let run: ReturnType<typeof startStream> | undefined
      try {
        run = startStream(pipe.project.config, { slot: 'through_fetch' })
        const hint = () => run!.logs.find((l) => l.includes('BUN_CONFIG_MAX_HTTP_REQUESTS=1024'))
        await waitFor('the hint', () => hint() !== undefined, 20_000)
        expect(hint()).toContain('at most 256 write requests at once')
      } finally {
        if (saved.http === undefined) delete process.env.PUFFGRES_HTTP
        else process.env.PUFFGRES_HTTP = saved.http
        if (saved.max !== undefined) process.env.BUN_CONFIG_MAX_HTTP_REQUESTS = saved.max
        await run?.stop()
        await pipe.db.sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
          WHERE slot_name = 'through_fetch'`
      }
    },
  )

  test('a row that moves between tenants leaves the old namespace: no copy left behind', async () => {
    await pipe.db.sql`UPDATE items SET ws = 'b', title = 'one moved' WHERE id = 1`
    await expectPlaced('items_', { items_a: [3], items_b: [1, 2], 'items_c.d': [4] }, 'row 1 moved to b')
    expect(pipe.docs('items_b').get(1)).toEqual({ ws: 'b', title: 'one moved' })
    // and back, twice in one transaction (the changes collapse: the row must still leave every namespace it was in)
    await pipe.db.sql.begin(async (tx) => {
      await tx`UPDATE items SET ws = 'c.d' WHERE id = 1`
      await tx`UPDATE items SET ws = 'a' WHERE id = 1`
    })
    await expectPlaced('items_', { items_a: [1, 3], items_b: [2], 'items_c.d': [4] }, 'row 1 back in a')
  })

  test('a key change and a move at once: the old key leaves the old namespace, the new key is in the new one', async () => {
    await pipe.db.sql`UPDATE items SET id = 30, ws = 'b' WHERE id = 3`
    await expectPlaced('items_', { items_a: [1], items_b: [2, 30], 'items_c.d': [4] }, 'row 3 is 30 in b')
  })

  test('moves racing deletes, and a move right behind a slow write (order per row across namespaces)', async () => {
    // a move and a delete in one transaction: the delete goes to the new namespace, the old one is left too
    await pipe.db.sql.begin(async (tx) => {
      await tx`UPDATE items SET ws = 'e' WHERE id = 2`
      await tx`DELETE FROM items WHERE id = 2`
    })
    // the same in separate transactions, back to back
    await pipe.db.sql`INSERT INTO items VALUES (5, 'a', 'five')`
    await pipe.db.sql`UPDATE items SET ws = 'f' WHERE id = 5`
    await pipe.db.sql`DELETE FROM items WHERE id = 5`
    await expectPlaced('items_', { items_a: [1], items_b: [30], 'items_c.d': [4] }, 'rows 2 and 5 nowhere')
    // a slow service: the insert in g is in flight when the move to h arrives; the move waits for it, so its delete
    // in g lands after the insert, and no late write brings the row back to g
    pipe.server.setLatency(300)
    try {
      await pipe.db.sql`INSERT INTO items VALUES (6, 'g', 'six')`
      await pipe.db.sql`UPDATE items SET ws = 'h' WHERE id = 6`
      await expectPlaced('items_', { items_a: [1], items_b: [30], 'items_c.d': [4], items_h: [6] }, 'row 6 in h only')
    } finally {
      pipe.server.setLatency(0)
    }
    await new Promise((r) => setTimeout(r, 700))
    expect(placed('items_')).toEqual({ items_a: [1], items_b: [30], 'items_c.d': [4], items_h: [6] })
  })

  test('a value that names no namespace, and NULL, are dead letters naming row, value and fix; the stream goes on', async () => {
    await pipe.db.sql`INSERT INTO items VALUES (7, 'not a name!', 'seven'), (8, NULL, 'eight')`
    // a row that was in a tenant and moves to NULL leaves it (the dead letter keeps the rest)
    await pipe.db.sql`UPDATE items SET ws = NULL WHERE id = 4`
    await pipe.db.sql`INSERT INTO items VALUES (9, 'a', 'nine')`
    await expectPlaced('items_', { items_a: [1, 9], items_b: [30], items_h: [6] }, 'row 9 written after them')
    // batches land in any order: wait for all three, then take them by row
    await waitFor('three dead letters', async () => (await pipe.deadLetters('items')).length === 3)
    const dead = (await pipe.deadLetters('items')).sort((a, b) => Number(a.doc_id) - Number(b.doc_id))
    expect(dead.map((d) => d.doc_id)).toEqual(['4', '7', '8'])
    dead.shift()
    expect(dead[0].error).toMatch(/^mapping items: row 7 \(ws = "not a name!"\): namespace "items_\{ws\}" gives /)
    expect(dead[0].error).toContain('map the values in a transform or route on another column')
    expect(dead[1].error).toBe(
      'mapping items: row 8 (ws = NULL): namespace "items_{ws}": ws is NULL, so the row has no namespace; make the ' +
        'column NOT NULL or leave such rows out with a membership predicate (ws IS NOT NULL)',
    )
    // a row that never had a namespace is deleted: nothing to delete, no second dead letter
    await pipe.db.sql`INSERT INTO items VALUES (11, NULL, 'eleven')`
    await waitFor('the dead letter of row 11', async () => (await pipe.deadLetters('items')).length === 4)
    await pipe.db.sql`DELETE FROM items WHERE id = 11`
    await pipe.db.sql`INSERT INTO items VALUES (12, 'a', 'twelve')`
    await expectPlaced('items_', { items_a: [1, 9, 12], items_b: [30], items_h: [6] }, 'row 12 written after it')
    const kinds = await pipe.db.sql`SELECT event->>'type' AS type FROM __puffgres_dlq WHERE doc_id = '11'`
    expect(kinds.map((k) => k.type)).toEqual(['insert'])
    // fixed in the table, retried: written where they belong now
    await pipe.db.sql`UPDATE items SET ws = 'fixed' WHERE id IN (7, 8, 4)`
    await expectPlaced(
      'items_',
      { items_a: [1, 9, 12], items_b: [30], items_fixed: [4, 7, 8], items_h: [6] },
      'the fixed rows streamed',
    )
    await pipe.db.sql`DELETE FROM __puffgres_dlq WHERE mapping = 'items'`
  })

  test("with a transform: the namespace is the row's, whatever the transform returns or changes", async () => {
    await pipe.db.sql`INSERT INTO notes VALUES (1, 'a', 'hello'), (2, 'b', 'world')`
    await expectPlaced('notes_', { notes_a: [1], notes_b: [2] }, 'notes in their tenants')
    expect(pipe.docs('notes_a').get(1)).toEqual({ loud: 'HELLO', ws: 'attr-a' })
    await pipe.db.sql`UPDATE notes SET ws = 'b' WHERE id = 1`
    await expectPlaced('notes_', { notes_b: [1, 2] }, 'note 1 moved')
    await pipe.db.sql`DELETE FROM notes WHERE id = 2`
    await expectPlaced('notes_', { notes_b: [1] }, 'note 2 deleted')
    expect(pipe.server.namespaces().some((n) => n.includes('chosen'))).toBe(false)
  })

  test("a transform whose document id names the tenant: a move deletes the old row's document, not the new id", async () => {
    await pipe.db.sql`INSERT INTO tagged VALUES (1, 'a', 'one'), (2, 'a', 'two')`
    await expectPlaced('tagged_', { tagged_a: ['a:1', 'a:2'] }, 'tagged rows in a')
    await pipe.db.sql`UPDATE tagged SET ws = 'b' WHERE id = 1`
    // the code before: the delete in tagged_a was of 'b:1', so 'a:1' stayed readable in the old tenant
    await expectPlaced('tagged_', { tagged_a: ['a:2'], tagged_b: ['b:1'] }, 'tagged row 1 moved to b')
    // two moves in one transaction (collapsed into one change): every namespace it passed through is left
    await pipe.db.sql.begin(async (tx) => {
      await tx`UPDATE tagged SET ws = 'c' WHERE id = 2`
      await tx`UPDATE tagged SET ws = 'd' WHERE id = 2`
    })
    await expectPlaced('tagged_', { tagged_b: ['b:1'], tagged_d: ['d:2'] }, 'tagged row 2 moved to d')
  })

  test('a transform whose document id names the tenant: a row moved to no namespace (NULL) leaves its old one', async () => {
    await pipe.db.sql`INSERT INTO tagged VALUES (3, 'a', 'three')`
    await expectPlaced('tagged_', { tagged_a: ['a:3'], tagged_b: ['b:1'], tagged_d: ['d:2'] }, 'tagged row 3 in a')
    await pipe.db.sql`UPDATE tagged SET ws = NULL WHERE id = 3`
    // the code before: the delete in tagged_a was of the row's id (3), so 'a:3' stayed readable there
    await expectPlaced('tagged_', { tagged_b: ['b:1'], tagged_d: ['d:2'] }, 'tagged row 3 gone from a')
    await waitFor('the dead letter of row 3', async () => (await pipe.deadLetters('tagged')).length === 1)
    await pipe.db.sql`DELETE FROM __puffgres_dlq WHERE mapping = 'tagged'`
  })

  test('a transform whose document id names the tenant: a row that moves and leaves the membership at once', async () => {
    await pipe.db.sql`INSERT INTO shown VALUES (1, 'a', true, 'short'), (2, 'a', true, ${body(40)})`
    await expectPlaced('shown_', { shown_a: ['a:1', 'a:2'] }, 'shown rows in a')
    // the delete (not a member any more) is built from the new values: the old ones name the document in a
    await pipe.db.sql`UPDATE shown SET ws = 'b', visible = false WHERE id = 1`
    await expectPlaced('shown_', { shown_a: ['a:2'] }, 'shown row 1 nowhere')
    // the same with a long body left unchanged (TOASTed): the row is re-read, and found not to be a member
    await pipe.db.sql`UPDATE shown SET ws = 'b', visible = false WHERE id = 2`
    await expectPlaced('shown_', {}, 'shown row 2 nowhere')
  })

  test('a chunked mapping with tenants: a move takes every chunk of the row to the new namespace', async () => {
    await pipe.db.sql`INSERT INTO pages VALUES (1, 'a', ${body(5)}), (2, 'b', ${body(2)})`
    const chunks = (ns: string, key: string) =>
      [...pipe.docs(ns).values()].filter((d) => d[ROW_ATTR] === key).map((d) => d[CHUNK_ATTR]).sort()
    await waitFor('5 chunks in pages_a', () => chunks('pages_a', '1').length === 5)
    await pipe.db.sql`UPDATE pages SET ws = 'b', body = ${body(3, 'q')} WHERE id = 1`
    await waitFor('3 chunks in pages_b', () => chunks('pages_b', '1').length === 3)
    expect(chunks('pages_a', '1')).toEqual([])
    expect(chunks('pages_b', '1')).toEqual([0, 1, 2])
    expect(pipe.docs('pages_b').get('1#0')!.chunk).toBe(chunkText(body(3, 'q'), { size: 100 })[0].text)
    expect(chunks('pages_b', '2')).toEqual([0, 1])
    await pipe.db.sql`DELETE FROM pages WHERE id = 1`
    await waitFor('row 1 has no chunks', () => chunks('pages_b', '1').length === 0)
    expect(chunks('pages_b', '2')).toEqual([0, 1])
    // a move that leaves a long (TOASTed) body unchanged: the change lacks it, the row is re-read, and still leaves b
    await pipe.db.sql`UPDATE pages SET body = ${body(40)} WHERE id = 2`
    await waitFor('40 chunks in pages_b', () => chunks('pages_b', '2').length === 40)
    await pipe.db.sql`UPDATE pages SET ws = 'c' WHERE id = 2`
    await waitFor('40 chunks in pages_c', () => chunks('pages_c', '2').length === 40)
    expect(chunks('pages_b', '2')).toEqual([])
  })

  test('TRUNCATE empties every namespace of the mapping; truncate = "ignore" keeps them', async () => {
    await pipe.db.sql`INSERT INTO logs SELECT g, g % 4, 'l' FROM generate_series(1, 12) g`
    await pipe.db.sql`INSERT INTO kept SELECT g, g % 3, 'k' FROM generate_series(1, 6) g`
    await expectPlaced(
      'logs_',
      { logs_0: [4, 8, 12], logs_1: [1, 5, 9], logs_2: [2, 6, 10], logs_3: [3, 7, 11] },
      'logs in 4 tenants',
    )
    await expectPlaced('kept_', { kept_0: [3, 6], kept_1: [1, 4], kept_2: [2, 5] }, 'kept in 3 tenants')
    await pipe.db.sql`TRUNCATE logs, kept`
    await pipe.db.sql`INSERT INTO logs VALUES (100, 1, 'after')`
    await expectPlaced('logs_', { logs_1: [100] }, 'only the row written after the truncate')
    expect(placed('kept_')).toEqual({ kept_0: [3, 6], kept_1: [1, 4], kept_2: [2, 5] })
    // the emptied namespaces are kept (docs: a row moving back would race their deletion)
    expect(pipe.server.namespaces().filter((n) => n.startsWith('logs_')).sort()).toEqual([
      'logs_0',
      'logs_1',
      'logs_2',
      'logs_3',
    ])
  })

  test('`dlq retry` of a move whose old-namespace delete was refused deletes there first', async () => {
    await pipe.db.sql`DELETE FROM __puffgres_dlq WHERE mapping = 'items'`
    await pipe.db.sql`INSERT INTO items VALUES (20, 'p', 'twenty')`
    await expectPlaced('items_p', { items_p: [20] }, 'row 20 in p')
    // the move's first request (the delete in p) is refused: a dead letter, and nothing written to q
    pipe.server.failNext(1, 400)
    await pipe.db.sql`UPDATE items SET ws = 'q' WHERE id = 20`
    await waitFor('the dead letter', async () => (await pipe.deadLetters('items')).length === 1)
    const [entry] = await pipe.deadLetters('items')
    expect(entry.doc_id).toBe('20')
    expect(entry.error).toMatch(/^could not delete the row from namespace "items_p" it moved out of/)
    expect(placed('items_p')).toEqual({ items_p: [20] })
    expect(placed('items_q')).toEqual({})
    const [{ event }] = await pipe.db.sql`SELECT event FROM __puffgres_dlq WHERE mapping = 'items'`
    expect(event.leave_namespaces).toEqual(['items_p'])
    const r = await pipe.cli('dlq', 'retry', '--mapping', 'items')
    expect(r.out).toContain('1 retried, 0 failed')
    expect(placed('items_p')).toEqual({})
    expect(placed('items_q')).toEqual({ items_q: [20] })
  })

  test('`dlq retry` of a refused move whose transform names the document after the tenant deletes the old id', async () => {
    await pipe.db.sql`DELETE FROM __puffgres_dlq WHERE mapping = 'tagged'`
    await pipe.db.sql`INSERT INTO tagged VALUES (20, 'p', 'twenty')`
    await expectPlaced('tagged_p', { tagged_p: ['p:20'] }, 'tagged row 20 in p')
    // the move's delete in p is refused (the request of its two deletes, then each half): a dead letter
    pipe.server.failNext(3, 400)
    await pipe.db.sql`UPDATE tagged SET ws = 'q' WHERE id = 20`
    await waitFor('the dead letter', async () => (await pipe.deadLetters('tagged')).length === 1)
    expect(placed('tagged_p')).toEqual({ tagged_p: ['p:20'] })
    const r = await pipe.cli('dlq', 'retry', '--mapping', 'tagged')
    expect(r.out).toContain('1 retried, 0 failed')
    // the code before: the retry deleted 'q:20' in p (its current values' id), and 'p:20' stayed readable there
    expect(placed('tagged_p')).toEqual({})
    expect(placed('tagged_q')).toEqual({ tagged_q: ['q:20'] })
  })

  test("a tenant's first write reads no schema: the namespace's types are taken as none", async () => {
    const other = () => {
      const s = pipe.server.stats()
      return s.requests - s.writes - s.queries
    }
    const before = other()
    await pipe.db.sql`INSERT INTO items VALUES (40, 'new1', 'x'), (41, 'new2', 'y'), (42, 'new3', 'z')`
    await waitFor('rows 40–42', () => ['items_new1', 'items_new2', 'items_new3'].every((n) => pipe.docs(n).size === 1))
    // no schema read (nor any other request) besides the writes
    expect(other() - before).toBe(0)
  })

  test("a tenant namespace whose attribute types differ from the mapping's: the refused write is written again with its types", async () => {
    // another process made items_typed with `title` an int: the stream, which took its types as none, declares it a
    // string and is refused; it reads the types then, converts the value and writes the row (no dead letter)
    const other = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
    await other.write('items_typed', [{ kind: 'upsert', id: 999, attributes: { title: 5 }, version: '0' }], {
      schema: { title: { type: 'int' } },
    })
    await pipe.db.sql`DELETE FROM __puffgres_dlq WHERE mapping = 'items'`
    await pipe.db.sql`INSERT INTO items VALUES (43, 'typed', '42')`
    await waitFor('row 43 in items_typed', () => pipe.docs('items_typed').has(43))
    expect(pipe.docs('items_typed').get(43)?.title).toBe(42)
    expect(await pipe.deadLetters('items')).toEqual([])
    // verify reads the namespace's types (it writes nothing again): row 43's 42 is what it expects, document 999 extra
    const r = JSON.parse((await pipe.cli('verify', 'items', '--tenant', 'typed', '--json')).out)
    expect(r.mismatched.count).toBe(0)
    expect(r.extra).toEqual({ count: 1, ids: [999] })
  })
})

describe('backfill', () => {
  test('writes each row to the namespace of its values (several placeholders)', async () => {
    const r = await pipe.cli('backfill', 'early')
    expect(r.code).toBe(0)
    const want: Record<string, unknown[]> = {}
    for (let g = 1; g <= 30; g++) (want[`early_${g % 2 === 0 ? 'eu' : 'us'}_${g % 3}`] ??= []).push(g)
    for (const k of Object.keys(want)) want[k].sort((a, b) => Number(a) - Number(b))
    expect(placed('early_')).toEqual(Object.fromEntries(Object.entries(want).sort()))
    // a move streamed after it (the identity index holds the placeholder columns)
    await pipe.db.sql`UPDATE early SET org = 7 WHERE id = 1`
    await waitFor('row 1 in early_us_7', () => pipe.docs('early_us_7').has(1))
    expect(pipe.docs('early_us_1').has(1)).toBe(false)
  })

  test("a row deleted while its page is written: the page's re-check deletes it in the namespace it went to", async () => {
    // the race made to happen: the backfill has read row 4 (tenant t1); before its page lands the row is deleted and
    // the stream applies that (nothing there yet); the page's late write brings the row back, and only the re-check
    // (which knows the row by its key alone) can take it away, from the namespace the page wrote it to
    const inner = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
    let raced = false
    const sink: Sink = {
      write: async (ns, ops, opts) => {
        if (!raced && ns === 'racing_t1' && ops.some((o) => o.id === 4)) {
          raced = true
          await pipe.db.sql`DELETE FROM racing WHERE id = 4`
          await waitForStreamPast(pipe.db.sql, 'the stream to apply the delete')
        }
        return inner.write(ns, ops, opts)
      },
      deleteAllBefore: (ns, version) => inner.deleteAllBefore(ns, version),
      stats: () => inner.stats(),
      attributeTypes: (ns) => inner.attributeTypes(ns),
      listNamespaces: (prefix, o) => inner.listNamespaces(prefix, o),
    }
    const r = await quietBackfill(pipe.project.config, { mapping: 'racing', batchSize: 100, sink })
    expect(r.outcome).toBe('done')
    expect(raced).toBe(true)
    expect(placed('racing_')).toEqual({ racing_t0: [3, 6, 9], racing_t1: [1, 7], racing_t2: [2, 5, 8] })
    expect(await pipe.deadLetters('racing')).toEqual([])
  })
  test("a row that moves to another tenant while its page is written: the re-check takes the page's copy away", async () => {
    // the race made to happen: the backfill has read row 4 (tenant t1); before its page lands the row moves to t9 and
    // the stream applies that (its delete in moving_t1 finds nothing yet, no tombstone); the page's late write puts
    // the old copy in moving_t1, where the stream will never look again: only the re-check can take it away
    const inner = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
    let raced = false
    const sink: Sink = {
      write: async (ns, ops, opts) => {
        if (!raced && ns === 'moving_t1' && ops.some((o) => o.id === 4)) {
          raced = true
          await pipe.db.sql`UPDATE moving SET ws = 't9' WHERE id = 4`
          await waitForStreamPast(pipe.db.sql, 'the stream to apply the move')
        }
        return inner.write(ns, ops, opts)
      },
      deleteAllBefore: (ns, version) => inner.deleteAllBefore(ns, version),
      stats: () => inner.stats(),
      attributeTypes: (ns) => inner.attributeTypes(ns),
      listNamespaces: (prefix, o) => inner.listNamespaces(prefix, o),
    }
    const r = await quietBackfill(pipe.project.config, { mapping: 'moving', batchSize: 100, sink })
    expect(r.outcome).toBe('done')
    expect(raced).toBe(true)
    expect(placed('moving_')).toEqual({ moving_t0: [3, 6, 9], moving_t1: [1, 7], moving_t2: [2, 5, 8], moving_t9: [4] })
    expect(await pipe.deadLetters('moving')).toEqual([])
  })
})

describe('migrate', () => {
  test('refuses a template whose columns the replica identity does not hold, and says how to fix it', async () => {
    await pipe.db.sql`CREATE TABLE plain (id int PRIMARY KEY, ws text)`
    const file = join(pipe.project.dir, 'puffgres', 'migrations', '099_plain.toml')
    writeFileSync(file, migration({ name: 'plain', table: 'plain', namespace: 'plain_{ws}' }))
    try {
      const r = await pipe.cli('migrate', '--dry-run')
      expect(r.code).toBe(1)
      expect(r.err).toContain(
        'puffgres/migrations/099_plain.toml: target.namespace "plain_{ws}": ws is not in the replica identity of ' +
          'public.plain (id), so a delete or a move between tenants cannot name the namespace the row leaves; run: ' +
          'ALTER TABLE "public"."plain" REPLICA IDENTITY FULL (or a unique index on id, ws, then ALTER TABLE ' +
          '"public"."plain" REPLICA IDENTITY USING INDEX <index>)',
      )
      await pipe.db.sql`ALTER TABLE plain REPLICA IDENTITY FULL`
      const ok = await pipe.cli('migrate', '--dry-run')
      expect(ok.code).toBe(0)
      expect(ok.out).toContain('public.plain → namespace plain_{ws} (a namespace per ws)')
    } finally {
      if (existsSync(file)) rmSync(file)
    }
  })

  test('doctor shows the template', async () => {
    const r = await pipe.cli('doctor')
    expect(r.out).toContain('"items_{ws}" (ws in the replica identity)')
  })
})

describe('dlq retry racing the stream', () => {
  /** the stream has applied everything committed so far (the slot confirmed past it) */
  async function streamCaughtUp(what: string): Promise<void> {
    const [{ lsn }] = await pipe.db.sql`SELECT pg_current_wal_insert_lsn()::text AS lsn`
    await waitFor(
      what,
      async () =>
        (await pipe.db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok FROM pg_replication_slots
        WHERE slot_name = 'puffgres'`)[0]?.ok,
      60_000,
    )
  }

  test("a row that moves (or is deleted) while its retry is written: no copy left in the retry's namespace", async () => {
    await pipe.db.sql`DELETE FROM __puffgres_dlq WHERE mapping = 'moving'`
    // two dead letters: their first writes refused for good
    pipe.server.failNext(2, 400) // the first write to a new tenant and its re-send with the types read
    await pipe.db.sql`INSERT INTO moving VALUES (50, 'u1', 'x')`
    await waitFor('the first dead letter', async () => (await pipe.deadLetters('moving')).length === 1)
    pipe.server.failNext(2, 400)
    await pipe.db.sql`INSERT INTO moving VALUES (51, 'u1', 'y')`
    await waitFor('the second dead letter', async () => (await pipe.deadLetters('moving')).length === 2)
    pipe.server.failNext(0) // none left over for the writes that follow
    expect(placed('moving_u')).toEqual({})
    // the retry has read each row (tenant u1); before its write lands the row moves to u2 (50) or is deleted (51)
    // and the stream applies that (nothing in moving_u1 yet, no tombstone): the retry's late write brings a copy back
    const inner = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
    const raced = new Set<number>()
    const sink: Sink = {
      write: async (ns, ops, opts) => {
        for (const id of [50, 51]) {
          if (raced.has(id) || ns !== 'moving_u1' || !ops.some((o) => o.kind === 'upsert' && o.id === id)) continue
          raced.add(id)
          if (id === 50) await pipe.db.sql`UPDATE moving SET ws = 'u2' WHERE id = 50`
          else await pipe.db.sql`DELETE FROM moving WHERE id = 51`
          await streamCaughtUp(`the stream to apply the change of row ${id}`)
        }
        return inner.write(ns, ops, opts)
      },
      deleteAllBefore: (ns, version) => inner.deleteAllBefore(ns, version),
      stats: () => inner.stats(),
      attributeTypes: (ns) => inner.attributeTypes(ns),
      listNamespaces: (prefix, o) => inner.listNamespaces(prefix, o),
    }
    const config = loadConfig(pipe.project.config)
    const entries = await listDeadLetters(pipe.db.sql, { mapping: 'moving' })
    const out = await retryDeadLetters(config, pipe.db.sql, sink, entries, quietLogger())
    expect([...raced].sort()).toEqual([50, 51])
    expect(out.map((o) => o.doc_id).sort()).toEqual(['50', '51'])
    expect(placed('moving_u')).toEqual({ moving_u2: [50] })
  })
})

describe('verify --repair racing the stream', () => {
  test("a row that moves (or is deleted) while its repair is written: no copy left in the repair's namespace", async () => {
    // two rows whose documents are missing (their writes refused for good)
    pipe.server.failNext(2, 400) // the first write to a new tenant and its re-send with the types read
    await pipe.db.sql`INSERT INTO moving VALUES (60, 'v1', 'x')`
    await waitFor(
      'the first dead letter',
      async () => (await pipe.deadLetters('moving')).some((d) => d.doc_id === '60'),
    )
    pipe.server.failNext(2, 400)
    await pipe.db.sql`INSERT INTO moving VALUES (61, 'v1', 'y')`
    await waitFor(
      'the second dead letter',
      async () => (await pipe.deadLetters('moving')).some((d) => d.doc_id === '61'),
    )
    pipe.server.failNext(0) // none left over for the writes that follow
    expect(placed('moving_v')).toEqual({})
    const raced = new Set<number>()
    class RacingSink extends TurbopufferSink {
      override async write(ns: string, ops: Parameters<TurbopufferSink['write']>[1], opts?: object) {
        for (const id of [60, 61]) {
          if (raced.has(id) || ns !== 'moving_v1' || !ops.some((o) => o.kind === 'upsert' && o.id === id)) continue
          raced.add(id)
          if (id === 60) await pipe.db.sql`UPDATE moving SET ws = 'v2' WHERE id = 60`
          else await pipe.db.sql`DELETE FROM moving WHERE id = 61`
          const [{ lsn }] = await pipe.db.sql`SELECT pg_current_wal_insert_lsn()::text AS lsn`
          await waitFor(
            `the stream to apply the change of row ${id}`,
            async () =>
              (await pipe.db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok FROM pg_replication_slots
              WHERE slot_name = 'puffgres'`)[0]?.ok,
            60_000,
          )
        }
        return super.write(ns, ops, opts)
      }
    }
    const config = loadConfig(pipe.project.config)
    const mapping = config.mappings.find((m) => m.name === 'moving')!
    const sink = new RacingSink({ api_key: 'test-key', base_url: pipe.server.url })
    const report = await verifyMapping(config, mapping, { sql: pipe.db.sql, sink }, {
      repair: true,
      log: quietLogger(),
    })
    expect(report.missing.ids.map(Number).filter((id) => id >= 60).sort()).toEqual([60, 61])
    expect([...raced].sort()).toEqual([60, 61])
    expect(placed('moving_v')).toEqual({ moving_v2: [60] })
  })
})

describe('replica identity changed after migrate', () => {
  test('a delete that could not name its tenant: `dlq retry` deletes the document wherever it is', async () => {
    await pipe.db.sql`INSERT INTO drifting VALUES (1, 'a', 'one'), (2, 'b', 'two')`
    await expectPlaced('drifting_', { drifting_a: [1], drifting_b: [2] }, 'both rows placed')
    // the identity no longer holds ws: the delete cannot say which tenant's namespace the row was in
    await pipe.db.sql`ALTER TABLE drifting REPLICA IDENTITY DEFAULT`
    await pipe.db.sql`DELETE FROM drifting WHERE id = 1`
    await waitFor('the dead letter', async () => (await pipe.deadLetters('drifting')).length === 1)
    const [entry] = await pipe.deadLetters('drifting')
    expect(entry.error).toMatch(/REPLICA IDENTITY FULL .*dlq retry/)
    await pipe.db.sql`ALTER TABLE drifting REPLICA IDENTITY FULL`
    const r = await pipe.cli('dlq', 'retry', '--mapping', 'drifting')
    expect(r.out).toContain('1 retried, 0 failed')
    expect(placed('drifting_')).toEqual({ drifting_b: [2] })
  })

  test("a key change that could not name its tenant: the old key's document is a dead letter, not forgotten", async () => {
    await pipe.db.sql`DELETE FROM __puffgres_dlq WHERE mapping = 'drifting'`
    await pipe.db.sql`ALTER TABLE drifting REPLICA IDENTITY DEFAULT`
    // the change carries the old key (id 2) without ws: the old document's namespace is unknown
    await pipe.db.sql`UPDATE drifting SET id = 20 WHERE id = 2`
    await waitFor('the new key written', () => pipe.docs('drifting_b').has(20))
    await waitFor('the dead letter', async () => (await pipe.deadLetters('drifting')).length === 1)
    const [entry] = await pipe.deadLetters('drifting')
    expect(entry.doc_id).toBe('2')
    expect(entry.error).toMatch(/^mapping drifting: update on public\.drifting without a value for ws .*dlq retry/)
    await pipe.db.sql`ALTER TABLE drifting REPLICA IDENTITY FULL`
    const r = await pipe.cli('dlq', 'retry', '--mapping', 'drifting')
    expect(r.out).toContain('1 retried, 0 failed')
    expect(placed('drifting_')).toEqual({ drifting_b: [20] })
  })
})
