// One row key on every path (src/pipeline/row-key.ts): the stream's change decoder and backfill's COPY page build
// the same key texts and document id for the same row, and the key a dead letter stores (and a re-check decodes
// from texts) names the same document. Real PostgreSQL on both sides: the stream side decodes pgoutput messages of
// a logical slot, the backfill side reads the table's keyset page.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Mapping } from '../src/config/load.ts'
import { changeIntents, type Intent, type MappingRoute, tableRoutes } from '../src/pipeline/changes.ts'
import { deadLetter } from '../src/pipeline/dead-letter.ts'
import { keyIdText, type RowKey, rowKey, storedKey, textKey } from '../src/pipeline/row-key.ts'
import { decodeChange } from '../src/postgres/change-event.ts'
import type { DeadLetter } from '../src/postgres/dlq.ts'
import { PgOutputDecoder } from '../src/postgres/pgoutput.ts'
import { planReads, readPage } from '../src/source/mod.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'

let db: TestDatabase

const mapping = (table: string, idColumns: string[], idType?: 'string', name = table): Mapping =>
  ({
    name,
    file: `${table}.toml`,
    schema: 'public',
    table,
    namespace: table,
    idColumns,
    idType,
  }) as unknown as Mapping

const mappings = {
  comp: mapping('comp', ['a', 'b']),
  ints: mapping('ints', ['id']),
  ints_as_text: mapping('ints', ['id'], 'string', 'ints_as_text'),
  texts: mapping('texts', ['id']),
  tstz: mapping('tstz', ['at']),
  nullable: mapping('nullable', ['a', 'b']),
}

/** Per table: what the stream made of each inserted row (intents and dead letters), in insert order. */
const streamed = new Map<string, { keys: RowKey[]; dead: DeadLetter[] }>()

beforeAll(async () => {
  db = await testDatabase('rowkey')
  await db.sql.unsafe(`
    CREATE TABLE comp (a text, b text, v int, PRIMARY KEY (a, b));
    CREATE TABLE ints (id int PRIMARY KEY, v int);
    CREATE TABLE texts (id text PRIMARY KEY, v int);
    CREATE TABLE tstz (at timestamptz PRIMARY KEY, v int);
    CREATE TABLE nullable (a int, b text, v int);
    CREATE PUBLICATION rowkey_pub FOR ALL TABLES;`)
  await db.sql`SELECT pg_create_logical_replication_slot('rowkey_slot', 'pgoutput')`
  // flushed at commit: the SQL decoding functions read only as far as the WAL is flushed (the test cluster does not
  // wait for flushes)
  await db.sql.unsafe(String.raw`
    SET synchronous_commit = on;
    INSERT INTO comp VALUES ('x:y', 'z\w', 1), ('x', 'y:z\w', 2), ('a\:b', ':', 3);
    INSERT INTO ints VALUES (5, 1);
    INSERT INTO texts VALUES ('5', 1);
    INSERT INTO tstz VALUES ('2024-01-02 03:04:05.123456+00', 1);
    INSERT INTO nullable VALUES (1, NULL, 1);`)
  const changes = await db.sql<{ data: Uint8Array }[]>`
    SELECT data FROM pg_logical_slot_get_binary_changes('rowkey_slot', NULL, NULL,
      'proto_version', '1', 'publication_names', 'rowkey_pub')`
  const decoder = new PgOutputDecoder()
  for (const { data } of changes) {
    const msg = decoder.decode(data)
    if (msg.tag !== 'insert') continue
    const rel = msg.relation
    const routes = Object.values(mappings).filter((m) => m.table === rel.name)
      .map((m) => ({ mapping: m, keyTypes: [] }) as unknown as MappingRoute)
    const table = tableRoutes(routes, rel.columns)
    for (const route of routes) {
      const only = tableRoutes([route], rel.columns)
      const seen = streamed.get(route.mapping.name) ?? { keys: [], dead: [] }
      streamed.set(route.mapping.name, seen)
      changeIntents(
        decodeChange(msg, table.needs),
        only,
        { commitLsn: 1n, version: '1' },
        (i: Intent) => seen.keys.push(i.key),
        (d) => seen.dead.push(d),
      )
    }
  }
})

afterAll(async () => {
  await db?.drop()
})

/** What backfill's page reader gives each row: its key from the decoded row and the page's key texts. */
async function paged(m: Mapping): Promise<RowKey[]> {
  const plan = await planReads(db.sql, m, undefined)
  const page = await readPage(db.sql, plan, undefined, 100)
  expect(page.bad).toEqual([])
  return page.rows.map((row, i) => rowKey(m, row, page.keys.map((k) => k[i])))
}

/** The same key rebuilt from its texts alone: a re-check's page keys, a dead letter's `key_texts`. */
async function fromTexts(m: Mapping, key: RowKey): Promise<RowKey> {
  const plan = await planReads(db.sql, m, undefined)
  return textKey(m, plan.columns, key.texts)
}

const sortByText = (keys: RowKey[]) => [...keys].sort((x, y) => String(x.id).localeCompare(String(y.id)))
const view = (k: RowKey) => ({ texts: k.texts, id: k.id, printed: k.printed })

describe('one row key, built where the row is decoded', () => {
  test("composite keys with ':' and '\\': stream and backfill build the same texts and id", async () => {
    const stream = streamed.get('comp')!.keys
    const backfill = await paged(mappings.comp)
    expect(sortByText(stream).map(view)).toEqual(sortByText(backfill).map(view))
    const byId = new Map(stream.map((k) => [k.id, k.texts]))
    // the parts escaped so that different keys never give the same id
    expect(byId.get(String.raw`x\:y:z\\w`)).toEqual(['x:y', String.raw`z\w`])
    expect(byId.get(String.raw`x:y\:z\\w`)).toEqual(['x', String.raw`y:z\w`])
    expect(byId.get(String.raw`a\\\:b:\:`)).toEqual([String.raw`a\:b`, ':'])
    for (const k of stream) expect(view(await fromTexts(mappings.comp, k))).toEqual(view(k))
  })

  test('an integer id is a number, a text id a string, an integer under id_type = "string" a string', async () => {
    for (const [name, id] of [['ints', 5], ['texts', '5'], ['ints_as_text', '5']] as const) {
      const m = mappings[name]
      const [stream] = streamed.get(name)!.keys
      const [backfill] = await paged(m)
      expect(view(stream)).toEqual({ texts: ['5'], id, printed: true })
      expect(view(backfill)).toEqual(view(stream))
      expect(view(await fromTexts(m, stream))).toEqual(view(stream))
    }
  })

  test('a timestamptz id keeps its microseconds, on both paths and from the texts', async () => {
    const [stream] = streamed.get('tstz')!.keys
    const [backfill] = await paged(mappings.tstz)
    expect(view(stream)).toEqual({
      texts: ['2024-01-02 03:04:05.123456+00'],
      id: '2024-01-02T03:04:05.123456Z',
      printed: true,
    })
    expect(view(backfill)).toEqual(view(stream))
    expect(view(await fromTexts(mappings.tstz, stream))).toEqual(view(stream))
  })

  test('a NULL part: no document id, the dead letter keeps the texts with the NULL and names no document', async () => {
    const { keys, dead } = streamed.get('nullable')!
    expect(keys).toEqual([])
    expect(dead).toHaveLength(1)
    expect(dead[0].docId).toBeUndefined()
    expect((dead[0].event as { key_texts?: unknown }).key_texts).toEqual(['1', null])
    const plan = await planReads(db.sql, mappings.nullable, undefined)
    expect(view(textKey(mappings.nullable, plan.columns, ['1', null]))).toEqual({
      texts: ['1', null],
      id: undefined,
      printed: true,
    })
  })

  test("a dead letter stores the key's texts, and reading them back gives the same key", async () => {
    for (const name of ['comp', 'ints', 'texts', 'tstz'] as const) {
      const m = mappings[name]
      const plan = await planReads(db.sql, m, undefined)
      for (const key of streamed.get(name)!.keys) {
        const d = deadLetter(m.name, 1n, key, { type: 'insert', new: key.values }, 'no')
        expect(d.docId).toBe(String(key.id))
        const back = storedKey(m, plan.columns, JSON.parse(JSON.stringify(d.event)))!
        expect(view(back)).toEqual(view(key))
      }
    }
  })

  test("entries older versions filed still give a key: backfill's `key` by name, the stream's decoded values", async () => {
    const plan = await planReads(db.sql, mappings.tstz, undefined)
    const [stream] = streamed.get('tstz')!.keys
    // backfill before it kept key_texts: {key: {column: text}}
    const old = storedKey(mappings.tstz, plan.columns, { key: { at: '2024-01-02 03:04:05.123456+00' } })!
    expect(view(old)).toEqual(view(stream))
    // an entry without key texts: its decoded values find the row, and it keeps no texts it did not get
    const ints = await planReads(db.sql, mappings.ints, undefined)
    const values = storedKey(mappings.ints, ints.columns, { type: 'insert', new: { id: 5, v: 1 } })!
    expect(view(values)).toEqual({ texts: ['5'], id: 5, printed: false })
    expect(deadLetter('ints', 1n, values, { type: 'insert' }, 'no').event).toEqual({ type: 'insert' })
    // a negative integer has no document id: the entry is filed under its texts, as every path files it
    expect(keyIdText({ texts: ['-1'], id: undefined })).toBe('-1')
    expect(keyIdText({ texts: ['a:b', 'c'], id: undefined })).toBe(String.raw`a\:b:c`)
  })
})
