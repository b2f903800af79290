// The evolution of mappings end to end, on real PostgreSQL, while `run` streams under a steady write load
// (docs/ARCHITECTURE.md, invariant 10): a mapping added, a new version with a changed transform re-indexed into a new
// namespace while the old one keeps serving, the old one retired and deleted. At the end every live namespace equals
// its table by an independent query (SQL on the table against the local server's documents), and the retired one
// is gone.
import { describe, expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const UPPER = `export default function upper(event: { type: string; new?: Record<string, unknown> }) {
  if (event.type === 'delete') return { type: 'delete' }
  return { type: 'upsert', attributes: { v: event.new!.v, title_upper: String(event.new!.title).toUpperCase() } }
}
`

const pipe = usePipeline({
  name: 'evolve_e2e',
  sql: `CREATE TABLE a (id serial PRIMARY KEY, v int NOT NULL, title text NOT NULL);`,
  migrations: { '001_a.toml': migration({ name: 'a', table: 'a', columns: ['v', 'title'] }) },
  files: { 'transforms/upper.ts': UPPER },
  stream: true,
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Inserts, updates and deletes rows of `table` until stopped; counts what it committed. */
function writeLoad(table: 'a' | 'b') {
  let stopped = false
  const counts = { insert: 0, update: 0, delete: 0 }
  const sql = pipe.db.sql
  const done = (async () => {
    for (let n = 0; !stopped; n++) {
      const r = Math.random()
      if (r < 0.5 || n < 20) {
        if (table === 'a') await sql`INSERT INTO a (v, title) VALUES (${n}, ${'title ' + n})`
        else await sql`INSERT INTO b (v) VALUES (${n})`
        counts.insert++
      } else if (r < 0.85) {
        if (table === 'a') {
          await sql`UPDATE a SET v = v + 1, title = title || 'x' WHERE id = (SELECT id FROM a ORDER BY random() LIMIT 1)`
        } else await sql`UPDATE b SET v = v + 1 WHERE id = (SELECT id FROM b ORDER BY random() LIMIT 1)`
        counts.update++
      } else {
        await sql.unsafe(`DELETE FROM ${table} WHERE id = (SELECT id FROM ${table} ORDER BY random() LIMIT 1)`)
        counts.delete++
      }
      await sleep(2)
    }
  })()
  return {
    counts,
    stop: async () => {
      stopped = true
      await done
    },
  }
}

/** Waits until the stream has confirmed everything committed so far. */
async function caughtUp() {
  const [{ lsn }] = await pipe.db.sql`SELECT pg_current_wal_insert_lsn()::text AS lsn`
  await waitFor('run to catch up', async () => {
    const [s] = await pipe.db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS past FROM pg_replication_slots
      WHERE slot_name = 'puffgres'`
    return s.past
  }, 60_000)
}

function sameDocs(ns: string, want: Map<number, Record<string, unknown>>) {
  const got = pipe.docs(ns)
  const missing = [...want.keys()].filter((id) => !got.has(id))
  const extra = [...got.keys()].filter((id) => !want.has(id as number))
  const canon = (d: Record<string, unknown> | undefined) => JSON.stringify(Object.entries(d ?? {}).sort())
  const wrong = [...want].filter(([id, d]) => got.has(id) && canon(got.get(id)) !== canon(d))
  return { missing: missing.length, extra: extra.length, wrong: wrong.length }
}

describe('mappings evolve while run streams under load', () => {
  test('add a mapping, re-index a new version into a new namespace, retire the old one: nothing lost or doubled', async () => {
    const loadA = writeLoad('a')
    pipe.defer(() => loadA.stop())
    await sleep(400)

    // 1. a mapping added while run streams
    await pipe.db.sql`CREATE TABLE b (id serial PRIMARY KEY, v int NOT NULL)`
    const loadB = writeLoad('b')
    pipe.defer(() => loadB.stop())
    await sleep(200)
    pipe.project.write('puffgres/migrations/002_b.toml', migration({ name: 'b', table: 'b', columns: ['v'] }))
    expect((await pipe.cli('migrate')).code).toBe(0)
    expect((await pipe.cli('backfill', 'b')).code).toBe(0)
    await sleep(300)

    // 2. a new version with a changed transform, re-indexed into a new namespace; the old one keeps being written
    pipe.project.write(
      'puffgres/migrations/003_a.toml',
      migration({ name: 'a', version: 2, table: 'a', transform: 'transforms/upper.ts', namespace: 'a_v2' }),
    )
    const reindex = await pipe.cli('reindex', 'a')
    expect(reindex.code).toBe(0)
    const during = (await pipe.status()).mappings.find((m: { mapping: string }) => m.mapping === 'a')
    expect(during.versions.map((v: { namespace: string; role: string }) => `${v.namespace}:${v.role}`)).toEqual([
      'a_v2:newest',
      'a:kept',
    ])
    expect(during.versions[0].caught_up).toBe(true)
    expect(during.active_namespace).toBe('a')
    const human = await pipe.cli('status')
    expect(human.out).toMatch(/^a \(building\)\s+a_v2\s+2\s/m)
    expect(human.out).toMatch(/^a \(serving, retire with reindex --retire\)\s+a\s+1\s/m)
    await sleep(300)
    // both namespaces follow the table while both are live
    await loadA.stop()
    await caughtUp()
    const rowsA = async () =>
      new Map(
        (await pipe.db.sql<{ id: number; v: number; title: string }[]>`SELECT id, v, title FROM a`).map((
          r,
        ) => [r.id, r]),
      )
    let a = await rowsA()
    expect(sameDocs('a', new Map([...a].map(([id, r]) => [id, { title: r.title, v: r.v }])))).toEqual({
      missing: 0,
      extra: 0,
      wrong: 0,
    })
    const loadA2 = writeLoad('a')
    pipe.defer(() => loadA2.stop())
    await sleep(300)

    // 3. the old version retired and its namespace deleted, under load
    const retire = await pipe.cli('reindex', 'a', '--retire', '--delete-namespace')
    expect(retire.code).toBe(0)
    expect(retire.out).toContain('deleted namespace a')
    await sleep(300)
    await loadA2.stop()
    await loadB.stop()
    await caughtUp()

    // every live namespace equals its table, by SQL against the server's documents
    a = await rowsA()
    expect(a.size).toBeGreaterThan(20)
    const wantA2 = new Map([...a].map(([id, r]) => [id, { title_upper: r.title.toUpperCase(), v: r.v }]))
    if (sameDocs('a_v2', wantA2).missing || pipe.server.documents('a').length) {
      const got = pipe.docs('a_v2')
      console.log('MISSING', [...wantA2.keys()].filter((id) => !got.has(id)).sort((x, y) => x - y).join(','))
      console.log('MAXID', Math.max(...wantA2.keys()), 'IN A', pipe.server.documents('a').map((d) => d.id).join(','))
      console.log(pipe.stream.logs.filter((l) => !l.includes('"debug"')).join('\n'))
      console.log(retire.out, retire.err)
    }
    expect(sameDocs('a_v2', wantA2)).toEqual({ missing: 0, extra: 0, wrong: 0 })
    const b = await pipe.db.sql<{ id: number; v: number }[]>`SELECT id, v FROM b`
    expect(b.length).toBeGreaterThan(10)
    expect(sameDocs('b', new Map(b.map((r) => [r.id, { v: r.v }])))).toEqual({ missing: 0, extra: 0, wrong: 0 })
    // the retired namespace is gone and stays gone
    expect(pipe.server.documents('a')).toHaveLength(0)
    expect(await pipe.deadLetters()).toHaveLength(0)
    const after = (await pipe.status()).mappings.find((m: { mapping: string }) => m.mapping === 'a')
    expect(after.versions).toHaveLength(1)
    expect(after.active_namespace).toBe('a_v2')
  })
})
