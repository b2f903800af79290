// delete_by_filter / patch_by_filter on the local server, through the official SDK, as a row's documents use them
// (docs/ARCHITECTURE.md, invariant 11, "A row's documents"): one request deletes the row's documents older than the
// new version by filter and upserts the new ones, atomically; conditions do not guard the by-filter operations, so
// the version goes into the filter.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Turbopuffer from '@turbopuffer/turbopuffer'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'

let server: LocalServer
let tpuf: Turbopuffer
let n = 0
const fresh = () => `byfilter-${++n}`

beforeAll(async () => {
  server = await startLocalServer()
  tpuf = new Turbopuffer({ apiKey: 'k', baseURL: server.url, maxRetries: 0 })
})
afterAll(() => server.stop())

const ROW = '_puffgres_row'
const V = '_puffgres_version'
const SCHEMA = { [ROW]: 'string', [V]: 'string', text: { type: 'string', filterable: false } } as const
const version = (n: number) => n.toString(16).padStart(24, '0')
const GUARD = ['Or', [[V, 'Lt', { $ref_new: V }], [V, 'Eq', null]]]

// deno-lint-ignore no-explicit-any
type Body = any

/** The one request that replaces every document of `row` with `chunks` chunks at version `v`. */
function replaceRow(row: string, v: number, chunks: number, text = (i: number) => `${row} v${v} chunk ${i}`): Body {
  return {
    delete_by_filter: ['And', [[ROW, 'Eq', row], [V, 'Lt', version(v)]]],
    upsert_rows: Array.from(
      { length: chunks },
      (_, i) => ({ id: `${row}:${i}`, [ROW]: row, [V]: version(v), text: text(i) }),
    ),
    upsert_condition: GUARD,
    schema: SCHEMA,
  }
}

const ids = (name: string, row?: string) =>
  server.documents(name).filter((d) => row === undefined || d[ROW] === row).map((d) =>
    `${d.id}@${parseInt(String(d[V]), 16)}`
  )

describe("a row's documents replaced by one request", () => {
  test('a row that shrinks from 12 chunks to 3 keeps exactly 3; other rows are untouched', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write(replaceRow('a', 1, 12))
    await ns.write(replaceRow('b', 1, 2))
    const r = await ns.write(replaceRow('a', 2, 3))
    expect(r).toMatchObject({ rows_deleted: 12, rows_upserted: 3 })
    expect(ids(name, 'a')).toEqual(['a:0@2', 'a:1@2', 'a:2@2'])
    expect(ids(name, 'b')).toEqual(['b:0@1', 'b:1@1'])
  })

  test('a late (older) write cannot remove newer chunks: the version is inside the filter', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write(replaceRow('a', 5, 3))
    // version 4 lands after version 5 (a replay, a retried request): its delete_by_filter matches nothing newer,
    // its upserts of existing ids fail their condition
    const late = await ns.write(replaceRow('a', 4, 3))
    expect(late).toMatchObject({ rows_deleted: 0, rows_upserted: 0 })
    expect(ids(name)).toEqual(['a:0@5', 'a:1@5', 'a:2@5'])
    expect(server.documents(name).map((d) => d.text)).toEqual(['a v5 chunk 0', 'a v5 chunk 1', 'a v5 chunk 2'])
  })

  test('what ordering must prevent: a late write with more chunks creates the ids the newer one lacks; the re-check removes them', async () => {
    // An upsert applies to a missing document whatever its condition (invariant 2), so two writes of one row are
    // never in flight together; a writer racing the stream (backfill, dlq retry, verify --repair) re-checks and
    // removes what is older than the row's current version in one delete_by_filter.
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write(replaceRow('a', 5, 2))
    await ns.write(replaceRow('a', 4, 4))
    expect(ids(name)).toEqual(['a:0@5', 'a:1@5', 'a:2@4', 'a:3@4'])
    await ns.write({ delete_by_filter: ['And', [[ROW, 'Eq', 'a'], [V, 'Lt', version(5)]]] })
    expect(ids(name)).toEqual(['a:0@5', 'a:1@5'])
  })

  test('the request is atomic: a refused upsert leaves the old chunks in place', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write(replaceRow('a', 1, 3))
    const bad = replaceRow('a', 2, 2)
    ;(bad.upsert_rows[1] as Record<string, unknown>).title = 'x'.repeat(4097) // over the filterable limit
    const status = await ns.write(bad).then(() => 200, (e) => (e as { status: number }).status)
    expect(status).toBe(400)
    expect(ids(name)).toEqual(['a:0@1', 'a:1@1', 'a:2@1'])
  })

  test('an id both deleted by the filter and upserted in the request is written (delete_by_filter runs first)', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write(replaceRow('a', 1, 2))
    // the same ids again at a newer version: deleted by filter, then created by the upsert
    const r = await ns.write(replaceRow('a', 2, 2))
    expect(r).toMatchObject({ rows_deleted: 2, rows_upserted: 2 })
    expect(ids(name)).toEqual(['a:0@2', 'a:1@2'])
  })

  test('conditions do not guard delete_by_filter or patch_by_filter', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write(replaceRow('a', 3, 2))
    await ns.write(replaceRow('b', 3, 1))
    // a delete_condition that no document passes: the filter still deletes
    const del = await ns.write({ delete_by_filter: [ROW, 'Eq', 'a'], delete_condition: [V, 'Lt', version(0)] })
    expect(del.rows_deleted).toBe(2)
    const patch = await ns.write({
      patch_by_filter: { filters: [ROW, 'Eq', 'b'], patch: { [V]: version(1) } },
      patch_condition: [V, 'Lt', version(0)],
    })
    expect(patch.rows_patched).toBe(1)
    expect(ids(name)).toEqual(['b:0@1'])
  })

  test('patch_by_filter runs after delete_by_filter and before the per-id operations', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    await ns.write(replaceRow('a', 1, 3))
    const r = await ns.write({
      delete_by_filter: ['id', 'Eq', 'a:0'],
      patch_by_filter: { filters: [ROW, 'Eq', 'a'], patch: { tag: 'seen' } },
      // a patch by id of a document the filter deleted is ignored; the upsert of it creates it without the tag
      patch_rows: [{ id: 'a:0', tag: 'late' }],
      upsert_rows: [{ id: 'a:9', [ROW]: 'a', [V]: version(1) }],
    })
    expect(r).toMatchObject({ rows_deleted: 1, rows_patched: 2, rows_upserted: 1 })
    expect(server.documents(name).map((d) => [d.id, d.tag ?? null])).toEqual([
      ['a:1', 'seen'],
      ['a:2', 'seen'],
      ['a:9', null],
    ])
  })

  test('embeddings paid once: the filter spares the patched ids; a versioned patch keeps the vector, never creates', async () => {
    const name = fresh()
    const ns = tpuf.namespace(name)
    const doc = (i: number, v: number) => ({ id: `a:${i}`, [ROW]: 'a', [V]: version(v), text: `t${i}`, vector: [i, 1] })
    await ns.write({ upsert_rows: [0, 1, 2].map((i) => doc(i, 1)), distance_metric: 'cosine_distance', schema: SCHEMA })
    await ns.write({ deletes: ['a:2'] }) // gone behind the writer's back
    const patch = (i: number, v: number) => ({ id: `a:${i}`, [ROW]: 'a', [V]: version(v), text: null, tag: 'kept' })
    const r = await ns.write({
      delete_by_filter: ['And', [[ROW, 'Eq', 'a'], [V, 'Lt', version(2)], ['id', 'NotIn', ['a:0', 'a:2']]]],
      patch_rows: [patch(0, 2), patch(2, 2)],
      patch_condition: [V, 'Lt', { $ref_new: V }],
      return_affected_ids: true,
      schema: SCHEMA,
    })
    // a:1 deleted by the filter; a:0 patched over its older version, its vector and the cleared text as sent;
    // a:2 not there: not patched, not created, and not listed
    expect(r).toMatchObject({ rows_deleted: 1, rows_patched: 1, patched_ids: ['a:0'] })
    expect(server.documents(name)).toEqual([{ id: 'a:0', vector: [0, 1], [ROW]: 'a', [V]: version(2), tag: 'kept' }])
    // the same patch again (a replay, or an older write): the condition turns it down
    const again = await ns.write({ patch_rows: [patch(0, 2)], patch_condition: [V, 'Lt', { $ref_new: V }] })
    expect(again.rows_patched).toBe(0)
  })

  test('allow_partial: repeating while rows_remaining deletes everything, the limit per request', async () => {
    const limited = await startLocalServer({ byFilterLimits: { deleteRows: 4 } })
    const name = fresh()
    const ns = new Turbopuffer({ apiKey: 'k', baseURL: limited.url, maxRetries: 0 }).namespace(name)
    await ns.write(replaceRow('a', 1, 10))
    const rounds: number[] = []
    for (;;) {
      const r = await ns.write({ delete_by_filter: [ROW, 'Eq', 'a'], delete_by_filter_allow_partial: true })
      rounds.push(r.rows_deleted ?? -1)
      if (!r.rows_remaining) break
    }
    expect(rounds).toEqual([4, 4, 2])
    expect(limited.documents(name)).toEqual([])
    await limited.stop()
  })
})
