// A mapping that writes vectors without `[target] distance_metric`: turbopuffer refuses vectors without a metric, so
// puffgres sends the documented default (cosine_distance) instead of dead-lettering every row. The writer with the
// column a real pgvector `vector(4)` has (pgoutput names its type `vector`, an OID past the builtins), and the
// stream and backfill end to end (the test cluster has no pgvector: a `real[]` column named `vector` is the document
// vector the same way).
import { describe, expect, test } from 'bun:test'
import { loadConfig } from '../src/config/load.ts'
import type { Intent } from '../src/pipeline/changes.ts'
import { rowKey } from '../src/pipeline/row-key.ts'
import { createTransformRunner } from '../src/pipeline/transform/mod.ts'
import { writeIntents } from '../src/pipeline/writer.ts'
import { decodeColumn } from '../src/postgres/values.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import type { Row } from '../src/types.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const quiet = { debug() {}, info() {}, warn() {}, error() {} }

const pipe = usePipeline({
  name: 'vector_metric',
  sql: `CREATE TABLE docs (id int PRIMARY KEY, title text, vector real[]);
    INSERT INTO docs VALUES (1, 'one', '{1,0,0,0}'), (2, 'two', '{0,1,0,0}');
    CREATE TABLE pg (id int PRIMARY KEY, title text)`,
  migrations: {
    '001_docs.toml': migration({ name: 'docs', table: 'docs', columns: ['id', 'title', 'vector'] }),
    '002_pg.toml': migration({ name: 'pg', table: 'pg', columns: ['id', 'title'] }),
  },
})

describe('vectors without [target] distance_metric', () => {
  test("the writer, with a pgvector vector(4) column's schema: written with cosine_distance, no dead letter", async () => {
    const mapping = { ...loadConfig(pipe.project.config).mappings.find((m) => m.name === 'pg')!, columns: undefined }
    const columns = [
      { name: 'id', typeOid: 23, typmod: -1 },
      { name: 'title', typeOid: 25, typmod: -1 },
      { name: 'vector', typeOid: 16_390, typeName: 'vector', typmod: 4 },
    ]
    const row: Row = {}
    decodeColumn(row, 'id', '7', 23)
    decodeColumn(row, 'title', 'seven', 25)
    decodeColumn(row, 'vector', '[0.5,0.25,0,1]', 16_390, 'vector')
    const runner = await createTransformRunner(undefined, { mapping: 'pg', log: quiet })
    const route = { mapping, runner, keyTypes: ['integer'], columns }
    const intent: Intent = {
      route,
      id: 7,
      key: rowKey(mapping, row, ['7']),
      kind: 'upsert',
      version: '0'.repeat(23) + '1',
      lsn: 1n,
      columns,
      event: {
        type: 'insert',
        op: 'insert',
        id: 7,
        schema: 'public',
        table: 'pg',
        new: row,
        lsn: '0/1',
        mapping: 'pg',
      },
    }
    const sink = new TurbopufferSink({ api_key: 'test-key', base_url: pipe.server.url })
    const summary = await writeIntents([intent], [], { sink, sql: pipe.db.sql, log: quiet })
    await runner.close()
    expect(summary).toMatchObject({ upserted: 1, deadLettered: 0 })
    expect(pipe.docs('pg').get(7)).toMatchObject({ title: 'seven', vector: [0.5, 0.25, 0, 1] })
    const meta = await pipe.namespace('pg').metadata()
    expect(JSON.stringify(meta)).toContain('cosine_distance')
  })

  test('migrate --dry-run and doctor show the metric the vectors get', async () => {
    const r = await pipe.cli('migrate', '--dry-run')
    expect(r.out).toContain(
      'vector (document vector): distance_metric cosine_distance (the default; set [target] distance_metric)',
    )
    const d = await pipe.cli('doctor')
    expect(d.out + d.err).toContain('distance metric docs')
    expect(d.out + d.err).toContain('vectors are written with cosine_distance (the default)')
    expect(d.out + d.err).not.toContain('distance metric pg')
  })

  test('backfill and the stream write every row', async () => {
    expect((await pipe.cli('backfill', 'docs')).code).toBe(0)
    expect(pipe.docs('docs').get(1)).toMatchObject({ title: 'one', vector: [1, 0, 0, 0] })
    await pipe.startStream()
    await pipe.db.sql`INSERT INTO docs VALUES (3, 'three', '{0,0,1,0}')`
    await waitFor('the streamed row', () => pipe.docs('docs').has(3))
    expect(pipe.docs('docs').get(3)).toMatchObject({ title: 'three', vector: [0, 0, 1, 0] })
    expect(await pipe.deadLetters()).toEqual([])
  })
})
