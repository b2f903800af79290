// `verify --tenant` reads one tenant's rows, not the table: PostgreSQL selects them by the placeholder columns (every
// way of rendering the namespace; the types whose values print as their text or as integers), other types are read
// and left out as read; a document of another row found in the namespace is placed by looking its row up by key (or,
// for documents a transform names, by one read of the table) and repaired. Real PostgreSQL, the strict local server.
import { describe, expect, test } from 'bun:test'
import { parseNamespaceTemplate, placeholderValues } from '../src/config/row-documents.ts'
import { OID } from '../src/postgres/values.ts'
import { textMatchFilter } from '../src/source/mod.ts'
import { ROW_ATTR, VERSION_ATTR } from '../src/types.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'

describe('the rows of one tenant in SQL', () => {
  test('every assignment of placeholder values that renders the namespace', () => {
    const t = (text: string) => parseNamespaceTemplate(text)
    expect(placeholderValues(t('docs_{ws}'), 'docs_7', 64)).toEqual([{ ws: '7' }])
    expect(placeholderValues(t('docs_{ws}'), 'notes_7', 64)).toEqual([])
    // a separator a value may hold too: two rows of different values share the namespace
    expect(placeholderValues(t('r_{region}_{org}'), 'r_eu_west_7', 64)).toEqual([
      { region: 'eu', org: 'west_7' },
      { region: 'eu_west', org: '7' },
    ])
    // a placeholder may render nothing (an empty string); a column named twice renders the same text twice
    expect(placeholderValues(t('d_{a}_{b}'), 'd__7', 64)).toEqual([{ a: '', b: '7' }])
    expect(placeholderValues(t('{a}.{a}'), 'x.x', 64)).toEqual([{ a: 'x' }])
    expect(placeholderValues(t('{a}.{a}'), 'x.y', 64)).toEqual([])
    // too many ways: none listed (the caller reads every row)
    expect(placeholderValues(t('{a}_{b}_{c}'), 'a_b_c_d_e_f_g_h_i_j_k_l_m_n', 10)).toBeUndefined()
  })

  test('each column compared as its decoded values print; FALSE where no value can print so', () => {
    const col = (name: string, typeOid: number, typeName?: string) => ({ name, typeOid, typeName, typmod: -1 })
    const ws = [col('ws', OID.int4)]
    expect(textMatchFilter(ws, [{ ws: '7' }])).toEqual({
      condition: `__puffgres_t."ws" = current_setting('puffgres.filter_0')::int8`,
      values: ['7'],
    })
    // no integer prints as 07, or beyond a bigint
    for (const text of ['07', '-0', '9223372036854775808', 'x']) {
      expect(textMatchFilter(ws, [{ ws: text }])).toEqual({ condition: 'FALSE', values: [] })
    }
    expect(textMatchFilter([col('u', OID.uuid)], [{ u: 'ABC' }])!.condition).toBe('FALSE')
    // text compared as it is (an index serves); an enum (non-builtin) and a date by their output function
    const two = textMatchFilter([col('r', OID.text), col('e', 16500, 'mood')], [{ r: 'eu', e: 'x' }, {
      r: 'eu_x',
      e: '7',
    }])
    expect(two).toEqual({
      condition: `(__puffgres_t."r" = current_setting('puffgres.filter_0') AND ` +
        `format('%s', __puffgres_t."e") = current_setting('puffgres.filter_1')) OR ` +
        `(__puffgres_t."r" = current_setting('puffgres.filter_2') AND ` +
        `format('%s', __puffgres_t."e") = current_setting('puffgres.filter_3'))`,
      values: ['eu', 'x', 'eu_x', '7'],
    })
    expect(textMatchFilter([col('d', OID.date)], [{ d: '2024-01-01' }])!.condition).toContain('format')
    // a float prints otherwise (1e+21, -0): no filter, every row is read and checked
    expect(textMatchFilter([col('f', OID.float8)], [{ f: '2' }])).toBeUndefined()
    // one impossible alternative dropped, the other kept
    expect(textMatchFilter([col('a', OID.int8), col('b', OID.text)], [{ a: 'x', b: 'y' }, { a: '1', b: 'z' }]))
      .toEqual({
        condition: `(__puffgres_t."a" = current_setting('puffgres.filter_0')::int8 AND ` +
          `__puffgres_t."b" = current_setting('puffgres.filter_1'))`,
        values: ['1', 'z'],
      })
  })
})

const pipe = usePipeline({
  name: 'verifytenant',
  sql: `
    CREATE TABLE notes (id int PRIMARY KEY, ws int NOT NULL, at timestamptz, body text);
    ALTER TABLE notes REPLICA IDENTITY FULL;
    INSERT INTO notes SELECT g, g % 5, '2024-01-01 00:00:00+00', 'note ' || g FROM generate_series(1, 100) g;
    -- tenant 2: a value no JS Date holds (the row cannot be decoded)
    UPDATE notes SET at = '290000-01-01' WHERE id = 2;
    CREATE TABLE orgs (id int PRIMARY KEY, region text NOT NULL, org text NOT NULL);
    ALTER TABLE orgs REPLICA IDENTITY FULL;
    INSERT INTO orgs VALUES (1, 'eu', 'west_7'), (2, 'eu_west', '7'), (3, 'eu', '8');
    CREATE TABLE scores (id int PRIMARY KEY, f float8, body text);
    ALTER TABLE scores REPLICA IDENTITY FULL;
    INSERT INTO scores VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 2, 'c');
    CREATE TABLE named (id int PRIMARY KEY, ws int NOT NULL, body text);
    ALTER TABLE named REPLICA IDENTITY FULL;
    INSERT INTO named SELECT g, g % 3, 'n' || g FROM generate_series(1, 30) g;
    CREATE TABLE chunked (id int PRIMARY KEY, ws int NOT NULL, body text);
    ALTER TABLE chunked REPLICA IDENTITY FULL;
    INSERT INTO chunked SELECT g, g % 2, repeat('word ', 30) || g FROM generate_series(1, 10) g;
    CREATE TYPE mood AS ENUM ('happy', 'sad');
    CREATE TABLE teams (id int PRIMARY KEY, mood mood NOT NULL, team uuid NOT NULL, day date NOT NULL);
    ALTER TABLE teams REPLICA IDENTITY FULL;
    INSERT INTO teams VALUES (1, 'happy', '0b7e4c1a-1f2d-4c3b-9a8e-000000000001', '2024-01-01'),
      (2, 'happy', '0b7e4c1a-1f2d-4c3b-9a8e-000000000002', '2024-01-01'),
      (3, 'sad', '0b7e4c1a-1f2d-4c3b-9a8e-000000000001', '2024-01-01'),
      (4, 'happy', '0b7e4c1a-1f2d-4c3b-9a8e-000000000001', '2024-01-02');`,
  migrations: {
    '001_notes.toml': migration({ name: 'notes', table: 'notes', namespace: 'notes_{ws}' }),
    '002_orgs.toml': migration({ name: 'orgs', table: 'orgs', namespace: 'regional_{region}_{org}' }),
    '003_scores.toml': migration({ name: 'scores', table: 'scores', namespace: 'scores_{f}' }),
    '004_named.toml': migration({
      name: 'named',
      table: 'named',
      namespace: 'named_{ws}',
      transform: 'transforms/named.ts',
    }),
    '006_teams.toml': migration({ name: 'teams', table: 'teams', namespace: 'teams_{mood}_{team}_{day}' }),
    '005_chunked.toml': migration({
      name: 'chunked',
      table: 'chunked',
      namespace: 'chunked_{ws}',
      extra: '[mapping.chunking]\nsource = "body"\nsize = 40\n',
    }),
  },
  files: {
    // documents named otherwise than their rows: an id is no key (and `verify --repair` deletes a document by its
    // own id, never by what the transform makes of it)
    'transforms/named.ts': `export default function (event) {
  if (event.type === 'delete') return { type: 'delete', id: 'n' + event.id }
  if (event.new.body === 'boom') throw new Error('boom')
  return { type: 'upsert', id: 'n' + event.id, attributes: { body: event.new.body } }
}
`,
  },
})

const verify = async (...args: string[]) => {
  const r = await pipe.cli('verify', ...args, '--json')
  if (r.code === 2 || !r.out) throw new Error(`verify ${args.join(' ')} exited ${r.code}: ${r.err}`)
  return { code: r.code, err: r.err, report: JSON.parse(r.out) }
}

const ids = (ns: string) => [...pipe.docs(ns).keys()].map(String).sort()
const zero = '0'.repeat(24)

describe('verify --tenant', () => {
  test("reads only the tenant's rows: another tenant's row that cannot be decoded is not touched", async () => {
    for (const m of ['notes', 'orgs', 'scores', 'named', 'chunked', 'teams']) {
      expect((await pipe.cli('backfill', m)).code).toBe(0)
    }
    // the whole table: every row read (99 decoded), row 2 not judged
    const all = await verify('notes')
    expect(all.report.rows).toBe(99)
    expect(all.report.failed).toEqual({ count: 1, ids: ['2'] })

    const one = await verify('notes', '--tenant', '1')
    expect(one.code).toBe(0)
    expect(one.report).toMatchObject({
      namespace: 'notes_1',
      rows: 20,
      expected: 20,
      matching: 20,
      failed: { count: 0, ids: [] },
      tenant: { rows: 'selected', looked_up: 0, scanned: 0 },
      drift: false,
    })
    expect(one.err).not.toContain('could not be decoded')
    // tenant 2's own undecodable row is read (and not judged)
    const two = await verify('notes', '--tenant', '2')
    expect(two.report).toMatchObject({ rows: 19, failed: { count: 1, ids: ['2'] }, drift: false })
    // no integer prints as 07: nothing read
    const none = await verify('notes', '--tenant', '07')
    expect(none.report).toMatchObject({ namespace: 'notes_07', rows: 0, expected: 0, drift: false })
  })

  test('a stale copy of a moved row is misplaced and a deleted row extra: found by key, repaired with --tenant', async () => {
    // behind puffgres' back (no stream runs): row 6 moves from tenant 1 to 3, row 11 (tenant 1) is deleted; a copy
    // of row 2 (tenant 2, undecodable) sits in tenant 1's namespace
    await pipe.db.sql`UPDATE notes SET ws = 3 WHERE id = 6`
    await pipe.db.sql`DELETE FROM notes WHERE id = 11`
    await pipe.namespace('notes_1').write({ upsert_rows: [{ id: 2, body: 'stale', [VERSION_ATTR]: zero }] })

    const found = await verify('notes', '--tenant', '1')
    expect(found.code).toBe(1)
    expect(found.report).toMatchObject({
      rows: 18,
      expected: 18,
      misplaced: { count: 1, items: [{ id: 6, namespace: 'notes_1', belongs: 'notes_3' }] },
      extra: { count: 1, ids: [11] },
      missing: { count: 0 },
      // row 2's documents are not judged (the DLQ has it): its copy is neither extra nor deleted
      failed: { count: 1, ids: ['2'] },
      tenant: { rows: 'selected', looked_up: 3, scanned: 0 },
    })
    const text = await pipe.cli('verify', 'notes', '--tenant', '1')
    expect(text.out).toContain('tenant        its rows selected by PostgreSQL; 3 other row(s) looked up by key')

    expect((await pipe.cli('verify', 'notes', '--tenant', '1', '--repair')).code).toBe(0)
    expect(ids('notes_1')).not.toContain('6')
    expect(ids('notes_1')).not.toContain('11')
    expect(ids('notes_1')).toContain('2')
    expect((await verify('notes', '--tenant', '1')).report).toMatchObject({ drift: false, extra: { count: 0 } })
    // where row 6 belongs now: missing there, and written by the repair
    expect((await verify('notes', '--tenant', '3')).report.missing).toEqual({ count: 1, ids: [6] })
    expect((await pipe.cli('verify', 'notes', '--tenant', '3', '--repair')).code).toBe(0)
    expect(ids('notes_3')).toContain('6')
    await pipe.namespace('notes_1').write({ deletes: [2] })
    expect((await verify('notes')).report.drift).toBe(false)
  })

  test("two ways to render one namespace: both rows are the tenant's", async () => {
    const r = await verify('orgs', '--tenant', 'region=eu,org=west_7')
    expect(r.report).toMatchObject({
      namespace: 'regional_eu_west_7',
      rows: 2,
      matching: 2,
      tenant: { rows: 'selected' },
      drift: false,
    })
    expect(ids('regional_eu_west_7')).toEqual(['1', '2'])
  })

  test('an enum, a uuid and a date compared in SQL', async () => {
    const tenant = 'mood=happy,team=0b7e4c1a-1f2d-4c3b-9a8e-000000000001,day=2024-01-01'
    const r = await verify('teams', '--tenant', tenant)
    expect(r.report).toMatchObject({
      namespace: 'teams_happy_0b7e4c1a-1f2d-4c3b-9a8e-000000000001_2024-01-01',
      rows: 1,
      matching: 1,
      tenant: { rows: 'selected', looked_up: 0 },
      drift: false,
    })
    // an upper-case uuid is no uuid's text: nothing read
    const upper = await verify('teams', '--tenant', tenant.replace('0b7e4c1a', '0B7E4C1A'))
    expect(upper.report).toMatchObject({ rows: 0, drift: false })
  })

  test("a placeholder whose values print otherwise (a float): every row read, only the tenant's kept", async () => {
    const r = await verify('scores', '--tenant', '2')
    expect(r.report).toMatchObject({
      namespace: 'scores_2',
      rows: 3,
      expected: 2,
      matching: 2,
      tenant: { rows: 'all read' },
      drift: false,
    })
    await pipe.db.sql`UPDATE scores SET f = 1 WHERE id = 3`
    const moved = await verify('scores', '--tenant', '2')
    expect(moved.report.misplaced.items).toEqual([{ id: 3, namespace: 'scores_2', belongs: 'scores_1' }])
    expect((await pipe.cli('verify', 'scores', '--tenant', '2', '--repair')).code).toBe(0)
    expect(ids('scores_2')).toEqual(['2'])
  })

  test('documents a transform names: a stray no key finds is placed by one read of the table', async () => {
    await pipe.db.sql`UPDATE named SET ws = 2 WHERE id = 1`
    const r = await verify('named', '--tenant', '1')
    expect(r.code).toBe(1)
    expect(r.report.misplaced).toEqual({ count: 1, items: [{ id: 'n1', namespace: 'named_1', belongs: 'named_2' }] })
    expect(r.report.tenant).toEqual({ rows: 'selected', looked_up: 0, scanned: 30 })
    expect(r.report.rows).toBe(9)
    expect((await pipe.cli('verify', 'named', '--tenant', '1', '--repair')).code).toBe(0)
    expect(ids('named_1')).not.toContain('n1')
    // in sync: nothing to place, the table is not read again
    expect((await verify('named', '--tenant', '1')).report.tenant).toEqual({
      rows: 'selected',
      looked_up: 0,
      scanned: 0,
    })
  })

  test('documents a transform names that no row makes: deleted by their own ids, with --tenant and without', async () => {
    // behind puffgres' back: row 4 (tenant 1) and row 5 (tenant 2) deleted; documents no row makes written directly
    await pipe.db.sql`DELETE FROM named WHERE id IN (4, 5)`
    await pipe.namespace('named_1').write({ upsert_rows: [{ id: 'n77', body: 'ghost', [VERSION_ATTR]: zero }] })
    await pipe.namespace('named_0').write({ upsert_rows: [{ id: 'x1', body: 'ghost', [VERSION_ATTR]: zero }] })

    const one = await verify('named', '--tenant', '1')
    expect(one.report.extra.ids.sort()).toEqual(['n4', 'n77'])
    const fixed = await pipe.cli('verify', 'named', '--tenant', '1', '--repair')
    expect(fixed.out).toMatch(/0 upserted, 2 deleted, 0 skipped .*, 0 failed/)
    expect(fixed.code).toBe(0)
    expect(ids('named_1')).not.toContain('n4')
    expect(ids('named_1')).not.toContain('n77')
    expect((await verify('named', '--tenant', '1')).report.drift).toBe(false)

    // every namespace: n5 in named_2, x1 in named_0 (and n1, moved to tenant 2 by the test above, missing there)
    const all = await verify('named')
    expect(all.report.extra.ids.sort()).toEqual(['n5', 'x1'])
    const repaired = await pipe.cli('verify', 'named', '--repair')
    expect(repaired.out).toMatch(/1 upserted, 2 deleted, 0 skipped .*, 0 failed/)
    expect(repaired.code).toBe(0)
    expect(ids('named_2')).not.toContain('n5')
    expect(ids('named_0')).not.toContain('x1')
    expect((await verify('named')).report.drift).toBe(false)
    expect(await pipe.deadLetters('named')).toEqual([])
  })

  test('the document of a row the transform fails on is not judged (it is named otherwise than the row)', async () => {
    await pipe.db.sql`UPDATE named SET body = 'boom' WHERE id = 7`
    for (const args of [['--tenant', '1'], []]) {
      const r = await verify('named', ...args, '--repair')
      expect(r.report).toMatchObject({ failed: { count: 1, ids: ['7'] }, extra: { count: 0 } })
      expect(ids('named_1')).toContain('n7')
    }
    await pipe.db.sql`UPDATE named SET body = 'n7' WHERE id = 7`
    expect((await verify('named')).report.drift).toBe(false)
  })

  test("a chunked row that moved: its chunks are found by their row's key and deleted", async () => {
    const before = ids('chunked_1').filter((id) => id.startsWith('3#'))
    expect(before.length).toBeGreaterThan(1)
    await pipe.db.sql`UPDATE chunked SET ws = 0 WHERE id = 3`
    const r = await verify('chunked', '--tenant', '1')
    expect(r.report.misplaced.count).toBe(before.length)
    expect(r.report.misplaced.items[0]).toMatchObject({ namespace: 'chunked_1', belongs: 'chunked_0' })
    expect(r.report.tenant).toEqual({ rows: 'selected', looked_up: 1, scanned: 0 })
    expect((await pipe.cli('verify', 'chunked', '--tenant', '1', '--repair')).code).toBe(0)
    expect([...pipe.docs('chunked_1').values()].filter((d) => d[ROW_ATTR] === '3')).toEqual([])
    expect((await verify('chunked', '--tenant', '0', '--repair')).code).toBe(0) // missing there: repaired
    expect((await verify('chunked')).report.drift).toBe(false)
  })
})
