// Embeddings paid once (docs/ARCHITECTURE.md, "Embeddings paid once"; issue 25), on real PostgreSQL, the strict local
// server and a local embedding provider that records every text it is sent: each embedded document carries the hash
// of its text, and a text whose document already has its vector is never sent again — not by an update of another
// column, a second backfill, a new `run` process, `dlq retry` or `verify --repair`. A document that went away is
// embedded again, also when it went away between the lookup and the write (the patch falls back to an upsert).
import { afterAll, expect, test } from 'bun:test'
import { chunkText } from '../src/pipeline/chunking.ts'
import { embedHash } from '../src/embeddings/embedder.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import type { Sink } from '../src/turbopuffer/types.ts'
import { StreamMonitor } from '../src/stream/stream-monitor.ts'
import { EMBED_HASH_ATTR, ROW_ATTR, VERSION_ATTR } from '../src/types.ts'
import {
  type EmbeddingServer,
  expectedVector,
  providerToml,
  startEmbeddingServer,
} from './fixtures/transforms/embedding-server.ts'
import { quietBackfill } from './harness/backfill.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

let embeddings: EmbeddingServer

/** `n` paragraphs of 80 characters: with chunks of 100 characters, one chunk each (paragraph boundaries). */
function body(n: number, tag: string, changed = -1): string {
  const paras: string[] = []
  for (let i = 0; i < n; i++) paras.push(`${tag}${i}${i === changed ? ' changed' : ''} `.padEnd(79, 'x') + '.')
  return paras.join('\n\n')
}

const pipe = usePipeline({
  name: 'embedonce',
  prepare: async () => {
    embeddings = await startEmbeddingServer('embed-key')
  },
  // the body out of line, uncompressed: an update of another column sends it as "unchanged" (TOAST)
  sql: `CREATE TABLE articles (id int PRIMARY KEY, title text, body text, stars int DEFAULT 0);
    ALTER TABLE articles ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE notes (id int PRIMARY KEY, title text, body text, stars int DEFAULT 0);
    CREATE TABLE tagged (id int PRIMARY KEY, body text, hot bool);
    INSERT INTO tagged VALUES (1, 'tagged body one', true);`,
  extra: () => providerToml(embeddings),
  migrations: {
    '001_articles.toml': migration({
      name: 'articles',
      table: 'articles',
      extra: '[mapping.chunking]\nsource = "body"\nsize = 100\n[mapping.embedding]\nsource = "chunk"\n',
    }),
    '002_notes.toml': migration({
      name: 'notes',
      table: 'notes',
      extra: '[mapping.embedding]\nsource = ["title", "body"]\n',
    }),
    '004_tagged.toml': migration({
      name: 'tagged',
      table: 'tagged',
      transform: 'transforms/tag.ts',
      extra: '[mapping.embedding]\nsource = "body"\n',
    }),
  },
  files: {
    // an attribute only some rows have, and not declared (the transform's own)
    'transforms/tag.ts': `export default function (event) {
  if (event.type === 'delete') return { type: 'delete' }
  return { type: 'upsert', attributes: event.new.hot ? { hot_tag: 'hot' } : {} }
}
`,
  },
})

afterAll(async () => {
  await embeddings?.close()
})

/** Texts sent to the provider so far. */
const sent = () => embeddings.requests.reduce((n, r) => n + r.input.length, 0)

/** The texts each article's chunks and each note are embedded from, as the rows are now. */
async function wanted(): Promise<Map<string, Map<unknown, string>>> {
  const articles = new Map<unknown, string>()
  for (const r of await pipe.db.sql<{ id: number; body: string }[]>`SELECT id, body FROM articles`) {
    for (const c of chunkText(r.body, { size: 100 })) articles.set(`${r.id}#${c.index}`, c.text)
  }
  const notes = new Map<unknown, string>()
  for (const r of await pipe.db.sql<{ id: number; title: string; body: string }[]>`SELECT * FROM notes`) {
    notes.set(r.id, `${r.title}\n\n${r.body}`)
  }
  return new Map([['articles', articles], ['notes', notes]])
}

/** Every document has exactly the vector and the hash of its text, and `check` holds for it. */
async function expectEmbedded(
  check: (ns: string, doc: Record<string, unknown>, id: unknown) => boolean = () => true,
) {
  const want = await wanted()
  const state = () => {
    const bad: string[] = []
    for (const [ns, texts] of want) {
      const docs = pipe.docs(ns)
      if (docs.size !== texts.size) bad.push(`${ns}: ${docs.size} documents, ${texts.size} expected`)
      for (const [id, text] of texts) {
        const d = docs.get(id)
        const v = d?.vector as number[] | undefined
        const e = expectedVector(text)
        if (!d) bad.push(`${ns} ${id}: missing`)
        else if (d[EMBED_HASH_ATTR] !== embedHash('test-model', text)) bad.push(`${ns} ${id}: hash`)
        else if (!v || v.some((x, i) => Math.abs(x - e[i]) > 1e-5)) bad.push(`${ns} ${id}: vector`)
        else if (!check(ns, d, id)) bad.push(`${ns} ${id}: ${JSON.stringify({ ...d, vector: undefined })}`)
      }
    }
    return bad
  }
  await waitFor('every document with the vector and hash of its text', () => state().length === 0).catch((e) => {
    throw new Error(`${e.message}: ${state().slice(0, 3).join('; ')}`)
  })
}

const monitor = new StreamMonitor()

test('backfill embeds each chunk and each note once; every document records the hash of its text', async () => {
  for (let id = 1; id <= 4; id++) {
    await pipe.db.sql`INSERT INTO articles VALUES (${id}, ${'a' + id}, ${body(5, `a${id}-`)})`
    await pipe.db.sql`INSERT INTO notes VALUES (${id}, ${'n' + id}, ${'note body ' + id})`
  }
  for (const mapping of ['articles', 'notes']) {
    expect((await quietBackfill(pipe.project.config, { mapping })).outcome).toBe('done')
  }
  expect(sent()).toBe(20 + 4)
  await expectEmbedded()
  // the hash is filterable: a document can be found by the text it was embedded from
  const hit = await pipe.namespace('articles').query({
    rank_by: ['id', 'asc'],
    top_k: 10,
    filters: [EMBED_HASH_ATTR, 'Eq', embedHash('test-model', chunkText(body(5, 'a2-'), { size: 100 })[3].text)],
  })
  expect(hit.rows?.map((r) => r.id)).toEqual(['2#3'])
})

test('a second backfill sends no text to the provider', async () => {
  const before = sent()
  for (const mapping of ['articles', 'notes']) {
    expect((await quietBackfill(pipe.project.config, { mapping })).outcome).toBe('done')
  }
  expect(sent()).toBe(before)
  await expectEmbedded()
})

test('an update of a column that is not embedded sends no text (a new process: the cache is empty)', async () => {
  await pipe.startStream({ monitor })
  const before = sent()
  await pipe.db.sql`UPDATE articles SET stars = 5 WHERE id <= 2`
  await pipe.db.sql`UPDATE notes SET stars = 5 WHERE id <= 2`
  await expectEmbedded((ns, d, id) => {
    const row = ns === 'notes' ? id : Number(d[ROW_ATTR])
    return d.stars === ((row as number) <= 2 ? 5 : 0)
  })
  expect(sent()).toBe(before)
  // counted once the write is answered, which may be just after its documents are seen
  await waitFor('the stored hits counted', () => monitor.embeddingSkipped.get({ reason: 'stored' }) >= 10 + 2)
  expect(monitor.embeddingSkipped.get({ reason: 'stored' })).toBe(10 + 2)
  expect(monitor.embeddingTexts.total()).toBe(0)
})

test('a body changed in one chunk of 5 sends that chunk only', async () => {
  const before = sent()
  await pipe.db.sql`UPDATE articles SET body = ${body(5, 'a1-', 2)} WHERE id = 1`
  await pipe.db.sql`UPDATE notes SET body = 'changed' WHERE id = 1`
  await expectEmbedded()
  expect(embeddings.requests.slice(-2).flatMap((r) => r.input).length).toBeLessThanOrEqual(2)
  expect(sent()).toBe(before + 2)
  expect(monitor.embeddingTexts.total()).toBe(2)
  expect(monitor.embeddingRequests.total()).toBeGreaterThanOrEqual(1)
  expect(monitor.embeddingTokens.total()).toBeGreaterThan(0)
  await waitFor('the stored hits counted', () => monitor.embeddingSkipped.get({ reason: 'stored' }) >= 16)
  const text = monitor.registry.render()
  for (const name of ['requests', 'texts', 'tokens']) expect(text).toContain(`# TYPE puffgres_embedding_${name}_total`)
  expect(text).toContain('puffgres_embedding_skipped_total{reason="stored"} 16')
})

test('a restart: a new `run` process given the same texts again sends none of them', async () => {
  await pipe.stream.stop()
  // while it is stopped: changes that carry the (same) embedded text, for a process with an empty cache
  await pipe.db.sql`UPDATE articles SET body = body || '', title = title || '!'`
  await pipe.db.sql`UPDATE notes SET body = body || '', stars = 7`
  const before = sent()
  await pipe.startStream()
  await expectEmbedded((ns, d) => ns === 'notes' ? d.stars === 7 : String(d.title).endsWith('!'))
  expect(sent()).toBe(before)
})

test('`dlq retry` of a row whose text did not change sends no text', async () => {
  pipe.server.failNext(1000, 400)
  try {
    await pipe.db.sql`UPDATE articles SET stars = 9 WHERE id = 3`
    await waitFor('the dead letter', async () => (await pipe.deadLetters('articles')).length === 1)
  } finally {
    pipe.server.failNext(0)
  }
  const before = sent()
  const r = await pipe.cli('dlq', 'retry', '--mapping', 'articles')
  expect(r.out).toContain('1 retried, 0 failed')
  await expectEmbedded((ns, d) => ns !== 'articles' || d[ROW_ATTR] !== '3' || d.stars === 9)
  expect(sent()).toBe(before)
})

test('`verify --repair` of rows whose text did not change sends no text', async () => {
  // an attribute changed behind puffgres's back: drift, repaired without the provider
  await pipe.namespace('articles').write({ patch_rows: [{ id: '2#1', stars: 77 }] })
  await pipe.namespace('notes').write({ patch_rows: [{ id: 2, stars: 77 }] })
  const before = sent()
  for (const m of ['articles', 'notes']) {
    const r = await pipe.cli('verify', m, '--repair', '--json')
    expect({ m, err: r.err }).toEqual({ m, err: '' })
    expect(JSON.parse(r.out)).toMatchObject({ drift: true })
    const again = await pipe.cli('verify', m, '--json')
    expect({ m, code: again.code, out: JSON.parse(again.out) }).toMatchObject({ m, code: 0, out: { drift: false } })
  }
  await expectEmbedded((_ns, d) => d.stars !== 77)
  expect(sent()).toBe(before)
})

test("a document deleted behind puffgres's back is embedded again", async () => {
  await pipe.namespace('articles').write({ deletes: ['4#1'] })
  await pipe.namespace('notes').write({ deletes: [3] })
  const before = sent()
  await pipe.db.sql`UPDATE articles SET stars = 2 WHERE id = 4`
  await pipe.db.sql`UPDATE notes SET stars = 2 WHERE id = 3`
  await expectEmbedded((ns, d, id) => ns === 'notes' ? id !== 3 || d.stars === 2 : d[ROW_ATTR] !== '4' || d.stars === 2)
  expect(sent()).toBe(before + 2)
})

test('a document deleted between the lookup and the write: the patch does not apply and falls back to an upsert', async () => {
  // a backfill whose documents go away just after their stored hashes were read
  const inner = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
  const gone = { articles: ['4#3', '1#0'], notes: [4] } as Record<string, unknown[]>
  const took: string[] = []
  const sink = withEmbedHashes(inner, async (ns, ids) => {
    const stored = await inner.embedHashes(ns, ids)
    if (!took.includes(ns)) {
      took.push(ns)
      await pipe.namespace(ns).write({ deletes: gone[ns] as string[] })
    }
    return stored
  })
  const before = sent()
  for (const mapping of ['articles', 'notes']) {
    const r = await quietBackfill(pipe.project.config, { mapping, sink })
    expect({ mapping, outcome: r.outcome, dead: r.outcome === 'done' && r.deadLettered })
      .toEqual({ mapping, outcome: 'done', dead: 0 })
  }
  expect(took.sort()).toEqual(['articles', 'notes'])
  await expectEmbedded()
  expect(sent()).toBe(before + 3)
  expect(await pipe.deadLetters()).toEqual([])
})

test('a write replayed after it applied (its answer lost): the patches it repeats are turned down, nothing is embedded', async () => {
  const inner = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
  let replayed = 0
  const sink: Sink = {
    // every write sent twice, as the sink's retry of a request whose answer was lost sends it again
    write: async (ns, ops, opts) => {
      const first = await inner.write(ns, ops, opts)
      const again = await inner.write(ns, ops, opts)
      if (again.unpatched?.length) replayed++
      return { ...again, written: first.written }
    },
    deleteAllBefore: (ns, version) => inner.deleteAllBefore(ns, version),
    stats: () => inner.stats(),
    attributeTypes: (ns) => inner.attributeTypes(ns),
    newerRowVersions: (ns, keys, version) => inner.newerRowVersions(ns, keys, version),
    embedHashes: (ns, ids) => inner.embedHashes(ns, ids),
  }
  const before = sent()
  for (const mapping of ['articles', 'notes']) {
    const r = await quietBackfill(pipe.project.config, { mapping, sink })
    expect({ mapping, outcome: r.outcome }).toEqual({ mapping, outcome: 'done' })
  }
  expect(replayed).toBe(2)
  await expectEmbedded()
  expect(sent()).toBe(before)
  expect(await pipe.deadLetters()).toEqual([])
})

test('an older write of another text landing between the lookup and the patch: the patch does not keep its vector', async () => {
  // a backfill (snapshot Vs) reads the stored hashes; before its patches land, a write of another text at a version
  // between the stored one and Vs (a racing writer: the stream, `dlq retry`) replaces the documents with that text's
  // vector. A patch at Vs must not then give them the backfill's hash over the other text's vector.
  const inner = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
  const intruders = { articles: '1#2', notes: 1 } as Record<string, string | number>
  const other = 'a text written by a racing writer'
  const took: string[] = []
  const bump = (v: string) => v.slice(0, 16) + (parseInt(v.slice(16), 16) + 1).toString(16).padStart(8, '0')
  const sink = withEmbedHashes(inner, async (ns, ids) => {
    const stored = await inner.embedHashes(ns, ids)
    if (!took.includes(ns)) {
      took.push(ns)
      const id = intruders[ns]
      const doc = pipe.server.documents(ns).find((d) => d.id === id)!
      const { vector: _v, ...attrs } = doc
      await pipe.namespace(ns).write({
        upsert_rows: [{
          ...attrs,
          id,
          vector: expectedVector(other),
          [EMBED_HASH_ATTR]: embedHash('test-model', other),
          [VERSION_ATTR]: bump(doc[VERSION_ATTR] as string),
        }],
        distance_metric: 'cosine_distance',
      })
    }
    return stored
  })
  const before = sent()
  for (const mapping of ['articles', 'notes']) {
    const r = await quietBackfill(pipe.project.config, { mapping, sink })
    expect({ mapping, outcome: r.outcome }).toEqual({ mapping, outcome: 'done' })
  }
  expect(took.sort()).toEqual(['articles', 'notes'])
  await expectEmbedded()
  // the two documents the racing write changed are embedded again (their patches did not apply), no other
  expect(sent()).toBe(before + 2)
  expect(await pipe.deadLetters()).toEqual([])
})

test('[mapping.embedding] attribute changed in a new version into the same namespace: every note embedded again', async () => {
  // the stored documents have each text's vector in `vector`; the new version stores it in `emb`. Their hashes must
  // not match, or the patch would keep `vector` and leave `emb` unset
  pipe.project.write(
    'puffgres/migrations/003_notes_emb.toml',
    migration({
      name: 'notes',
      version: 2,
      table: 'notes',
      namespace: 'notes',
      extra: '[mapping.embedding]\nsource = ["title", "body"]\nattribute = "emb"\n',
    }),
  )
  const m = await pipe.cli('migrate')
  expect({ code: m.code, err: m.err }).toEqual({ code: 0, err: '' })
  const before = sent()
  const r = await quietBackfill(pipe.project.config, { mapping: 'notes' })
  expect(r.outcome).toBe('done')
  const texts = (await wanted()).get('notes')!
  expect(sent()).toBe(before + texts.size)
  const state = () => {
    const bad: string[] = []
    for (const [id, text] of texts) {
      const d = pipe.docs('notes').get(id)
      const v = d?.emb as number[] | undefined
      const e = expectedVector(text)
      if (!v || v.length !== e.length || v.some((x, i) => Math.abs(x - e[i]) > 1e-5)) bad.push(`${id}: emb ${v}`)
      else if (d![EMBED_HASH_ATTR] !== embedHash('test-model', text, 'emb')) bad.push(`${id}: hash`)
    }
    return bad
  }
  await waitFor('every note with the vector of its text in emb', () => state().length === 0).catch((e) => {
    throw new Error(`${e.message}: ${state().slice(0, 3).join('; ')}`)
  })
})

test("a patch names with null a transform's attribute the row no longer has, though the process never saw it", async () => {
  // \`run\` wrote the namespace first (row 3, without \`hot_tag\`): the attribute types it read then are all it knows, as
  // the transform's \`hot_tag\` is not declared. A backfill (another process) then writes row 1, there before the
  // stream, with \`hot_tag\`. An update of row 1 that leaves its text and drops \`hot_tag\` reaches \`run\`, whose cache
  // lacks the text: its patch must name \`hot_tag\` with null, as an upsert would drop it
  await pipe.db.sql`INSERT INTO tagged VALUES (3, 'tagged body three', false)`
  await waitFor('row 3 streamed', () => pipe.docs('tagged').get(3) !== undefined)
  expect((await quietBackfill(pipe.project.config, { mapping: 'tagged' })).outcome).toBe('done')
  expect(pipe.docs('tagged').get(1)?.hot_tag).toBe('hot')
  const before = sent()
  await pipe.db.sql`UPDATE tagged SET hot = false WHERE id = 1`
  const version = () => pipe.server.documents('tagged').find((d) => d.id === 1)![VERSION_ATTR] as string
  const first = version()
  await waitFor('row 1 written again', () => version() > first)
  expect(sent()).toBe(before)
  expect(pipe.docs('tagged').get(1)).not.toHaveProperty('hot_tag')
})

test('metrics: a batch retried after a provider outage counts each text kept from its stored document once', async () => {
  await pipe.stream.stop()
  const fresh = new StreamMonitor()
  await pipe.startStream({ monitor: fresh })
  // every try of the embedder's request fails (it gives up after 8 retries): the batch is retried by the writer
  embeddings.failNext(...Array.from({ length: 9 }, () => ({ status: 429, retryAfter: '0' })))
  await pipe.db.sql.begin(async (sql) => {
    await sql`UPDATE tagged SET hot = true WHERE id = 3`
    await sql`UPDATE tagged SET body = 'tagged body one, after the outage' WHERE id = 1`
  })
  await waitFor(
    'both written',
    () =>
      pipe.docs('tagged').get(1)?.[EMBED_HASH_ATTR] === embedHash('test-model', 'tagged body one, after the outage') &&
      pipe.docs('tagged').get(3)?.hot_tag === 'hot',
  )
  // row 3's text was not sent (its document kept its vector): once, whatever the tries of row 1's
  await waitFor('the stored hit counted', () => fresh.embeddingSkipped.get({ reason: 'stored' }) >= 1)
  expect(fresh.embeddingSkipped.get({ reason: 'stored' })).toBe(1)
})

/** The real sink, with its stored-hash lookup replaced by `embedHashes` (a test's way into the race window). */
function withEmbedHashes(inner: TurbopufferSink, embedHashes: Sink['embedHashes']): Sink {
  return {
    write: (ns, ops, opts) => inner.write(ns, ops, opts),
    deleteAllBefore: (ns, version) => inner.deleteAllBefore(ns, version),
    stats: () => inner.stats(),
    attributeTypes: (ns) => inner.attributeTypes(ns),
    newerRowVersions: (ns, keys, version) => inner.newerRowVersions(ns, keys, version),
    listNamespaces: (prefix, opts) => inner.listNamespaces(prefix, opts),
    embedHashes,
  }
}
