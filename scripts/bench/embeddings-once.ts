// Embeddings paid once (issue 25): a table of long texts (20–60 KB bodies), chunked and embedded through a local
// provider server that counts what it is sent, then changes that touch the embedded text or do not. Each phase
// prints the texts sent to the provider beside the chunks whose text changed: they must be equal (a ratio of 1.00).
//
//   ./node_modules/.bin/bun scripts/bench/embeddings-once.ts               # 10,000 rows (the figure)
//   ./node_modules/.bin/bun scripts/bench/embeddings-once.ts --rows 500    # a quick run
//
// Phases: `backfill` of the table (every chunk is new); `run` streams 10% of the rows updated in a column that is not
// embedded; 10% with one sentence of the body changed; `run` stopped, 10% of the rows updated with their (same) body
// re-sent while it is down, and a new `run` process (empty cache) catching up; a second `backfill`.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import process from 'node:process'
import { parseArgs } from 'node:util'
import postgres from 'postgres'
import { chunkingSchema } from '../../src/config/row-documents.ts'
import { chunkText } from '../../src/pipeline/chunking.ts'
import { startCluster } from '../../src/postgres/throwaway.ts'
import { makeProject, migration } from '../../test/harness/project.ts'
import {
  bun,
  type Child,
  createBenchDatabase,
  fmt,
  localServer,
  migrateProject,
  startChild,
  startRun,
  stopChild,
  waitUntil,
  wholeArg,
} from './common.ts'

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '10000' },
    'chunk-size': { type: 'string', default: '1000' },
    'batch-size': { type: 'string', default: '100' },
  },
})
const ROWS = wholeArg(values, 'rows', 10)
const CHUNK_SIZE = wholeArg(values, 'chunk-size', 100)
const BATCH = wholeArg(values, 'batch-size', 1)
const CHUNKING = chunkingSchema.parse({ source: 'body', size: CHUNK_SIZE })

// ---- the texts: deterministic words, sentences and paragraphs ----

// mulberry32: the same texts every run
let seed = 42
function random(): number {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const WORDS = Array.from(
  { length: 2000 },
  (_, i) => createHash('md5').update(String(i)).digest('hex').slice(0, 3 + i % 7),
)
const sentence = () =>
  Array.from({ length: 6 + Math.floor(random() * 14) }, () => WORDS[Math.floor(random() * WORDS.length)]).join(' ') +
  '.'

/** A body of 20–60 KB: paragraphs of 3–8 sentences. */
function makeBody(): string {
  const target = 20_000 + Math.floor(random() * 40_000)
  const paras: string[] = []
  let length = 0
  while (length < target) {
    const p = Array.from({ length: 3 + Math.floor(random() * 6) }, sentence).join(' ')
    paras.push(p)
    length += p.length + 2
  }
  return paras.join('\n\n')
}

/** The body with one sentence of its middle paragraph replaced by another of the same length (shape kept). */
function editBody(body: string): string {
  const paras = body.split('\n\n')
  const k = Math.floor(paras.length / 2)
  const sentences = paras[k].split('. ')
  const old = sentences[0]
  let next = sentence().slice(0, -1)
  while (next.length < old.length) next += ' ' + WORDS[Math.floor(random() * WORDS.length)]
  sentences[0] = next.slice(0, old.length).replace(/ $/, 'x')
  paras[k] = sentences.join('. ')
  return paras.join('\n\n')
}

const chunksOf = (body: string) => chunkText(body, CHUNKING).map((c) => c.text)

// ---- a provider that counts ----

function countingProvider() {
  const counts = { requests: 0, texts: 0 }
  const server = createServer((req, res) => {
    const parts: Uint8Array[] = []
    req.on('data', (c: Uint8Array) => parts.push(c))
    req.on('end', () => {
      const { input } = JSON.parse(Buffer.concat(parts).toString('utf8')) as { input: string[] }
      counts.requests++
      counts.texts += input.length
      const data = input.map((text, index) => {
        const h = createHash('sha256').update(text).digest()
        return { object: 'embedding', index, embedding: Array.from({ length: 8 }, (_, i) => h[i] / 255) }
      })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ object: 'list', data }))
    })
  })
  return {
    counts,
    listen: () =>
      new Promise<string>((resolve) =>
        server.listen(
          0,
          '127.0.0.1',
          () => resolve(`http://127.0.0.1:${(server.address() as { port: number }).port}/v1`),
        )
      ),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

// ---- the run ----

interface Phase {
  phase: string
  rows: number
  /** chunks whose text is not the text their document holds: what the provider must be sent */
  changed: number
  texts: number
  requests: number
  seconds: number
}

async function main() {
  console.log(`load average: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
  const cluster = await startCluster({ synchronous_commit: 'on' })
  const provider = countingProvider()
  let server: { url: string; child: Child } | undefined
  let run: Child | undefined
  let remove = () => {}
  try {
    const url = await createBenchDatabase(cluster)
    const sql = postgres(url, { max: 4, onnotice: () => {} })
    await sql`CREATE TABLE documents (id bigint PRIMARY KEY, title text, stars int NOT NULL DEFAULT 0, body text)`
    const bodies: string[] = [''] // by id
    let started = performance.now()
    for (let id = 1; id <= ROWS;) {
      const rows = []
      for (let n = 0; n < 50 && id <= ROWS; n++, id++) {
        bodies[id] = makeBody()
        rows.push({ id, title: `document ${id}`, body: bodies[id] })
      }
      await sql`INSERT INTO documents ${sql(rows)}`
    }
    const chunks = bodies.slice(1).map(chunksOf)
    const total = chunks.reduce((n, c) => n + c.length, 0)
    // a text two chunks share is sent once (the cache): the backfill sends each distinct text
    const distinct = new Set(chunks.flat()).size
    const bytes = bodies.reduce((n, b) => n + b.length, 0)
    console.log(
      `${fmt(ROWS)} rows, ${fmt(bytes / 1e6)} MB of text, ${fmt(total)} chunks of ≤ ${CHUNK_SIZE} characters ` +
        `(made in ${((performance.now() - started) / 1000).toFixed(1)} s)`,
    )

    const providerUrl = await provider.listen()
    server = await localServer()
    const project = makeProject({
      databaseUrl: url,
      turbopufferUrl: server.url,
      extra:
        `[providers.embeddings]\ntype = "openai"\nmodel = "bench-model"\napi_key = "k"\nbase_url = "${providerUrl}"\n`,
      migrations: {
        '001_documents.toml': migration({
          name: 'documents',
          table: 'documents',
          extra: `[mapping.chunking]\nsource = "body"\nsize = ${CHUNK_SIZE}\n[mapping.embedding]\nsource = "chunk"\n`,
        }).replace('[target]', '[target]\ndistance_metric = "cosine_distance"'),
      },
    })
    remove = () => project.remove()
    await migrateProject(project)

    /** Documents of the namespace whose `stars` is `k`. */
    const count = async (k?: number): Promise<number> => {
      const r = await fetch(`${server!.url}/v2/namespaces/documents/query`, {
        method: 'POST',
        headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
        body: JSON.stringify({
          aggregate_by: { n: ['Count'] },
          ...(k === undefined ? {} : { filters: ['stars', 'Eq', k] }),
        }),
      })
      if (!r.ok) return -1
      return (await r.json()).aggregations.n
    }
    const results: Phase[] = []
    const measure = async (phase: string, rows: number, changed: number, body: () => Promise<void>) => {
      const before = { ...provider.counts }
      started = performance.now()
      await body()
      const r = {
        phase,
        rows,
        changed,
        texts: provider.counts.texts - before.texts,
        requests: provider.counts.requests - before.requests,
        seconds: (performance.now() - started) / 1000,
      }
      results.push(r)
      console.log(
        `${phase}: ${fmt(r.texts)} texts sent (${fmt(r.requests)} requests) for ${fmt(changed)} chunks changed, ` +
          `${r.seconds.toFixed(1)} s`,
      )
    }
    const backfill = async () => {
      const b = startChild(bun, [
        'src/cli.ts',
        '-c',
        project.config,
        'backfill',
        'documents',
        '--slot',
        'bench',
        '--batch-size',
        String(BATCH),
      ])
      if ((await b.exited) !== 0) throw new Error(`backfill failed:\n${b.lines.slice(-20).join('\n')}`)
    }
    /** The rows of a phase: every 10th, from `offset`. */
    const tenth = (offset: number) =>
      Array.from({ length: Math.floor(ROWS / 10) }, (_, k) => 10 * k + offset + 1)
        .filter((id) => id <= ROWS)
    const chunksIn = (ids: number[]) => ids.reduce((n, id) => n + chunks[id - 1].length, 0)
    /** Waits until the rows `ids` have every chunk written with `stars = k`. */
    const landed = (ids: number[], k: number) =>
      waitUntil(`the update of ${ids.length} rows (stars = ${k})`, async () => await count(k) === chunksIn(ids), run)

    await measure('backfill', ROWS, distinct, async () => {
      await backfill()
      await waitUntil('every chunk', async () => await count() === total)
    })

    run = await startRun('run', project, 'bench')
    const other = tenth(0)
    await measure('update of a column not embedded (10%)', other.length, 0, async () => {
      await sql`UPDATE documents SET stars = 1 WHERE id IN ${sql(other)}`
      await landed(other, 1)
    })

    const edited = tenth(3)
    let changed = 0
    for (const id of edited) {
      const next = editBody(bodies[id])
      const was = chunks[id - 1]
      const now = chunksOf(next)
      // a chunk is sent when its document's text differs (a text already sent in this phase is sent once)
      const sent = new Set<string>()
      now.forEach((t, i) => {
        if (t !== was[i] && !sent.has(t)) sent.add(t)
      })
      changed += sent.size
      bodies[id] = next
      chunks[id - 1] = now
    }
    await measure('body changed (10%)', edited.length, changed, async () => {
      for (let i = 0; i < edited.length; i += 50) {
        const part = edited.slice(i, i + 50)
        await sql.begin(async (tx) => {
          for (const id of part) await tx`UPDATE documents SET body = ${bodies[id]}, stars = 2 WHERE id = ${id}`
        })
      }
      await landed(edited, 2)
    })

    const resent = tenth(6)
    await measure('run restarted; body re-sent unchanged (10%)', resent.length, 0, async () => {
      await stopChild(run!)
      await sql`UPDATE documents SET title = title || '+', body = body || '', stars = 3 WHERE id IN ${sql(resent)}`
      run = await startRun('run (restarted)', project, 'bench')
      await landed(resent, 3)
    })

    await measure('second backfill', ROWS, 0, async () => {
      await backfill()
    })
    const docs = await count()
    if (docs !== chunks.reduce((n, c) => n + c.length, 0)) throw new Error(`the namespace has ${docs} documents`)

    console.log(
      `\n| phase | rows | chunks whose text changed | provider texts | texts / changed | requests | seconds |`,
    )
    console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |')
    for (const r of results) {
      const ratio = r.changed === 0 ? (r.texts === 0 ? '—' : '∞') : (r.texts / r.changed).toFixed(2)
      console.log(
        `| ${r.phase} | ${fmt(r.rows)} | ${fmt(r.changed)} | ${fmt(r.texts)} | ${ratio} | ${fmt(r.requests)} | ` +
          `${r.seconds.toFixed(1)} |`,
      )
    }
    const bad = results.filter((r) => r.texts !== r.changed)
    console.log(bad.length ? `\nFAIL: ${bad.map((r) => r.phase).join(', ')}` : '\nOK: provider texts = chunks changed')
    await sql.end()
    if (bad.length) process.exitCode = 1
  } finally {
    if (run) await stopChild(run)
    if (server) await stopChild(server.child)
    await provider.close()
    remove()
    cluster.stop()
  }
}

await main()
