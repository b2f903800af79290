// `[mapping.chunking]` end to end on real PostgreSQL and the strict local server (docs/ARCHITECTURE.md, "A row's
// documents"; issue 25): every write of a row replaces all of its chunk documents in one versioned request, so the
// set of chunks a row has in turbopuffer is always exactly the set its text makes now.
import { afterAll, describe, expect, test } from 'bun:test'
import { chunkText } from '../src/pipeline/chunking.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import type { Sink, WriteOptions } from '../src/turbopuffer/types.ts'
import { verifyMapping } from '../src/ops/verify.ts'
import { quietBackfill } from './harness/backfill.ts'
import { quietLogger } from './harness/stream.ts'
import { loadConfig } from '../src/config/load.ts'
import { listDeadLetters } from '../src/postgres/dlq.ts'
import { retryDeadLetters } from '../src/ops/dlq-retry.ts'
import { CHUNK_ATTR, encodeVersion, ROW_ATTR, VERSION_ATTR, type WriteOp } from '../src/types.ts'
import {
  type EmbeddingServer,
  expectedVector,
  providerToml,
  startEmbeddingServer,
} from './fixtures/transforms/embedding-server.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const CHUNKING = '[mapping.chunking]\nsource = "body"\nsize = 100\n'

/** `n` paragraphs of 80 characters: with chunks of 100 characters, one chunk each (paragraph boundaries). */
function body(n: number, tag = 'p'): string {
  const paras: string[] = []
  for (let i = 0; i < n; i++) paras.push(`${tag}${i} `.padEnd(79, 'x') + '.')
  return paras.join('\n\n')
}

let embeddings: EmbeddingServer

// one document per message of a ticket; the original's `op` spelling; own ids when the row asks; one document (the
// single-document form) for a ticket with no messages
const MESSAGES = `export default function (event) {
  if (event.type === 'delete') return { type: 'delete' }
  const t = event.new
  if (!t.messages || t.messages.length === 0) return { type: 'upsert', attributes: { subject: t.subject } }
  return {
    op: 'upsert',
    documents: t.messages.map((m, i) => ({
      ...(t.own_ids ? { id: 'msg-' + t.id + '-' + i } : {}),
      attributes: { subject: t.subject, message: m, n: i },
    })),
  }
}
`

const pipe = usePipeline({
  name: 'chunked',
  prepare: async () => {
    embeddings = await startEmbeddingServer('embed-key')
  },
  // body stored out of line, uncompressed: an update of another column sends it as "unchanged" (TOAST)
  sql: `CREATE TABLE documents (id int PRIMARY KEY, title text, body text, published bool DEFAULT true);
    ALTER TABLE documents ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE early (id int PRIMARY KEY, body text);
    CREATE TABLE notes (id int PRIMARY KEY, body text);
    CREATE TABLE racing (id int PRIMARY KEY, body text);
    CREATE TABLE wide (id int PRIMARY KEY, body text);
    CREATE TABLE mixed (id int PRIMARY KEY, body text, v int DEFAULT 0);
    CREATE TABLE tickets (id int PRIMARY KEY, subject text, messages text[], own_ids bool DEFAULT false);
    INSERT INTO early SELECT g, repeat('early ' || g || ' words here. ', 20) FROM generate_series(1, 30) g;`,
  extra: () => providerToml(embeddings),
  migrations: {
    '001_docs.toml': migration({ name: 'docs', table: 'documents', extra: CHUNKING }),
    '002_pub.toml': migration({
      name: 'pub',
      table: 'documents',
      columns: ['title', 'body', 'published'],
      membership: 'published = true',
      extra: CHUNKING,
    }),
    '003_early.toml': migration({ name: 'early', table: 'early', extra: CHUNKING }),
    '004_notes.toml': migration({
      name: 'notes',
      table: 'notes',
      extra: CHUNKING + '[mapping.embedding]\nsource = "chunk"\n',
    }),
    '005_racing.toml': migration({ name: 'racing', table: 'racing', extra: CHUNKING }),
    '007_wide.toml': migration({
      name: 'wide',
      table: 'wide',
      extra: '[mapping.chunking]\nsource = "body"\nsize = 5000\n',
    }),
    '008_mixed.toml': migration({ name: 'mixed', table: 'mixed', extra: CHUNKING }),
    '009_shout.toml': migration({
      name: 'shout',
      table: 'documents',
      transform: 'transforms/shout.ts',
      extra: CHUNKING,
    }),
    '006_tickets.toml': migration({
      name: 'tickets',
      table: 'tickets',
      transform: 'transforms/messages.ts',
      extra: 'documents = "many"',
    }),
  },
  files: {
    'transforms/messages.ts': MESSAGES,
    'transforms/shout.ts': `export default function (event) {
  if (event.type === 'delete') return { type: 'delete' }
  if (event.new.title === 'skip me') return { type: 'skip' }
  return { type: 'upsert', attributes: { loud: event.new.title.toUpperCase(), body: 'not copied' } }
}
`,
  },
})

afterAll(async () => {
  await embeddings?.close()
})

/** The chunk documents of row `key` in `ns`, by id. */
function chunksOf(ns: string, key: string): Map<unknown, Record<string, unknown>> {
  const out = new Map<unknown, Record<string, unknown>>()
  for (const [id, d] of pipe.docs(ns)) if (d[ROW_ATTR] === key) out.set(id, d)
  return out
}

/** Waits until row `key` of `ns` has exactly the chunks `text` makes (ids, numbers, texts). */
function expectChunks(ns: string, key: string, text: string | null, what: string): Promise<void> {
  return expectChunksOf(ns, key, text, 100, what)
}

async function expectChunksOf(
  ns: string,
  key: string,
  text: string | null,
  size: number,
  what = 'the chunks',
): Promise<void> {
  const want = text === null ? [] : chunkText(text, { size })
  const matches = () => {
    const got = chunksOf(ns, key)
    return got.size === want.length &&
      want.every((c) =>
        got.get(`${key}#${c.index}`)?.chunk === c.text && got.get(`${key}#${c.index}`)?.[CHUNK_ATTR] === c.index
      )
  }
  await waitFor(what, matches).catch((e) => {
    const ids = [...chunksOf(ns, key).keys()].join(', ')
    const warnings = pipe.streaming ? pipe.stream.logs.filter((l) => /warn|error/.test(l)).slice(0, 3).join('\n') : ''
    throw new Error(`${e.message}: ${ns} has [${ids}] for row ${key}, want ${want.length}\n${warnings}`)
  })
  // nothing else of the row: every document of the namespace that names it is one of its chunks
  expect(chunksOf(ns, key).size).toBe(want.length)
}

describe('backfill, then the stream', () => {
  test('backfill writes each row as its chunks; a later update replaces them exactly', async () => {
    const r = await pipe.cli('backfill', 'early')
    expect(r.code).toBe(0)
    const text = (await pipe.db.sql`SELECT body FROM early WHERE id = 7`)[0].body as string
    expect(chunkText(text, { size: 100 }).length).toBeGreaterThan(3)
    await expectChunks('early', '7', text, 'the backfilled chunks')
    let total = 0
    for (const row of await pipe.db.sql`SELECT body FROM early`) total += chunkText(row.body, { size: 100 }).length
    expect(pipe.docs('early').size).toBe(total)
    for (const d of pipe.docs('early').values()) expect(d.body).toBeUndefined() // the text is in the chunks

    await pipe.startStream()
    await pipe.db.sql`UPDATE early SET body = 'short now.' WHERE id = 7`
    await expectChunks('early', '7', 'short now.', 'the update after the backfill')
  })
})

describe('the stream', () => {
  test('a row of 12 chunks shrinks to 3, grows to 7; its other attributes are on every chunk', async () => {
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (1, 'one', ${body(12)})`
    await expectChunks('docs', '1', body(12), '12 chunks')
    expect(chunkText(body(12), { size: 100 }).length).toBe(12)
    const first = pipe.docs('docs').get('1#0')!
    expect(first).toMatchObject({ title: 'one', published: true, [ROW_ATTR]: '1', [CHUNK_ATTR]: 0 })
    expect(first.body).toBeUndefined()

    await pipe.db.sql`UPDATE documents SET body = ${body(3, 'q')} WHERE id = 1`
    await expectChunks('docs', '1', body(3, 'q'), 'the row shrunk to 3 chunks')
    await pipe.db.sql`UPDATE documents SET body = ${body(7, 'r')}, title = 'uno' WHERE id = 1`
    await expectChunks('docs', '1', body(7, 'r'), 'the row grown to 7 chunks')
    expect([...chunksOf('docs', '1').values()].every((d) => d.title === 'uno')).toBe(true)
  })

  test("with a transform, the transform's attributes are on every chunk, the text from the row's source column", async () => {
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (9, 'quiet', ${body(3, 'h')})`
    await expectChunks('shout', '9', body(3, 'h'), 'the chunks of the transformed row')
    for (const d of chunksOf('shout', '9').values()) {
      expect(Object.keys(d).sort()).toEqual([CHUNK_ATTR, ROW_ATTR, 'chunk', 'loud'].sort())
      expect(d.loud).toBe('QUIET')
    }
    // a skip leaves the row's chunks as they are
    await pipe.db.sql`UPDATE documents SET title = 'skip me', body = ${body(1)} WHERE id = 9`
    await expectChunks('docs', '9', body(1), 'the update in docs')
    await expectChunks('shout', '9', body(3, 'h'), 'unchanged in shout')
    await pipe.db.sql`DELETE FROM documents WHERE id = 9`
    await expectChunks('shout', '9', null, 'deleted')
  })

  test('an update of another column (the body unchanged, TOASTed or not) keeps the chunks exact', async () => {
    const long = body(40, 't') // over 2 KB: stored out of line, sent as "unchanged" by an update of the title
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (2, 'two', ${long})`
    await expectChunks('docs', '2', long, '40 chunks')
    await pipe.db.sql`UPDATE documents SET title = 'deux' WHERE id = 2`
    await waitFor('the new title on every chunk', () => {
      const c = [...chunksOf('docs', '2').values()]
      return c.length === 40 && c.every((d) => d.title === 'deux')
    })
    await expectChunks('docs', '2', long, 'the same 40 chunks')
  })

  test('a delete removes every chunk; a re-insert of the same id starts afresh', async () => {
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (3, 'three', ${body(9)})`
    await expectChunks('docs', '3', body(9), '9 chunks')
    await pipe.db.sql`DELETE FROM documents WHERE id = 3`
    await expectChunks('docs', '3', null, 'no chunk left')
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (3, 'again', ${body(2, 'z')})`
    await expectChunks('docs', '3', body(2, 'z'), 'the re-inserted row')
    // in one transaction: delete, insert again with more chunks, delete, insert with fewer
    await pipe.db.sql.begin(async (tx) => {
      await tx`DELETE FROM documents WHERE id = 3`
      await tx`INSERT INTO documents (id, title, body) VALUES (3, 'a', ${body(11, 'y')})`
      await tx`DELETE FROM documents WHERE id = 3`
      await tx`INSERT INTO documents (id, title, body) VALUES (3, 'b', ${body(4, 'w')})`
    })
    await expectChunks('docs', '3', body(4, 'w'), 'the last insert of the transaction')
  })

  test('a NULL or empty body leaves the row without documents', async () => {
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (4, 'four', ${body(5)})`
    await expectChunks('docs', '4', body(5), '5 chunks')
    await pipe.db.sql`UPDATE documents SET body = NULL WHERE id = 4`
    await expectChunks('docs', '4', null, 'no chunk for a NULL body')
    await pipe.db.sql`UPDATE documents SET body = ${body(2)} WHERE id = 4`
    await expectChunks('docs', '4', body(2), 'chunks again')
  })

  test('leaving the membership removes every chunk from that mapping only; coming back writes them', async () => {
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (5, 'five', ${body(6)})`
    await expectChunks('pub', '5', body(6), 'the published row')
    await pipe.db.sql`UPDATE documents SET published = false WHERE id = 5`
    await expectChunks('pub', '5', null, 'the unpublished row gone from pub')
    await expectChunks('docs', '5', body(6), 'still in docs')
    await pipe.db.sql`UPDATE documents SET published = true, body = ${body(3)} WHERE id = 5`
    await expectChunks('pub', '5', body(3), 'published again')
  })

  test("a key change removes the old key's chunks and writes the new key's", async () => {
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (6, 'six', ${body(8)})`
    await expectChunks('docs', '6', body(8), '8 chunks')
    await pipe.db.sql`UPDATE documents SET id = 60, body = ${body(5)} WHERE id = 6`
    await expectChunks('docs', '6', null, 'the old key has no chunks')
    await expectChunks('docs', '60', body(5), 'the new key has its chunks')
  })

  test('an older replayed write removes nothing newer and changes nothing', async () => {
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (7, 'seven', ${body(5)})`
    await expectChunks('docs', '7', body(5), '5 chunks')
    const version = () => pipe.server.documents('docs').find((d) => d.id === '7#0')![VERSION_ATTR] as string
    const current = version()
    const older = encodeVersion(BigInt('0x' + current.slice(0, 16)) - 1n)
    const sink = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
    // a replayed delete of the row, and a replayed write with fewer chunks: both older than what is there
    const del = await sink.write('docs', [{ kind: 'row', id: '7', version: older, documents: [] }])
    const fewer = await sink.write('docs', [{
      kind: 'row',
      id: '7',
      version: older,
      documents: [{ id: '7#0', attributes: { chunk: 'old', [CHUNK_ATTR]: 0 } }],
    }], { schema: { chunk: { type: 'string', filterable: false }, [CHUNK_ATTR]: 'uint' } })
    expect(del.failed).toEqual([])
    expect(fewer.failed).toEqual([])
    await expectChunks('docs', '7', body(5), 'the newer chunks, untouched')
    expect(version()).toBe(current)
  })

  test('each chunk gets the vector of its own text', async () => {
    const text = body(4, 'e')
    await pipe.db.sql`INSERT INTO notes VALUES (1, ${text})`
    await expectChunks('notes', '1', text, '4 embedded chunks')
    for (const c of chunkText(text, { size: 100 })) {
      const v = pipe.docs('notes').get(`1#${c.index}`)!.vector as number[]
      const want = expectedVector(c.text)
      v.forEach((x, i) => expect(x).toBeCloseTo(want[i], 5))
    }
    await pipe.db.sql`UPDATE notes SET body = ${body(2, 'f')} WHERE id = 1`
    await expectChunks('notes', '1', body(2, 'f'), '2 embedded chunks')
    expect(pipe.docs('notes').get('1#1')!.vector).toBeDefined()
  })

  test("verify compares each row's set of chunks; --repair replaces the rows that drifted", async () => {
    for (const m of ['docs', 'pub', 'notes']) {
      const r = await pipe.cli('verify', m, '--json')
      expect({ m, code: r.code, err: r.err }).toEqual({ m, code: 0, err: '' })
      expect(JSON.parse(r.out)).toMatchObject({ drift: false, missing: { count: 0 }, extra: { count: 0 } })
    }
    const zero = '0'.repeat(24)
    await pipe.namespace('docs').write({
      deletes: ['1#3'],
      patch_rows: [{ id: '1#0', chunk: 'corrupted' }],
    })
    await pipe.namespace('docs').write({
      upsert_rows: [
        { id: '1#99', chunk: 'stale', [ROW_ATTR]: '1', [CHUNK_ATTR]: 99, [VERSION_ATTR]: zero },
        { id: '4242#0', chunk: 'ghost', [ROW_ATTR]: '4242', [CHUNK_ATTR]: 0, [VERSION_ATTR]: zero },
      ],
    })
    const r = await pipe.cli('verify', 'docs', '--json')
    expect(r.code).toBe(1)
    const report = JSON.parse(r.out)
    expect(report.missing).toEqual({ count: 1, ids: ['1#3'] })
    expect(report.extra.ids.sort()).toEqual(['1#99', '4242#0'])
    expect(report.mismatched.items).toEqual([{ id: '1#0', attributes: ['chunk'] }])

    const fixed = await pipe.cli('verify', 'docs', '--repair')
    expect(fixed.code).toBe(0) // repaired
    expect(fixed.out).toContain('repaired')
    await expectChunks('docs', '1', body(7, 'r'), 'row 1 replaced')
    await expectChunks('docs', '4242', null, 'the ghost row gone')
    const again = await pipe.cli('verify', 'docs')
    expect(again.out).toContain('in sync')
    expect(again.code).toBe(0)
  })

  test('a `verify --repair` that lands after the stream shrank the row leaves no stale chunk', async () => {
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (12, 'twelve', ${body(5, 'v')})`
    await expectChunks('docs', '12', body(5, 'v'), '5 chunks')
    await pipe.namespace('docs').write({ deletes: ['12#4'] }) // drift: the repair rewrites row 12
    let raced = false
    class RacingSink extends TurbopufferSink {
      override async write(ns: string, ops: WriteOp[], opts?: WriteOptions) {
        if (!raced && ops.some((o) => o.kind === 'row' && o.id === '12' && o.documents.length === 5)) {
          raced = true
          await pipe.db.sql`UPDATE documents SET body = ${body(2, 'u')} WHERE id = 12`
          await expectChunks('docs', '12', body(2, 'u'), 'the streamed update')
        }
        return super.write(ns, ops, opts)
      }
    }
    const config = loadConfig(pipe.project.config)
    const mapping = config.mappings.find((m) => m.name === 'docs')!
    const sink = new RacingSink({ api_key: 'test-key', base_url: pipe.server.url })
    const report = await verifyMapping(config, mapping, { sql: pipe.db.sql, sink }, {
      repair: true,
      log: quietLogger(),
    })
    expect(report.missing.ids).toEqual(['12#4'])
    expect(raced).toBe(true)
    await expectChunks('docs', '12', body(2, 'u'), 'exactly the chunks of the newest version')
  })

  test('TRUNCATE removes every chunk of the table', async () => {
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (8, 'eight', ${body(4)})`
    await expectChunks('docs', '8', body(4), '4 chunks')
    await pipe.db.sql`TRUNCATE documents`
    await waitFor('docs and pub empty', () => pipe.docs('docs').size === 0 && pipe.docs('pub').size === 0)
    await pipe.db.sql`INSERT INTO documents (id, title, body) VALUES (8, 'after', ${body(2)})`
    await expectChunks('docs', '8', body(2), 'the row written after the truncate')
  })

  test('a backfill page written after the stream shrank one of its rows leaves no stale chunk', async () => {
    // The race made to happen: the backfill has read row 3 with 12 chunks; before its page is written the row
    // shrinks to 2 chunks and the stream writes that. The page's late, older write deletes nothing newer and its
    // upserts of 3#0 and 3#1 fail their condition, but 3#2…3#11 do not exist, so they are created: only the
    // re-check's sweep takes them away again.
    await pipe.db.sql`INSERT INTO racing SELECT g, ${body(12)} FROM generate_series(1, 5) g`
    await expectChunks('racing', '3', body(12), 'the streamed rows')
    const inner = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
    let raced = false
    const sink: Sink = {
      write: async (ns, ops, opts) => {
        if (!raced && ops.some((o) => o.kind === 'row' && o.documents.length === 12)) {
          raced = true
          await pipe.db.sql`UPDATE racing SET body = ${body(2, 's')} WHERE id = 3`
          const [{ lsn }] = await pipe.db.sql`SELECT pg_current_wal_insert_lsn()::text AS lsn`
          await waitFor(
            'the stream to apply the update',
            async () =>
              (await pipe.db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok FROM pg_replication_slots
              WHERE slot_name = 'puffgres'`)[0]?.ok,
          )
          await expectChunks('racing', '3', body(2, 's'), 'the streamed update')
        }
        return inner.write(ns, ops, opts)
      },
      deleteAllBefore: (ns, version) => inner.deleteAllBefore(ns, version),
      stats: () => inner.stats(),
      attributeTypes: (ns) => inner.attributeTypes(ns),
      newerRowVersions: (ns, keys, version) => inner.newerRowVersions(ns, keys, version),
    }
    const r = await quietBackfill(pipe.project.config, { mapping: 'racing', batchSize: 10, sink })
    expect(r.outcome).toBe('done')
    expect(raced).toBe(true)
    await expectChunks('racing', '3', body(2, 's'), 'exactly the 2 chunks of the newer version')
    await expectChunks('racing', '4', body(12), 'the other rows as they are')
  })

  test('a row turbopuffer refused is a dead letter; `dlq retry` writes its chunks exactly', async () => {
    await expectChunks('racing', '3', body(2, 's'), 'where the race left row 3')
    pipe.server.failNext(1000, 400)
    try {
      await pipe.db.sql`UPDATE racing SET body = ${body(6, 'd')} WHERE id = 3`
      await waitFor('the dead letter', async () => (await pipe.deadLetters('racing')).length === 1)
    } finally {
      pipe.server.failNext(0)
    }
    expect((await pipe.deadLetters('racing'))[0]).toMatchObject({ doc_id: '3' })
    await expectChunks('racing', '3', body(2, 's'), 'the old chunks, untouched')
    const r = await pipe.cli('dlq', 'retry', '--mapping', 'racing')
    expect(r.out).toContain('1 retried, 0 failed')
    expect(r.code).toBe(0)
    await expectChunks('racing', '3', body(6, 'd'), 'the retried row')
    expect(await pipe.deadLetters('racing')).toEqual([])
  })

  test('a `dlq retry` that lands after the stream shrank the row leaves no stale chunk', async () => {
    // as the backfill race: the retry reads the row (6 chunks), the row shrinks to 1 chunk and is streamed, then the
    // retry's older write lands and creates 3#1…3#5; the retry's sweep removes them
    pipe.server.failNext(1000, 400)
    try {
      await pipe.db.sql`UPDATE racing SET body = ${body(3, 'g')} WHERE id = 3`
      await waitFor('the dead letter', async () => (await pipe.deadLetters('racing')).length === 1)
    } finally {
      pipe.server.failNext(0)
    }
    await pipe.db.sql`UPDATE racing SET body = ${body(6, 'k')} WHERE id = 3`
    await expectChunks('racing', '3', body(6, 'k'), '6 chunks')
    // an entry whose retry reads those 6 chunks and writes them late
    const inner = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
    let raced = false
    const sink: Sink = {
      write: async (ns, ops, opts) => {
        if (!raced && ops.some((o) => o.kind === 'row' && o.documents.length === 6)) {
          raced = true
          await pipe.db.sql`UPDATE racing SET body = ${body(1, 'n')} WHERE id = 3`
          await expectChunks('racing', '3', body(1, 'n'), 'the streamed update')
        }
        return inner.write(ns, ops, opts)
      },
      deleteAllBefore: (ns, version) => inner.deleteAllBefore(ns, version),
      stats: () => inner.stats(),
      attributeTypes: (ns) => inner.attributeTypes(ns),
      newerRowVersions: (ns, keys, version) => inner.newerRowVersions(ns, keys, version),
    }
    const config = loadConfig(pipe.project.config)
    const entries = await listDeadLetters(pipe.db.sql, { mapping: 'racing' })
    const out = await retryDeadLetters(config, pipe.db.sql, sink, entries, quietLogger())
    expect(out.map((o) => o.ok)).toEqual([true])
    expect(raced).toBe(true)
    await expectChunks('racing', '3', body(1, 'n'), 'exactly the chunk of the newest version')
  })

  test('a transform returning several documents a row: each write replaces all of them', async () => {
    const ids = (key: string) => [...chunksOf('tickets', key).keys()].sort()
    const messages = (key: string) =>
      [...chunksOf('tickets', key).values()].sort((a, b) => (a.n as number) - (b.n as number)).map((d) => d.message)
    await pipe.db.sql`INSERT INTO tickets (id, subject, messages) VALUES (1, 'help', ${['a', 'b', 'c', 'd']})`
    await waitFor('4 documents', () => ids('1').length === 4)
    expect(ids('1')).toEqual(['1#0', '1#1', '1#2', '1#3'])
    expect(messages('1')).toEqual(['a', 'b', 'c', 'd'])
    await pipe.db.sql`UPDATE tickets SET messages = ${['z']} WHERE id = 1`
    await waitFor('1 document', () => ids('1').length === 1 && messages('1')[0] === 'z')
    expect(ids('1')).toEqual(['1#0'])
    // the single-document form: one document whose id is the row's
    await pipe.db.sql`UPDATE tickets SET messages = '{}' WHERE id = 1`
    await waitFor('the single document', () => ids('1').join() === '1')
    expect(pipe.docs('tickets').get('1')).toMatchObject({ subject: 'help', [ROW_ATTR]: '1' })
    // the transform's own ids replace the old ones too
    await pipe.db.sql`UPDATE tickets SET messages = ${['x', 'y']}, own_ids = true WHERE id = 1`
    await waitFor('own ids', () => ids('1').join() === 'msg-1-0,msg-1-1')
    await pipe.db.sql`DELETE FROM tickets WHERE id = 1`
    await waitFor('no document', () => ids('1').length === 0)
    expect(pipe.docs('tickets').size).toBe(0)
  })

  test('a chunk over 4 KiB is written: the chunk attribute is declared not filterable (the strict server checks)', async () => {
    const text = 'é'.repeat(12_000) // 5,000 characters a chunk: 10,000 bytes, over the filterable limit
    await pipe.db.sql`INSERT INTO wide VALUES (1, ${text})`
    await expectChunksOf('wide', '1', text, 5000)
    expect(await pipe.deadLetters('wide')).toEqual([])
  })

  test(
    'under latency and jitter, a mixed load of edits, deletes and re-inserts leaves every chunk set exact',
    async () => {
      // requests take 150–350 ms, so several batches are in flight at once and land out of order: only the order per
      // row and the versioned replacement keep each row's chunks exact
      let seed = 25
      const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
      pipe.server.setLatency(150, 200)
      try {
        for (let round = 0; round < 40; round++) {
          await pipe.db.sql.begin(async (tx) => {
            for (let k = 0; k < 4; k++) {
              const id = 1 + Math.floor(rnd() * 12)
              const n = Math.floor(rnd() * 14)
              const r = rnd()
              if (r < 0.2) await tx`DELETE FROM mixed WHERE id = ${id}`
              else if (r < 0.3) {
                await tx`DELETE FROM mixed WHERE id = ${id}`
                await tx`INSERT INTO mixed (id, body) VALUES (${id}, ${body(n, 'a' + round)})`
              } else {
                await tx`INSERT INTO mixed (id, body) VALUES (${id}, ${body(n, 'b' + round)})
                ON CONFLICT (id) DO UPDATE SET body = excluded.body, v = mixed.v + 1`
              }
            }
          })
          await new Promise((r) => setTimeout(r, 20 + Math.floor(rnd() * 60)))
        }
        // batches land out of order: everything committed has landed once the slot confirms past it
        const [{ lsn }] = await pipe.db.sql`SELECT pg_current_wal_insert_lsn()::text AS lsn`
        await waitFor(
          'the stream to confirm every change',
          async () =>
            (await pipe.db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok FROM pg_replication_slots
            WHERE slot_name = 'puffgres'`)[0]?.ok,
          60_000,
        )
      } finally {
        pipe.server.setLatency(0, 0)
      }
      const rows = await pipe.db.sql<{ id: number; body: string }[]>`SELECT id, body FROM mixed ORDER BY id`
      const want = new Map<string, string>()
      for (const r of rows) for (const c of chunkText(r.body, { size: 100 })) want.set(`${r.id}#${c.index}`, c.text)
      const got = new Map([...pipe.docs('mixed')].map(([id, d]) => [id as string, d.chunk as string]))
      const missing = [...want.keys()].filter((id) => got.get(id) !== want.get(id))
      const extra = [...got.keys()].filter((id) => !want.has(id))
      expect({ missing, extra }).toEqual({ missing: [], extra: [] })
      expect(want.size).toBeGreaterThan(20)
    },
    120_000,
  )

  test('no dead letters on the way', async () => {
    expect(await pipe.deadLetters()).toEqual([])
  })
})
