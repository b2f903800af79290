// Operating a mapping with a namespace per tenant (issue 24, README "Operating tenant mappings"): backfill across 200
// tenants through a bounded pool of namespace batches, killed mid-way and resumed, ending exact; verify finding a
// stale copy of a moved row in the old tenant's namespace, a namespace no row routes to any more, a deleted row, and
// --repair removing them; --tenant; status counting the namespaces. Real PostgreSQL, the strict local server.
import { describe, expect, test } from 'bun:test'
import { spawn } from 'node:child_process'
import { loadConfig } from '../src/config/load.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import type { Sink } from '../src/turbopuffer/types.ts'
import { quietBackfill } from './harness/backfill.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const ROWS = 6000
const TENANTS = 200

const pipe = usePipeline({
  name: 'tenantops',
  sql: `
    CREATE TABLE notes (id int PRIMARY KEY, ws int NOT NULL, body text);
    ALTER TABLE notes REPLICA IDENTITY FULL;
    INSERT INTO notes SELECT g, g % ${TENANTS}, 'note ' || g FROM generate_series(1, ${ROWS}) g;
    CREATE TABLE orgs (id int PRIMARY KEY, region text NOT NULL, org int NOT NULL);
    ALTER TABLE orgs REPLICA IDENTITY FULL;
    INSERT INTO orgs VALUES (1, 'eu', 7), (2, 'us', 7), (3, 'eu', 8);
    CREATE TABLE plain (id int PRIMARY KEY, t text);`,
  migrations: {
    '001_notes.toml': migration({ name: 'notes', table: 'notes', namespace: 'notes_{ws}' }),
    '002_orgs.toml': migration({ name: 'orgs', table: 'orgs', namespace: 'regional_{region}_{org}' }),
    '003_plain.toml': migration({ name: 'plain', table: 'plain' }),
  },
})

const progress = async () =>
  (await pipe.db.sql<{ status: string; rows: number }[]>`
    SELECT status, rows_done::int AS rows FROM __puffgres_backfill WHERE mapping = 'notes'`)[0]

/** Every document of the notes mapping, as namespace → sorted ids. */
function notesOnServer(): Map<string, number[]> {
  const out = new Map<string, number[]>()
  for (const ns of pipe.server.namespaces().filter((n) => n.startsWith('notes_'))) {
    out.set(ns, pipe.server.documents(ns).map((d) => Number(d.id)).sort((a, b) => a - b))
  }
  return out
}

/** What the table says: namespace → sorted ids. */
async function notesInTable(): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>()
  for (const r of await pipe.db.sql<{ id: number; ws: number }[]>`SELECT id, ws FROM notes ORDER BY id`) {
    const ns = `notes_${r.ws}`
    out.set(ns, [...out.get(ns) ?? [], r.id])
  }
  return out
}

/** The server's notes namespaces that hold documents, as the table would have them. */
function nonEmpty(m: Map<string, number[]>): Map<string, number[]> {
  return new Map([...m].filter(([, ids]) => ids.length > 0).sort(([a], [b]) => a.localeCompare(b)))
}

describe('a tenant mapping operated', () => {
  test('backfill across 200 tenants, killed mid-way, deletes meanwhile, --resume: exact', async () => {
    pipe.server.setLatency(60)
    // pages of 10 × 35 = 350 rows: 18 pages, each spread over all 200 tenants
    const child = spawn(
      './node_modules/.bin/bun',
      ['src/cli.ts', '-c', pipe.project.config, 'backfill', 'notes', '--batch-size', '10'],
      { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let output = ''
    child.stdout.on('data', (d) => output += d)
    child.stderr.on('data', (d) => output += d)
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    await waitFor('a few checkpoints', async () => (await progress())?.rows >= 1000, 60_000).catch((e) => {
      console.log(output)
      throw e
    })
    child.kill('SIGKILL')
    expect(await exited).toBe(null)
    pipe.server.setLatency(0)
    const killed = await progress()
    expect(killed.status).toBe('running')
    expect(killed.rows).toBeLessThan(ROWS)
    // rows deleted after the kill in the pages the killed run was writing (recorded in the journal, not checkpointed):
    // the resumed run re-checks them without knowing which namespace each went to; and rows not read yet
    const journal = await pipe.db.sql<{ keys: string[][] }[]>`
      SELECT keys::text[] AS keys FROM __puffgres_backfill_pages WHERE mapping = 'notes'`
    expect(journal.length).toBeGreaterThan(0)
    const inFlight = journal.flatMap((p) => p.keys[0].map(Number))
    const gone = inFlight.filter((_id, i) => i % 3 === 0)
    await pipe.db.sql`DELETE FROM notes WHERE id = ANY(${gone}) OR id > ${ROWS - 50}`
    const answered = () => Object.values(pipe.server.stats().statuses).reduce((a, b) => a + b, 0)
    await waitFor("the killed run's last writes to land", () => pipe.server.stats().requests === answered(), 10_000)

    const resumed = await pipe.cli('backfill', 'notes', '--resume', '--batch-size', '10')
    expect(resumed.err).toBe('')
    expect(resumed.code).toBe(0)
    expect(resumed.out).toContain('rows already copied')
    expect(resumed.out).toContain(`page(s) an interrupted backfill was writing`)
    expect((await progress()).status).toBe('done')
    // each row in its tenant's namespace and nowhere else; deleted rows nowhere
    expect(nonEmpty(notesOnServer())).toEqual(nonEmpty(await notesInTable()))
    const namespaces = pipe.server.namespaces().filter((n) => n.startsWith('notes_'))
    expect(namespaces.length).toBe(TENANTS)
    for (const id of gone.slice(0, 5)) {
      expect(pipe.server.documents(`notes_${id % TENANTS}`).map((d) => d.id)).not.toContain(id)
    }
  }, 120_000)

  test(
    'the pool of open namespace batches bounds what a page holds; a row deleted meanwhile goes from its tenant',
    async () => {
      const config = loadConfig(pipe.project.config)
      const real = new TurbopufferSink({ api_key: 'k', base_url: pipe.server.url })
      // rows of the first page deleted once it is read, before its re-check: deleted from the namespaces they went to
      const firstPage = (await pipe.db.sql<{ id: number }[]>`SELECT id FROM notes WHERE id > 10 ORDER BY id LIMIT 3`)
        .map((r) => r.id)
      let deleted = false
      const sink: Sink = {
        write: async (ns, ops, o) => {
          if (!deleted) {
            deleted = true
            await pipe.db.sql`DELETE FROM notes WHERE id = ANY(${firstPage})`
          }
          return await real.write(ns, ops, o)
        },
        deleteAllBefore: (ns, v) => real.deleteAllBefore(ns, v),
        stats: () => real.stats(),
        attributeTypes: (ns) => real.attributeTypes(ns),
        listNamespaces: (prefix, o) => real.listNamespaces(prefix, o),
      }
      const result = await quietBackfill(config, {
        mapping: 'notes',
        restart: true,
        batchSize: 20,
        sink,
        tenantPool: { maxOpen: 8, maxRows: 60 },
      })
      expect(result.outcome).toBe('done')
      if (result.outcome !== 'done') return
      // 200 tenants a page, never more than 8 batches open nor 60 rows in them
      expect(result.pool!.open).toBe(8)
      expect(result.pool!.rows).toBeLessThanOrEqual(60)
      expect(result.pool!.inFlight).toBeGreaterThan(1) // namespaces written in parallel
      expect(result.deleted).toBe(3)
      expect(nonEmpty(notesOnServer())).toEqual(nonEmpty(await notesInTable()))
    },
    60_000,
  )

  test('verify: a stale copy in the old tenant, a namespace no row routes to, a deleted row; --repair', async () => {
    expect((await pipe.cli('verify', 'notes')).code).toBe(0)
    // behind puffgres' back (no stream runs): row 1 moves from tenant 1 to tenant 2; every row of tenant 3 moves to
    // tenant 4; row 5 is deleted
    await pipe.db.sql`UPDATE notes SET ws = 2 WHERE id = 1`
    await pipe.db.sql`UPDATE notes SET ws = 4 WHERE ws = 3`
    await pipe.db.sql`DELETE FROM notes WHERE id = 5`
    const moved = (await pipe.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM notes WHERE ws = 4`)[0].n

    const found = await pipe.cli('verify', 'notes', '--json')
    expect(found.code).toBe(1)
    const r = JSON.parse(found.out)
    expect(r.namespaces.checked).toBe(TENANTS)
    expect(r.namespaces.unrouted).toEqual({ count: 1, names: ['notes_3'] })
    // row 1's document in notes_1 and tenant 3's in notes_3 sit in the wrong tenant's namespace
    expect(r.misplaced.count).toBe(1 + moved - (await tenantRowsBefore(4)))
    expect(r.misplaced.items).toContainEqual({ id: 1, namespace: 'notes_1', belongs: 'notes_2' })
    expect(r.missing.count).toBe(r.misplaced.count)
    expect(r.extra).toEqual({ count: 1, ids: [5] })
    const text = await pipe.cli('verify', 'notes')
    expect(text.out).toContain('misplaced')
    expect(text.out).toContain('no row routes to 1 of them')

    const repaired = await pipe.cli('verify', 'notes', '--repair')
    expect(repaired.code).toBe(0)
    expect(nonEmpty(notesOnServer())).toEqual(nonEmpty(await notesInTable()))
    // the emptied namespace is kept (a row may move back) and still reported; no drift
    const again = JSON.parse((await pipe.cli('verify', 'notes', '--json')).out)
    expect(again.drift).toBe(false)
    expect(again.namespaces.unrouted.names).toEqual(['notes_3'])
    expect(pipe.server.documents('notes_3')).toEqual([])
    // a sample reads each sampled row's namespace by ids: a drifted one is found there
    await pipe.db.sql`UPDATE notes SET body = 'sampled' WHERE id BETWEEN 100 AND 5000`
    const sample = JSON.parse((await pipe.cli('verify', 'notes', '--sample', '40', '--json')).out)
    expect(sample.sample).toBe(40)
    expect(sample.mismatched.count).toBeGreaterThan(0)
    expect(sample.namespaces.checked).toBeGreaterThan(1)
    expect(sample.namespaces.checked).toBeLessThanOrEqual(40)
    expect((await pipe.cli('verify', 'notes', '--repair')).code).toBe(0)
  }, 60_000)

  test(
    'verify --tenant checks one namespace; a mapping without a template, or too few values, is refused',
    async () => {
      await pipe.db.sql`UPDATE notes SET body = 'changed' WHERE id = 7`
      const one = await pipe.cli('verify', 'notes', '--tenant', '7', '--json')
      expect(one.code).toBe(1)
      const r = JSON.parse(one.out)
      expect(r.namespace).toBe('notes_7')
      expect(r.namespaces.checked).toBe(1)
      expect(r.mismatched.items).toEqual([{ id: 7, attributes: ['body'] }])
      expect(r.documents).toBe(pipe.server.documents('notes_7').length)
      // another tenant is in sync
      expect((await pipe.cli('verify', 'notes', '--tenant', '8')).code).toBe(0)
      expect((await pipe.cli('verify', 'notes', '--tenant', 'ws=7', '--repair')).code).toBe(0)
      expect((await pipe.cli('verify', 'notes', '--tenant', '7')).code).toBe(0)

      // a --tenant that names no namespace of the mapping: refused (exit 2) with what is wrong
      for (
        const [mapping, tenant, message] of [
          ['plain', '7', '--tenant: mapping plain has one namespace (plain)'],
          ['orgs', 'eu', '--tenant: "eu" is not column=value'],
          ['orgs', 'region=eu', 'needs a value for org'],
          ['orgs', 'region=e u,org=7', 'not a valid turbopuffer namespace name'],
        ]
      ) {
        const refused = await pipe.cli('verify', mapping, '--tenant', tenant)
        expect(refused.code).toBe(2)
        expect(refused.err).toContain(message)
      }

      expect((await pipe.cli('backfill', 'orgs')).code).toBe(0)
      const eu7 = JSON.parse((await pipe.cli('verify', 'orgs', '--tenant', 'region=eu,org=7', '--json')).out)
      expect(eu7.namespace).toBe('regional_eu_7')
      expect(eu7.matching).toBe(1)
      expect(eu7.drift).toBe(false)
    },
    60_000,
  )

  test('status: the number of namespaces and the largest; --json lists every one', async () => {
    await pipe.db.sql`INSERT INTO notes SELECT g, 9, 'more' FROM generate_series(100001, 100040) g`
    expect((await pipe.cli('backfill', 'notes', '--restart')).code).toBe(0)
    const s = await pipe.status()
    const notes = s.mappings.find((m: { mapping: string }) => m.mapping === 'notes')
    expect(notes.namespaces.count).toBe(TENANTS)
    expect(notes.namespaces.all.length).toBe(TENANTS)
    const table = await notesInTable()
    expect(notes.namespaces.documents).toBe([...table.values()].reduce((a, b) => a + b.length, 0))
    expect(notes.namespaces.largest[0]).toEqual({ namespace: 'notes_9', documents: table.get('notes_9')!.length })
    expect(notes.namespaces.largest.length).toBe(5)
    const sizes = notes.namespaces.largest.map((n: { documents: number }) => n.documents)
    expect(sizes).toEqual([...sizes].sort((a, b) => b - a))
    // the all list is in name order and agrees with the server
    for (const n of notes.namespaces.all) expect(n.documents).toBe(pipe.server.documents(n.namespace).length)
    // a mapping with one namespace is not counted
    expect(s.mappings.find((m: { mapping: string }) => m.mapping === 'plain').namespaces).toBeUndefined()
    const text = await pipe.cli('status')
    expect(text.code).toBe(0)
    expect(text.out).toContain(`namespaces of notes: ${TENANTS} (`)
    expect(text.out).toContain(`  notes_9  ${table.get('notes_9')!.length} documents`)
    expect(text.out).not.toContain(`namespaces of plain`)
  }, 60_000)
})

/** Rows of tenant `ws` that were there before tenant 3 moved into it (its own). */
async function tenantRowsBefore(ws: number): Promise<number> {
  return pipe.server.documents(`notes_${ws}`).length
}
