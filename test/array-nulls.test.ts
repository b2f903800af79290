// Arrays with NULL elements (README, "How PostgreSQL types map to turbopuffer"): turbopuffer arrays hold no nulls,
// so NULL elements are left out, on every path that writes a document: backfill, the stream, the stream's re-read of
// a row whose TOASTed column did not change; with no transform, with `columns`, and through a transform that hands
// the row's arrays on. Against the local server, which refuses `["a", null]` as turbopuffer does.
import { describe, expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const MAPPINGS = ['plain', 'cols', 'js']
const ns = (m: string) => `arrnull_${m}`

const pipe = usePipeline({
  name: 'arrnull',
  sql: `
    CREATE TABLE tags (id int PRIMARY KEY, ta text[], ia int[], big text);
    INSERT INTO tags VALUES (1, '{a,NULL,b}', '{1,NULL,3}', 'x'), (2, '{NULL}', '{NULL,NULL}', 'x'),
      (3, ARRAY['q', NULL, 'r'], ARRAY[NULL, 7], 'x');
  `,
  migrations: {
    '001_plain.toml': migration({ name: 'plain', table: 'tags', namespace: ns('plain') }),
    '002_cols.toml': migration({ name: 'cols', table: 'tags', namespace: ns('cols'), columns: ['ta', 'ia'] }),
    '003_js.toml': migration({ name: 'js', table: 'tags', namespace: ns('js'), transform: './transforms/pass.ts' }),
  },
  files: {
    'transforms/pass.ts': `export default function (event) {
  if (event.type === 'delete') return { type: 'delete', id: event.id }
  return { type: 'upsert', id: event.id, attributes: { ta: event.new.ta, ia: event.new.ia } }
}
`,
  },
})

const docs = (m: string) => pipe.docs(ns(m))
const { deadLetters } = pipe
type Arrays = { ta: unknown[]; ia: unknown[] }
const asMap = (o: Record<number, Arrays>) => new Map(Object.entries(o).map(([id, d]) => [Number(id), d]))
const BACKFILLED = { 1: { ta: ['a', 'b'], ia: [1, 3] }, 2: { ta: [], ia: [] }, 3: { ta: ['q', 'r'], ia: [7] } }
const STREAMED = {
  ...BACKFILLED,
  1: { ta: ['a', 'b', 'u'], ia: [1, 3] },
  3: { ta: ['q', 'r', 'u'], ia: [7] },
  11: { ta: ['s', 't'], ia: [5] },
}
const only = (d: Map<unknown, Record<string, unknown>>) =>
  new Map([...d].map(([id, doc]) => [id, { ta: doc.ta ?? [], ia: doc.ia ?? [] }]))

describe('NULL elements of arrays are left out', () => {
  test('backfill', async () => {
    for (const m of MAPPINGS) {
      const r = await pipe.cli('backfill', m)
      expect([m, r.code, r.err]).toEqual([m, 0, expect.any(String)])
    }
    expect(await deadLetters()).toEqual([])
    for (const m of MAPPINGS) expect([m, only(docs(m))]).toEqual([m, asMap(BACKFILLED)])
  })

  test('the stream: inserts, and updates re-read for an unchanged TOASTed column', async () => {
    await pipe.startStream()
    await pipe.db.sql`INSERT INTO tags VALUES (11, '{s,NULL,t}', '{NULL,5}', 'x')`
    // a TOASTed value left unchanged by the update arrives as "unchanged": the row is re-read by key
    await pipe.db.sql`UPDATE tags SET big = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 4000))
      WHERE id IN (1, 3)`
    await pipe.db.sql`UPDATE tags SET ta = array_append(ta, 'u'), ia = array_append(ia, NULL) WHERE id IN (1, 3)`
    await waitFor(
      'every mapping streamed the updates',
      () => MAPPINGS.every((m) => (docs(m).get(3)?.ta as string[] | undefined)?.includes('u')),
    )
    expect(await deadLetters()).toEqual([])
    for (const m of MAPPINGS) expect([m, only(docs(m))]).toEqual([m, asMap(STREAMED)])
  })
})
