// The writers that race the stream go through its one write path (docs/ARCHITECTURE.md, invariant 12): backfill's
// dead letters carry the row key the stream's do (key texts and the document id), so `dlq retry` finds the row;
// `verify --repair` leaves alone what it did not judge, and deletes an extra document at the version it judged it.
import { describe, expect, test } from 'bun:test'
import { docId } from '../src/pipeline/docid.ts'
import { VERSION_ATTR } from '../src/types.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

// '290000-01-01' is a timestamptz PostgreSQL takes and the decoder cannot: the row is dead-lettered on every path
const pipe = usePipeline({
  name: 'onepath_repair',
  sql: `CREATE TABLE bi (id int PRIMARY KEY, at timestamptz);
    INSERT INTO bi VALUES (1, '290000-01-01'), (2, '2024-01-01');
    CREATE TABLE bt (at timestamptz PRIMARY KEY, v timestamptz);
    INSERT INTO bt VALUES ('2024-01-01 00:00:00.123456+00', '290000-01-01'), ('2024-01-02 00:00:00+00', '2024-01-01');
    CREATE TABLE bc (a text, b text, v timestamptz, PRIMARY KEY (a, b));
    INSERT INTO bc VALUES ('x:y', 'z\\w', '290000-01-01'), ('x', 'y:z\\w', '2024-01-01');
    CREATE TABLE vr (id int PRIMARY KEY, at timestamptz);
    INSERT INTO vr VALUES (1, '290000-01-01'), (2, '2024-01-01');
    CREATE TABLE r (id int PRIMARY KEY, name text);
    CREATE TABLE bx (at timestamptz PRIMARY KEY, v int);
    INSERT INTO bx VALUES ('290000-01-01 00:00:00+00', 1), ('2024-01-01 00:00:00+00', 2);
    CREATE TABLE bb (id bigint PRIMARY KEY, v int);
    INSERT INTO bb VALUES (1, 1);
    CREATE TABLE rn (id int PRIMARY KEY, name text);
    INSERT INTO rn VALUES (1, 'one');`,
  migrations: {
    '001_bi.toml': migration({ name: 'bi', table: 'bi' }),
    '002_bt.toml': migration({ name: 'bt', table: 'bt', id: 'at' }),
    '003_bc.toml': migration({ name: 'bc', table: 'bc', id: ['a', 'b'] }),
    '004_vr.toml': migration({ name: 'vr', table: 'vr' }),
    '005_r.toml': migration({ name: 'r', table: 'r' }),
    '006_bx.toml': migration({ name: 'bx', table: 'bx', id: 'at' }),
    '007_bb.toml': migration({ name: 'bb', table: 'bb' }),
    '008_rn.toml': migration({ name: 'rn', table: 'rn', transform: 'transforms/rn.ts' }),
  },
  files: {
    'transforms/rn.ts': `export default function (event) {
  if (event.type === 'delete') return { type: 'delete', id: 'n' + event.id }
  return { type: 'upsert', id: 'n' + event.id, attributes: { name: event.new.name } }
}
`,
  },
})

const entries = async (mapping: string) =>
  await pipe.db.sql<{ id: string; doc_id: string | null; event: { key_texts?: unknown } }[]>`
    SELECT id::text, doc_id, event FROM __puffgres_dlq WHERE mapping = ${mapping} ORDER BY id`

describe("backfill's dead letters are retried like the stream's", () => {
  test('an integer id: the entry keeps its key texts, and the retry writes the integer id', async () => {
    expect((await pipe.cli('backfill', 'bi')).code).toBe(0)
    const [e] = await entries('bi')
    expect(e).toMatchObject({ doc_id: '1', event: { key_texts: ['1'] } })
    await pipe.db.sql`UPDATE bi SET at = '2024-01-03' WHERE id = 1`
    const r = await pipe.cli('dlq', 'retry', '--id', e.id)
    expect(r.out + r.err).not.toContain('mixing')
    expect(r.code).toBe(0)
    expect(await entries('bi')).toEqual([])
    expect([...pipe.docs('bi').keys()].sort()).toEqual([1, 2])
  })

  test("an entry backfill filed before it kept key texts (`key`: the id's text) is retried with the integer id", async () => {
    await pipe.db.sql`INSERT INTO bi VALUES (5, '2024-01-05')`
    const [{ id }] = await pipe.db.sql<{ id: string }[]>`
      INSERT INTO __puffgres_dlq (mapping, doc_id, lsn, event, error)
      VALUES ('bi', '5', '0/1', ${pipe.db.sql.json({ type: 'insert', key: { id: '5' } })}, 'an older failure')
      RETURNING id::text`
    const r = await pipe.cli('dlq', 'retry', '--id', id)
    expect(r.out + r.err).not.toContain('mixing')
    expect(r.code).toBe(0)
    expect(pipe.docs('bi').has(5)).toBe(true)
    expect(pipe.docs('bi').has('5')).toBe(false)
  })

  test('an entry an older stream filed without key texts (its decoded row only) is retried by those values', async () => {
    await pipe.db.sql`INSERT INTO bi VALUES (7, '2024-01-07')`
    const event = { type: 'insert', op: 'insert', id: 7, mapping: 'bi', new: { id: 7, at: '2024-01-07T00:00:00.000Z' } }
    const [{ id }] = await pipe.db.sql<{ id: string }[]>`
      INSERT INTO __puffgres_dlq (mapping, doc_id, lsn, event, error)
      VALUES ('bi', '7', '0/1', ${pipe.db.sql.json(event)}, 'an older failure')
      RETURNING id::text`
    const r = await pipe.cli('dlq', 'retry', '--id', id)
    expect(r.code).toBe(0)
    expect(r.out + r.err).not.toContain('delete')
    expect((await entries('bi')).map((e) => e.id)).not.toContain(id)
    expect(pipe.docs('bi').has(7)).toBe(true)
  })

  test('a timestamptz id: the retry finds the row by its key texts and writes it (never a delete of a live row)', async () => {
    expect((await pipe.cli('backfill', 'bt')).code).toBe(0)
    const [e] = await entries('bt')
    expect(e).toMatchObject({
      doc_id: '2024-01-01T00:00:00.123456Z',
      event: { key_texts: ['2024-01-01 00:00:00.123456+00'] },
    })
    await pipe.db.sql`UPDATE bt SET v = '2024-01-03' WHERE v > '10000-01-01'`
    const r = await pipe.cli('dlq', 'retry', '--id', e.id)
    expect(r.code).toBe(0)
    expect(r.out + r.err).not.toContain('delete')
    expect(await entries('bt')).toEqual([])
    expect(pipe.docs('bt').has('2024-01-01T00:00:00.123456Z')).toBe(true)
  })

  test('an entry an older stream filed without key texts for a timestamptz id with microseconds: found by its document id, never a wrong delete', async () => {
    await pipe.db.sql`INSERT INTO bt VALUES ('2024-01-05 00:00:00.123456+00', '2024-01-05')`
    // the decoded row an older stream kept: the timestamp in milliseconds; the entry names the row's document
    const event = { type: 'insert', op: 'insert', mapping: 'bt', new: { at: '2024-01-05T00:00:00.123Z', v: null } }
    const [{ id }] = await pipe.db.sql<{ id: string }[]>`
      INSERT INTO __puffgres_dlq (mapping, doc_id, lsn, event, error)
      VALUES ('bt', '2024-01-05T00:00:00.123456Z', '0/1', ${pipe.db.sql.json(event)}, 'an older failure')
      RETURNING id::text`
    const r = await pipe.cli('dlq', 'retry', '--id', id)
    expect(r.code).toBe(0)
    // the values alone do not find the live row (it was a delete of a document the row never had, the entry gone):
    // the document id the entry is filed under, which decodes to those values, finds it
    expect((await entries('bt')).map((e) => e.id)).not.toContain(id)
    expect(pipe.docs('bt').has('2024-01-05T00:00:00.123456Z')).toBe(true)
    expect(pipe.docs('bt').has('2024-01-05T00:00:00.123Z')).toBe(false)
  })

  test('an entry an older stream filed without key texts for a bigint id beyond 2^53: retried with the integer id', async () => {
    expect((await pipe.cli('backfill', 'bb')).code).toBe(0)
    await pipe.db.sql`INSERT INTO bb VALUES (1800000000000000001, 1)`
    // the dead-letter queue stores a bigint as its decimal string (JSON has no bigint)
    const event = { type: 'insert', op: 'insert', mapping: 'bb', new: { id: '1800000000000000001', v: 1 } }
    const [{ id }] = await pipe.db.sql<{ id: string }[]>`
      INSERT INTO __puffgres_dlq (mapping, doc_id, lsn, event, error)
      VALUES ('bb', '1800000000000000001', '0/1', ${pipe.db.sql.json(event)}, 'an older failure')
      RETURNING id::text`
    const r = await pipe.cli('dlq', 'retry', '--id', id)
    expect(r.out + r.err).not.toContain('mixing')
    expect(r.code).toBe(0)
    expect(pipe.docs('bb').has(1800000000000000001n)).toBe(true)
    expect(pipe.docs('bb').has('1800000000000000001')).toBe(false)
  })

  test("a composite key with ':' and '\\': the entry's document id is the one the stream gives the row", async () => {
    expect((await pipe.cli('backfill', 'bc')).code).toBe(0)
    const [e] = await entries('bc')
    expect(e.doc_id).toBe(docId({ a: 'x:y', b: 'z\\w' }, ['a', 'b']) as string)
    expect(e.event.key_texts).toEqual(['x:y', 'z\\w'])
    expect(pipe.docs('bc').has(docId({ a: 'x', b: 'y:z\\w' }, ['a', 'b']))).toBe(true)
  })
})

describe('an id PostgreSQL takes and the decoder cannot (a timestamptz outside a JS Date)', () => {
  test('backfill files one dead letter under its key texts and goes on; verify and dlq retry name it, never crash', async () => {
    const b = await pipe.cli('backfill', 'bx')
    expect(b.err).not.toContain('outside the range of a JS Date\n')
    expect(b.code).toBe(0)
    expect([...pipe.docs('bx').keys()]).toEqual(['2024-01-01T00:00:00.000000Z'])
    const [e, ...more] = await entries('bx')
    expect(more).toEqual([])
    // the texts the stream files such a row under (no document id: keyIdText)
    expect(e.doc_id).toMatch(/^290000-01-01 00:00:00/)
    expect(e.event.key_texts).toEqual([e.doc_id])
    const v = await pipe.cli('verify', 'bx')
    expect(v.err).not.toMatch(/^\s+at /m)
    expect(v.out).toMatch(/not judged\s+1 .*290000-01-01/m)
    const r = await pipe.cli('dlq', 'retry', '--id', e.id)
    expect(r.err).not.toMatch(/^\s+at /m)
    // the entry stays, one more attempt recorded
    const [after] = await pipe.db.sql<{ attempts: number }[]>`SELECT attempts FROM __puffgres_dlq WHERE id = ${e.id}`
    expect(after.attempts).toBe(2)
    expect(r.out + r.err).toMatch(/cannot retry: .*cannot be decoded/)
  })
})

describe('verify --repair', () => {
  test('leaves the document of a row it could not judge (a value that cannot be decoded)', async () => {
    expect((await pipe.cli('backfill', 'vr')).code).toBe(0)
    // the row's document from before its value went bad
    await pipe.namespace('vr').write({ upsert_rows: [{ id: 1, at: null, [VERSION_ATTR]: '0'.repeat(24) }] })
    const r = await pipe.cli('verify', 'vr', '--repair')
    expect(r.out).toMatch(/not judged\s+1 .*: 1$/m)
    expect(r.out).toMatch(/extra\s+0$/m)
    expect(pipe.docs('vr').has(1)).toBe(true)
  })

  test('never deletes the document of a row inserted after it judged the document extra', async () => {
    await pipe.startStream()
    await pipe.db.sql`INSERT INTO r VALUES (1, 'one'), (2, 'two')`
    await waitFor('the stream', () => pipe.docs('r').size === 2)
    await pipe.namespace('r').write({ upsert_rows: [{ id: 96, name: 'stale', [VERSION_ATTR]: '0'.repeat(24) }] })
    const latency = (ms: number) => fetch(`${pipe.server.url}/_admin/latency`, { method: 'POST', body: `{"ms":${ms}}` })
    await latency(1000)
    try {
      const before = pipe.server.stats().requests
      const verifying = pipe.cli('verify', 'r', '--repair')
      // verify's requests: the namespace's types, then the listing (sent once the rows were read, after its LSN)
      await waitFor('the listing', () => pipe.server.stats().requests >= before + 2, 30_000, 2)
      await pipe.db.sql`INSERT INTO r VALUES (96, 'inserted while verify lists')`
      // an open transaction holds verify's next stableLsn() until the streamed document has landed: a repair that
      // deletes at a later position than its judgement then deletes the live row's document
      const hold = await pipe.db.sql.reserve()
      try {
        await hold`BEGIN`
        await hold`SELECT pg_current_xact_id()`
        await waitFor('the streamed document', () => pipe.docs('r').get(96)?.name === 'inserted while verify lists')
        await hold`COMMIT`
      } finally {
        hold.release()
      }
      const r = await verifying
      expect(r.out).toMatch(/extra\s+1: 96/)
    } finally {
      await latency(0)
    }
    expect(pipe.docs('r').get(96)).toMatchObject({ name: 'inserted while verify lists' })
    const again = await pipe.cli('verify', 'r')
    expect(again.out).toContain('in sync')
  })
})

describe('dlq retry of an entry that names no row', () => {
  test('a document id a transform named (an older verify --repair filed it): that entry fails, the others are retried', async () => {
    // older versions sent the delete of an extra document n77 through the transform, and filed its refusal under the
    // document's id as if it were the row's: n77 is no value of the integer id column
    const event = {
      type: 'delete',
      op: 'delete',
      id: 'n77',
      schema: 'public',
      table: 'rn',
      mapping: 'rn',
      old: { id: 'n77' },
    }
    const row = { type: 'insert', op: 'insert', id: 1, mapping: 'rn', new: { id: 1, name: 'one' }, key_texts: ['1'] }
    await pipe.db.sql`INSERT INTO __puffgres_dlq (mapping, doc_id, lsn, event, error)
      VALUES ('rn', 'n77', '0/1', ${pipe.db.sql.json(event)}, 'refused'),
             ('rn', '1', '0/1', ${pipe.db.sql.json(row)}, 'an older failure')`
    const r = await pipe.cli('dlq', 'retry', '--mapping', 'rn')
    expect(r.code).toBe(1)
    expect(r.out + r.err).toMatch(
      /failed .*: cannot retry: n77 is no key of public\.rn \(.*\); `puffgres verify rn --repair` deletes .*, then `puffgres dlq clear --id \d+`$/m,
    )
    expect(r.err).not.toMatch(/^\s+at /m)
    expect(pipe.docs('rn').get('n1')).toMatchObject({ name: 'one' })
    const left = await pipe.db.sql<{ doc_id: string; attempts: number }[]>`
      SELECT doc_id, attempts FROM __puffgres_dlq WHERE mapping = 'rn'`
    expect(left).toEqual([{ doc_id: 'n77', attempts: 2 }])
  })
})
