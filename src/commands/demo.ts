// `puffgres demo`: the whole pipeline on a throwaway PostgreSQL and the local turbopuffer server (or on real
// services when DATABASE_URL / TURBOPUFFER_API_KEY are set), then everything cleaned up.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'
import { pathToFileURL } from 'node:url'
import { parseFlags } from './flags.ts'
import { backfill } from '../backfill/backfill.ts'
import { loadConfig } from '../config/load.ts'
import { type LocalServer, startLocalServer } from '../local/server.ts'
import { createLogger } from '../log.ts'
import { connect } from '../postgres/connect.ts'
import { type Cluster, startCluster } from '../postgres/throwaway.ts'
import { createClient } from '../turbopuffer/client.ts'
import { applyMigrate, planMigrate } from './migrate.ts'
import { runStream } from '../stream/mod.ts'

export const help = `puffgres demo [--rows N] [--keep]

Runs the whole pipeline once, end to end, and shows each step:
  1. starts a throwaway PostgreSQL (wal_level=logical) and the local turbopuffer server
     (or uses DATABASE_URL and TURBOPUFFER_API_KEY / TURBOPUFFER_BASE_URL when they are set)
  2. creates a sample products table and fills it (--rows, default 1000)
  3. writes a project (migration with a membership predicate, a TypeScript transform with a toy embedding)
  4. migrate, backfill, then run: live inserts, updates, a membership exit and a delete arrive in the namespace
  5. a vector query on the example embedding
  6. cleans up: stream, slot, publication, table, namespace, throwaway servers (--keep leaves the project folder)
`

const TABLE = 'puffgres_demo_products'
const SLOT = 'puffgres_demo'
const PUBLICATION = 'puffgres_demo_pub'
const NAMESPACE = 'puffgres_demo_products'

const TRANSFORM = `import type { Action, RowEvent } from 'puffgres'

// A toy embedding, so that the demo needs no embeddings provider: words hashed into 64 dimensions.
export function embed(text: string): number[] {
  const v = new Array(64).fill(0)
  for (const word of text.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean)) {
    let h = 2166136261
    for (const c of word) h = Math.imul(h ^ c.charCodeAt(0), 16777619)
    v[(h >>> 0) % 64] += 1
  }
  const norm = Math.hypot(...v) || 1
  return v.map((x) => x / norm)
}

export default function transform(event: RowEvent): Action {
  if (event.type === 'delete') return { type: 'delete', id: event.id }
  const row = event.new!
  const text = \`\${row.name} \${row.description}\`
  return {
    type: 'upsert',
    id: event.id,
    attributes: { name: row.name, category: row.category, price: row.price, searchText: text.toLowerCase() },
    vector: embed(text),
  }
}
`

const MIGRATION = `[migration]
name = "products"
version = 1

[source]
table = "${TABLE}"

[mapping]
id = "id"
membership = "status = 'active'"
transform = "transforms/products.ts"

[target]
namespace = "${NAMESPACE}"
distance_metric = "cosine_distance"
`

const WORDS = {
  colour: ['red', 'blue', 'green', 'black', 'white', 'yellow'],
  thing: ['running shoes', 'rain jacket', 'backpack', 'water bottle', 'tent', 'headlamp', 'hiking boots'],
  adjective: ['light', 'waterproof', 'durable', 'compact', 'warm', 'breathable'],
}

const say = (s: string) => console.log(s)
const step = (s: string) => console.log(`\n== ${s}`)

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`demo: timed out waiting for ${what}`)
}

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { rows: { type: 'string' }, keep: { type: 'boolean' } })
  const rows = Number(values.rows ?? 1000)
  if (!Number.isInteger(rows) || rows < 10) {
    console.error('error: --rows: expected a whole number ≥ 10')
    return 2
  }
  const log = createLogger({ level: process.env.PUFFGRES_LOG ? undefined : 'warn' })
  let cluster: Cluster | undefined
  let server: LocalServer | undefined
  const dir = mkdtempSync(join(tmpdir(), 'puffgres-demo-'))
  const cleanups: Array<() => Promise<unknown>> = []
  try {
    step('1. PostgreSQL and turbopuffer')
    let databaseUrl = process.env.DATABASE_URL
    if (databaseUrl) say(`using DATABASE_URL (${databaseUrl.replace(/\/\/[^@/]*@/, '//…@')})`)
    else {
      cluster = await startCluster({}, say)
      databaseUrl = cluster.url()
      say(`started a throwaway PostgreSQL (wal_level=logical) on port ${cluster.port}`)
    }
    let baseUrl = process.env.TURBOPUFFER_BASE_URL
    const apiKey = process.env.TURBOPUFFER_API_KEY ?? 'demo'
    if (!process.env.TURBOPUFFER_API_KEY && !baseUrl) {
      server = await startLocalServer()
      baseUrl = server.url
      say(`started the local turbopuffer server at ${baseUrl}`)
    } else say(`using turbopuffer at ${baseUrl ?? 'its default region URL'}`)

    step(`2. a sample table with ${rows} products`)
    const sql = connect(databaseUrl, { max: 2 })
    cleanups.push(() => sql.end({ timeout: 2 }))
    await sql.unsafe(`DROP TABLE IF EXISTS ${TABLE}`)
    await sql.unsafe(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, name text NOT NULL, description text,
      category text, price numeric(10,2), status text NOT NULL)`)
    cleanups.push(() => sql.unsafe(`DROP TABLE IF EXISTS ${TABLE}`))
    const products = Array.from({ length: rows }, (_, i) => {
      const pick = (a: string[], k: number) => a[(i * k + Math.floor(i / a.length)) % a.length]
      const thing = pick(WORDS.thing, 7)
      return {
        id: i + 1,
        name: `${pick(WORDS.colour, 3)} ${thing}`,
        description: `${pick(WORDS.adjective, 5)} ${thing} for the outdoors`,
        category: thing.split(' ').at(-1)!,
        price: ((i * 37) % 20000) / 100 + 5,
        status: i % 10 === 0 ? 'draft' : 'active',
      }
    })
    await sql`INSERT INTO ${sql(TABLE)} ${sql(products)}`
    say(`inserted ${rows} rows (every tenth is a draft, outside the membership predicate)`)

    step('3. a puffgres project')
    mkdirSync(join(dir, 'puffgres', 'migrations'), { recursive: true })
    mkdirSync(join(dir, 'puffgres', 'transforms'), { recursive: true })
    writeFileSync(
      join(dir, 'puffgres.toml'),
      `[postgres]\nconnection_string = "${databaseUrl}"\n\n[turbopuffer]\napi_key = "${apiKey}"\n` +
        (baseUrl ? `base_url = "${baseUrl}"\n` : '') +
        `\n[stream]\nslot = "${SLOT}"\npublication = "${PUBLICATION}"\npoll_interval_ms = 200\n` +
        `heartbeat_interval_ms = 0\n`,
    )
    writeFileSync(join(dir, 'puffgres', 'migrations', '001_products.toml'), MIGRATION)
    writeFileSync(join(dir, 'puffgres', 'transforms', 'products.ts'), TRANSFORM)
    say(`wrote ${dir}/puffgres.toml, puffgres/migrations/001_products.toml, puffgres/transforms/products.ts`)
    const config = loadConfig(join(dir, 'puffgres.toml'), {})

    step('4. migrate')
    const plan = await planMigrate(config, sql)
    for (const s of plan.steps) say(`  ${s}`)
    await applyMigrate(sql, plan)
    cleanups.push(async () => {
      await sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${SLOT}`
      await sql.unsafe(`DROP PUBLICATION IF EXISTS ${PUBLICATION}`)
      for (const t of ['__puffgres_migrations', '__puffgres_checkpoints', '__puffgres_dlq']) {
        await sql.unsafe(`DELETE FROM ${t} WHERE ${t === '__puffgres_migrations' ? 'name' : 'mapping'} = 'products'`)
      }
      await sql`DELETE FROM __puffgres_backfill WHERE mapping = 'products'`
      await sql`DELETE FROM __puffgres_backfill_pages WHERE mapping = 'products'`
    })

    step('5. backfill')
    const client = createClient({ api_key: apiKey, base_url: baseUrl })
    const ns = client.namespace(NAMESPACE)
    cleanups.push(() => ns.deleteAll().catch(() => {}))
    const b = await backfill(config, { mapping: 'products', slot: SLOT, log, progress: false, say })
    if (b.outcome !== 'done') throw new Error(`demo: backfill ended with "${b.outcome}"`)
    say(`backfilled ${b.rows} member rows in ${b.ms} ms`)
    const count = async () => {
      const r = await ns.query({ aggregate_by: { n: ['Count'] } } as never) as { aggregations?: { n?: number } }
      return r.aggregations?.n ?? 0
    }
    const doc = async (id: number) => {
      const r = await ns.query({
        rank_by: ['id', 'asc'],
        top_k: 1,
        filters: ['id', 'Eq', id],
        include_attributes: true,
      })
      return r.rows?.[0] as Record<string, unknown> | undefined
    }
    say(`the namespace holds ${await count()} documents (drafts are not members)`)

    step('6. run: live changes arrive')
    const stop = new AbortController()
    let streaming!: () => void
    const started = new Promise<void>((r) => streaming = r)
    const stream = runStream(config, {
      slot: SLOT,
      createSlot: true,
      pollIntervalMs: 200,
      batchSize: 1000,
      signal: stop.signal,
      log,
      onStreaming: () => streaming(),
      heartbeatIntervalMs: 0,
    })
    stream.catch(() => {})
    cleanups.push(async () => {
      stop.abort()
      await stream.catch(() => {})
    })
    await started
    const newId = rows + 1
    await sql`INSERT INTO ${sql(TABLE)} VALUES (${newId}, 'red trail running shoes', 'light running shoes for trails',
      'shoes', 129.00, 'active')`
    await until('the insert', async () => (await doc(newId))?.name === 'red trail running shoes')
    say(`INSERT id ${newId}         → document ${JSON.stringify(await doc(newId), short)}`)
    await sql`UPDATE ${sql(TABLE)} SET price = 99.00 WHERE id = ${newId}`
    await until('the update', async () => (await doc(newId))?.price === '99.00')
    say(`UPDATE price           → price is now ${(await doc(newId))?.price}`)
    await sql`UPDATE ${sql(TABLE)} SET status = 'archived' WHERE id = 2`
    await until('the membership exit', async () => (await doc(2)) === undefined)
    say(`UPDATE status of id 2  → it left the membership predicate: its document is gone`)
    await sql`DELETE FROM ${sql(TABLE)} WHERE id = 3`
    await until('the delete', async () => (await doc(3)) === undefined)
    say(`DELETE id 3            → its document is gone; the namespace holds ${await count()} documents`)

    step('7. a vector query on the example embedding')
    const { embed } = await import(pathToFileURL(join(dir, 'puffgres', 'transforms', 'products.ts')).href)
    const q = 'running shoes for trails'
    const top = await ns.query({ rank_by: ['vector', 'ANN', embed(q)], top_k: 3, include_attributes: ['name'] })
    say(`nearest to "${q}":`)
    for (const r of top.rows ?? []) {
      say(`  ${String(r.id).padStart(6)}  ${String(r.name).padEnd(28)} distance ${Number(r.$dist).toFixed(3)}`)
    }

    step('8. clean up')
    return 0
  } catch (e) {
    console.error(`error: ${(e as Error).message}`)
    return 1
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {})
    await server?.stop()
    cluster?.stop()
    if (!values.keep) rmSync(dir, { recursive: true, force: true })
    say(
      `stopped the stream, dropped the demo slot, publication and table${server ? ', the local server' : ''}` +
        `${cluster ? ', the throwaway PostgreSQL' : ''}${values.keep ? `; kept ${dir}` : ''}`,
    )
  }
}

function short(k: string, v: unknown) {
  if (k === 'vector') return undefined
  if (k === 'searchText' || k === '_puffgres_version') return undefined
  return v
}
