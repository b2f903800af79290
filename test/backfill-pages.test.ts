// How a backfill cuts its work: keyset pages of several batches (one COPY, one re-check, one checkpoint each),
// batches written a few at a time, and the re-check's key list for ids that need quoting.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { backfill, pageRows } from '../src/backfill/backfill.ts'
import {
  movedCandidates,
  placeholderTexts,
  planReads,
  readPage,
  readRawPage,
  readRowsByKey,
  recheckPage,
  textArrayLiteral,
} from '../src/source/mod.ts'
import { loadConfig } from '../src/config/load.ts'
import { runCli } from './harness/cli.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { makeProject, migration, type Project } from './harness/project.ts'
import { quietLogger } from './harness/stream.ts'
import type { Sink, SinkStats, WriteResult } from '../src/turbopuffer/types.ts'
import type { WriteOp } from '../src/types.ts'

let db: TestDatabase
let project: Project

// ids that a text[] literal must quote or escape
const ODD_KEYS = ['a"b', 'c\\d', 'e,f', '{g}', ' h ', 'NULL', '', 'ünï', 'x\ty', 'line\nbreak', 'plain']

beforeAll(async () => {
  db = await testDatabase('backfill_pages')
  await db.sql.unsafe(`
    CREATE TABLE nums (id int PRIMARY KEY, v text);
    INSERT INTO nums SELECT g, 'v' || g FROM generate_series(1, 1000) g;
    CREATE TABLE odd (k text PRIMARY KEY, shown bool NOT NULL DEFAULT true);
    CREATE TABLE pairs (org int, slug text, shown bool NOT NULL DEFAULT true, PRIMARY KEY (org, slug));
    INSERT INTO pairs SELECT g % 5, 's' || g, true FROM generate_series(1, 200) g;
    CREATE DOMAIN flag AS bool;
    CREATE TABLE rr (id int PRIMARY KEY, ip inet, net cidr, b bool, f flag, c char(4), m money, ts timestamptz,
      by bytea, x float8, arr inet[]);
    INSERT INTO rr VALUES (1, '10.1.2.3', '10.0.0.0/8', true, false, 'ab', 12.5, '2024-01-01 00:00:00.123456+00',
      '\\xdeadbeef', 0.1, '{10.0.0.1,::1}');
    CREATE TABLE k_bool (k bool PRIMARY KEY);
    INSERT INTO k_bool VALUES (false), (true);
    CREATE TABLE k_ts (k timestamptz PRIMARY KEY);
    INSERT INTO k_ts VALUES ('-infinity'), ('0044-03-15 12:00:00+00 BC'), ('2024-01-01 00:00:00.123456+00'),
      ('2024-06-01 12:00:00.000001+00'), ('12024-01-01 00:00:00+00'), ('infinity');
    CREATE TABLE k_date (k date PRIMARY KEY);
    INSERT INTO k_date VALUES ('-infinity'), ('2024-02-29'), ('infinity');
    CREATE TABLE k_bytea (k bytea PRIMARY KEY);
    INSERT INTO k_bytea VALUES ('\\x00ff'), ('\\x41'), ('\\xdeadbeef');
    CREATE TABLE placed (id int PRIMARY KEY, b bool, c char(4), ip inet, t text, ts timestamptz);
    ALTER TABLE placed REPLICA IDENTITY FULL;
    INSERT INTO placed SELECT g, g % 2 = 0, 'ab', '10.0.0.1', CASE g WHEN 4 THEN '' WHEN 5 THEN NULL
      WHEN 6 THEN 'x"y' WHEN 9 THEN 'a\\b' ELSE 't' || g END, '2024-01-01 00:00:00.123456+00'
      FROM generate_series(1, 10) g;
    CREATE TABLE k_mixed (a text, b float8, c timestamptz, PRIMARY KEY (a, b, c));
    INSERT INTO k_mixed VALUES ('x', -0.5, '2024-01-01 00:00:00.5+00'), ('x', 'NaN', '2024-01-01 00:00:00.000001+00'),
      ('y', 1e300, 'infinity');
  `)
  for (const k of ODD_KEYS) await db.sql`INSERT INTO odd (k) VALUES (${k})`
  project = makeProject({
    databaseUrl: db.url,
    migrations: {
      '001_nums.toml': migration({ name: 'nums', table: 'nums' }),
      '002_odd.toml': migration({ name: 'odd', table: 'odd', id: 'k', membership: 'shown = true' }),
      '003_pairs.toml': migration({ name: 'pairs', table: 'pairs', id: ['org', 'slug'], membership: 'shown = true' }),
      ...Object.fromEntries(
        ['k_bool', 'k_ts', 'k_date', 'k_bytea'].map((
          t,
          i,
        ) => [`01${i}_${t}.toml`, migration({ name: t, table: t, id: 'k' })]),
      ),
      '020_k_mixed.toml': migration({ name: 'k_mixed', table: 'k_mixed', id: ['a', 'b', 'c'] }),
      '021_rr.toml': migration({ name: 'rr', table: 'rr' }),
      '022_placed.toml': migration({ name: 'placed', table: 'placed', namespace: 'pl_{b}_{c}_{ip}_{t}_{ts}' }),
    },
  })
  const m = await runCli(['-c', project.config, 'migrate'])
  expect(m.err).toBe('')
  expect(m.code).toBe(0)
})

afterAll(async () => {
  project?.remove()
  await db?.drop()
})

/** A sink that takes `delayMs` per write and records each write's size and how many were in flight at once. */
/** `hold`: writes of ids above `idsAbove` wait for `until` (a test that aborts at a checkpoint needs later pages
 * still unwritten then, however fast the machine). */
function recordingSink(delayMs: number, hold?: { idsAbove: number; until: AbortSignal }) {
  const sizes: number[] = []
  const ids: unknown[] = []
  let inFlight = 0
  let maxInFlight = 0
  const sink: Sink = {
    async write(_ns: string, ops: WriteOp[]): Promise<WriteResult> {
      maxInFlight = Math.max(maxInFlight, ++inFlight)
      try {
        await new Promise((r) => setTimeout(r, delayMs))
        if (hold && !hold.until.aborted && ops.some((op) => Number(op.id) > hold.idsAbove)) {
          await new Promise((r) => hold.until.addEventListener('abort', r, { once: true }))
        }
        sizes.push(ops.length)
        for (const op of ops) ids.push(op.id)
        return { written: ops.length, skipped: 0, failed: [] }
      } finally {
        inFlight--
      }
    },
    deleteAllBefore: () => Promise.resolve(),
    stats: (): SinkStats => ({ requests: sizes.length, retries: 0, written: ids.length, skipped: 0, failed: 0 }),
  }
  return { sink, sizes, ids, maxInFlight: () => maxInFlight }
}

describe('pages and batches', () => {
  test('a page is a whole number of batches, about 10,000 rows, at most 10 batches', () => {
    expect(pageRows(1000)).toBe(10_000)
    expect(pageRows(1)).toBe(10)
    expect(pageRows(30)).toBe(300)
    expect(pageRows(3000)).toBe(9000)
    expect(pageRows(20_000)).toBe(20_000)
  })

  test('batches of --batch-size rows, several in flight; one checkpoint per page; every row once', async () => {
    const rec = recordingSink(15)
    const checkpoints: { lastKey: string[]; rowsDone: number }[] = []
    const r = await backfill(loadConfig(project.config), {
      mapping: 'nums',
      batchSize: 30,
      sink: rec.sink,
      log: quietLogger(),
      progress: false,
      onCheckpoint: (c) => checkpoints.push(c),
    })
    expect(r.outcome).toBe('done')
    expect(rec.sizes.every((n) => n <= 30)).toBe(true)
    expect(rec.sizes.reduce((a, b) => a + b, 0)).toBe(1000)
    expect(new Set(rec.ids).size).toBe(1000)
    // a page's 10 batches go out 4 at a time: a slow sink does not serialize the backfill
    expect(rec.maxInFlight()).toBe(4)
    // pages of 300 rows: checkpoints after rows 300, 600, 900 and the last page of 100 (saves may coalesce)
    expect(checkpoints.length).toBeGreaterThanOrEqual(1)
    expect(checkpoints.length).toBeLessThanOrEqual(4)
    for (const c of checkpoints) expect([300, 600, 900, 1000]).toContain(c.rowsDone)
    expect(checkpoints.at(-1)).toEqual({ lastKey: ['1000'], rowsDone: 1000 })
  })
})

describe('stopping', () => {
  test('an abort stops after the page being written is checkpointed; --resume writes the rest exactly once', async () => {
    const config = loadConfig(project.config)
    const stop = new AbortController()
    const first = recordingSink(5, { idsAbove: 300, until: stop.signal })
    const checkpoints: number[] = []
    const r = await backfill(config, {
      mapping: 'nums',
      batchSize: 30,
      restart: true,
      sink: first.sink,
      log: quietLogger(),
      progress: false,
      signal: stop.signal,
      onCheckpoint: (c) => {
        checkpoints.push(c.rowsDone)
        stop.abort()
      },
    })
    expect(r.outcome).toBe('stopped')
    if (r.outcome !== 'stopped') return
    // the abort came with the first checkpoint (300 rows); the page being written then is finished, and every
    // written page is re-checked and checkpointed before the backfill returns
    expect(r.rows % 300).toBe(0)
    expect(r.rows).toBeGreaterThanOrEqual(300)
    expect(r.rows).toBeLessThan(1000)
    expect(checkpoints.at(-1)).toBe(r.rows)
    expect(first.ids.length).toBe(r.rows)
    const [saved] = await db.sql`SELECT status, rows_done::int AS rows, last_key FROM __puffgres_backfill
      WHERE mapping = 'nums'`
    expect(saved).toEqual({ status: 'running', rows: r.rows, last_key: [String(r.rows)] })

    const rest = recordingSink(0)
    const resumed = await backfill(config, {
      mapping: 'nums',
      batchSize: 30,
      resume: true,
      sink: rest.sink,
      log: quietLogger(),
      progress: false,
    })
    expect(resumed.outcome).toBe('done')
    expect(rest.ids.length).toBe(1000 - r.rows)
    expect(new Set([...first.ids, ...rest.ids]).size).toBe(1000)
  })
})

describe('the re-check', () => {
  test('text[] literal: quoted, escaped, and read back by PostgreSQL as the same texts', async () => {
    expect(textArrayLiteral([])).toBe('{}')
    expect(textArrayLiteral(['1', '2'])).toBe('{"1","2"}')
    expect(textArrayLiteral(['a"b', 'c\\d'])).toBe('{"a\\"b","c\\\\d"}')
    const [{ back }] = await db.sql<{ back: string[] }[]>`SELECT ${textArrayLiteral(ODD_KEYS)}::text[] AS back`
    expect(back).toEqual(ODD_KEYS)
    // a NULL element (a placeholder column's NULL), apart from ''
    const withNull = ['a', null, '', 'NULL', 'b"c']
    expect(textArrayLiteral(withNull)).toBe('{"a",NULL,"","NULL","b\\"c"}')
    // read element by element (postgres.js reads an array's NULL element as the text "NULL")
    const elements = await db.sql<{ e: string | null }[]>`SELECT unnest(${textArrayLiteral(withNull)}::text[]) AS e`
    expect(elements.map((r) => r.e)).toEqual(withNull)
  })

  test('finds exactly the ids that went away or left the predicate, whatever their text', async () => {
    const config = loadConfig(project.config)
    const m = config.mappings.find((x) => x.name === 'odd')!
    const plan = await planReads(db.sql, m, undefined)
    const page = await readPage(db.sql, plan, undefined, 100)
    expect(page.keys[0].slice().sort()).toEqual(ODD_KEYS.slice().sort())
    expect((await recheckPage(db.sql, plan, page)).stale).toEqual([])

    await db.sql`DELETE FROM odd WHERE k IN ('a"b', 'NULL', '')`
    await db.sql`UPDATE odd SET shown = false WHERE k IN ('c\\d', 'line\nbreak')`
    const { lsn, stale } = await recheckPage(db.sql, plan, page)
    expect(lsn).toBeGreaterThan(page.lsn)
    expect(stale.map((i) => page.keys[0][i]).sort()).toEqual(['', 'NULL', 'a"b', 'c\\d', 'line\nbreak'])
  })

  test('composite keys: the first and last keys of the page bound the lookup; exactly its stale rows are found', async () => {
    const config = loadConfig(project.config)
    const m = config.mappings.find((x) => x.name === 'pairs')!
    const plan = await planReads(db.sql, m, undefined)
    // a page from the middle: rows before and after it must not count
    const first = await readPage(db.sql, plan, undefined, 50)
    const page = await readPage(db.sql, plan, first.lastKey, 100)
    expect(page.count).toBe(100)
    const at = (i: number) => `${page.keys[0][i]}:${page.keys[1][i]}`
    // nothing changed: nothing stale (keys outside a wrongly taken range would be)
    expect((await recheckPage(db.sql, plan, page)).stale).toEqual([])
    const victims = [0, 1, 57, 99].map(at) // the page's edges and its middle
    for (const v of victims.slice(0, 3)) {
      const [org, slug] = v.split(':')
      await db.sql`DELETE FROM pairs WHERE org = ${Number(org)} AND slug = ${slug}`
    }
    const [org, slug] = victims[3].split(':')
    await db.sql`UPDATE pairs SET shown = false WHERE org = ${Number(org)} AND slug = ${slug}`
    // outside the page: changes there are not its business
    await db.sql`DELETE FROM pairs WHERE (org, slug) IN (SELECT org, slug FROM pairs ORDER BY org, slug LIMIT 3)`
    const { stale } = await recheckPage(db.sql, plan, page)
    expect(stale.map(at).sort()).toEqual(victims.slice().sort())
  })

  test('keys of types whose text a JS value would change (bool, timestamps with microseconds or infinity, bytea)', async () => {
    const config = loadConfig(project.config)
    for (const name of ['k_bool', 'k_ts', 'k_date', 'k_bytea', 'k_mixed']) {
      const m = config.mappings.find((x) => x.name === name)!
      const plan = await planReads(db.sql, m, undefined)
      const page = await readPage(db.sql, plan, undefined, 100)
      const n = page.count
      expect([name, (await recheckPage(db.sql, plan, page)).stale]).toEqual([name, []])
      // the first and the last row go: exactly those two are stale
      const cols = m.idColumns.map((c) => `"${c}"`).join(', ')
      await db.sql.unsafe(`DELETE FROM ${name} WHERE (${cols}) IN (
        (SELECT ${cols} FROM ${name} ORDER BY ${cols} LIMIT 1) UNION ALL
        (SELECT ${cols} FROM ${name} ORDER BY ${m.idColumns.map((c) => `"${c}" DESC`).join(', ')} LIMIT 1))`)
      const { stale } = await recheckPage(db.sql, plan, page)
      expect([name, stale.sort((a, b) => a - b)]).toEqual([name, [0, n - 1]])
    }
  })
})

test("a tenant page's moved rows: exactly those whose placeholder columns print otherwise now, within the page", async () => {
  const m = loadConfig(project.config).mappings.find((x) => x.name === 'placed')!
  const plan = await planReads(db.sql, m, undefined)
  expect(plan.placeholders?.index.map((i) => plan.columns[i].name)).toEqual(['b', 'c', 'ip', 't', 'ts'])
  // rows 2..10: row 1 is outside the page (its change is not the page's business)
  const raw = await readRawPage(db.sql, plan, ['1'], 100)
  const keys = [raw.rows.map((r) => r[0] as string)]
  const page = { lsn: raw.lsn, keys, placeholders: placeholderTexts(plan, raw.rows)! }
  expect(page.placeholders[3]).toContain(null)
  const moved = async () =>
    (await movedCandidates(db.sql, plan, page, page.placeholders)).map((i) => Number(keys[0][i])).sort((a, b) => a - b)
  // as COPY printed them: a bool's t, an inet without /32, a char(4)'s padding, NULL apart from ''
  expect(await moved()).toEqual([])
  await db.sql.unsafe(`
    UPDATE placed SET b = NOT b WHERE id IN (1, 2);
    UPDATE placed SET c = 'ab ' WHERE id = 3;                     -- the same char(4)
    UPDATE placed SET ip = '10.0.0.1/32' WHERE id = 3;            -- the same inet
    UPDATE placed SET t = NULL WHERE id = 4;                      -- '' → NULL
    UPDATE placed SET t = '' WHERE id = 5;                        -- NULL → ''
    UPDATE placed SET t = 'x"y' WHERE id = 6;                     -- unchanged
    UPDATE placed SET ts = ts + interval '1 microsecond' WHERE id = 7;
    DELETE FROM placed WHERE id = 8;                              -- gone: the re-check's stale row, not moved
    UPDATE placed SET t = 'a\\c' WHERE id = 9;
    UPDATE placed SET ip = '10.0.0.2' WHERE id = 10;`)
  expect(await moved()).toEqual([2, 4, 5, 7, 9, 10])
})

test("a tenant page's moved rows: a column with a case-insensitive collation moved from 'Acme' to 'acme'", async () => {
  // the namespace is rendered byte for byte (docs_Acme, docs_acme): compared so too, not in the column's collation
  const icu = await db.sql`SELECT 1 FROM pg_collation WHERE collprovider = 'i' LIMIT 1`
  if (!icu.length) return console.warn('this PostgreSQL has no ICU: no nondeterministic collation to test')
  await db.sql.unsafe(`
    CREATE COLLATION IF NOT EXISTS nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
    CREATE TABLE cased (id int PRIMARY KEY, org text COLLATE nocase);
    ALTER TABLE cased REPLICA IDENTITY FULL;
    INSERT INTO cased VALUES (1, 'Acme'), (2, 'Beta'), (3, 'Beta');`)
  const m = { ...loadConfig(project.config).mappings.find((x) => x.name === 'placed')!, table: 'cased' }
  m.namespaceTemplate = { ...m.namespaceTemplate!, columns: ['org'] }
  const plan = await planReads(db.sql, m, undefined)
  const raw = await readRawPage(db.sql, plan, undefined, 100)
  const keys = [raw.rows.map((r) => r[0] as string)]
  const page = { lsn: raw.lsn, keys, placeholders: placeholderTexts(plan, raw.rows)! }
  await db.sql`UPDATE cased SET org = 'acme' WHERE id = 1`
  await db.sql`UPDATE cased SET org = 'Beta' WHERE id = 2`
  const moved = (await movedCandidates(db.sql, plan, page, page.placeholders)).map((i) => Number(keys[0][i]))
  expect(moved).toEqual([1])
})

test('rows re-read by key (TOAST re-reads, DLQ retry, verify --repair) decode as the COPY pages and pgoutput do', async () => {
  const m = loadConfig(project.config).mappings.find((x) => x.name === 'rr')!
  const plan = await planReads(db.sql, m, undefined)
  const [fromCopy] = (await readPage(db.sql, plan, undefined, 10)).rows
  const source = { schema: 'public', table: 'rr' }
  const [byKey] = await readRowsByKey(db.sql, source, plan.tableColumns, ['id'], plan.keyTypes, [[1]])
  expect(byKey).toEqual(fromCopy)
  // the output functions' text, which the stream gets: no /32 on a host address; a domain over bool is a bool (its
  // base type's name, as pgoutput's Type message gives it, decodes it)
  expect(byKey).toMatchObject({ ip: '10.1.2.3', b: true, f: false, arr: '{10.0.0.1,::1}' })
})

test('a dead letter of a backfilled row keeps its key as PostgreSQL printed it (a timestamp with its microseconds), as the stream does', async () => {
  const refusing: Sink = {
    write: (_ns, ops) => Promise.resolve({ written: 0, skipped: 0, failed: ops.map((op) => ({ op, error: 'no' })) }),
    deleteAllBefore: () => Promise.resolve(),
    stats: () => ({ requests: 0, retries: 0, written: 0, skipped: 0, failed: 0 }),
  }
  const config = loadConfig(project.config)
  for (const mapping of ['k_ts', 'nums']) {
    const r = await backfill(config, { mapping, restart: true, sink: refusing, log: quietLogger(), progress: false })
    expect(r.outcome).toBe('done')
  }
  const ts = await db.sql<{ texts: string[] | null }[]>`
    SELECT event->'key_texts' AS texts FROM __puffgres_dlq WHERE mapping = 'k_ts' ORDER BY id`
  const printed = await db.sql<{ k: string }[]>`SELECT k::text AS k FROM k_ts ORDER BY k_ts.k`
  expect(ts.map((x) => x.texts)).toEqual(printed.map((x) => [x.k]))
  expect(ts.some((x) => /\.\d{6}\+00$/.test(x.texts![0]))).toBe(true) // microseconds kept
  const [nums] = await db.sql`SELECT count(*)::int AS n, count(event->'key_texts')::int AS with_texts
    FROM __puffgres_dlq WHERE mapping = 'nums'`
  // one row key on every path: an int key's texts are kept too, as the stream keeps them
  expect(nums).toEqual({ n: 1000, with_texts: 1000 })
})
