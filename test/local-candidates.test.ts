// The local server's equality lookups (src/local/candidates.ts, the index kept by src/local/namespace.ts) never change
// what a filter matches: a differential test against a full scan over random documents, changes and filters, and the
// same through the SDK (queries, delete_by_filter, patch_by_filter) as a row's chunks change rows.
import { describe, expect, test } from 'bun:test'
import Turbopuffer from '@turbopuffer/turbopuffer'
import { candidateKeys } from '../src/local/candidates.ts'
import { compileFilter } from '../src/local/filter.ts'
import { type Doc, Namespace, newMeta } from '../src/local/namespace.ts'
import { startLocalServer } from '../src/local/server.ts'

function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('equality lookups', () => {
  test('match exactly what a full scan matches, through random changes', () => {
    const rand = rng(24)
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]
    const ns = new Namespace('n', { ...newMeta(), idType: 'string' })
    ns.meta.schema = {
      row: { type: 'string' },
      tag: { type: 'string' },
      n: { type: 'int' },
      tags: { type: '[]string' },
    }
    const rows = ['a', 'b', 'c', 'd', 'A', '', 'é']
    const randomDoc = (): Doc => {
      const d: Doc = { id: `d${Math.floor(rand() * 60)}` }
      if (rand() < 0.85) d.row = pick(rows)
      if (rand() < 0.5) d.tag = pick(rows)
      if (rand() < 0.5) d.n = Math.floor(rand() * 4)
      if (rand() < 0.3) d.tags = [pick(rows), pick(rows)]
      return d
    }
    const leaf = (): unknown => {
      switch (Math.floor(rand() * 7)) {
        case 0:
          return ['row', 'Eq', pick(rows)]
        case 1:
          return ['row', 'In', [pick(rows), pick(rows)]]
        case 2:
          return ['id', 'Eq', `d${Math.floor(rand() * 60)}`]
        case 3:
          return ['id', 'In', [`d${Math.floor(rand() * 60)}`, `d${Math.floor(rand() * 60)}`, 'missing']]
        case 4:
          return ['n', 'Eq', Math.floor(rand() * 4)]
        case 5:
          return ['tags', 'Contains', pick(rows)]
        default:
          return ['row', 'Eq', null]
      }
    }
    const filter = (depth: number): unknown => {
      if (depth > 1 || rand() < 0.5) return leaf()
      const parts = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => filter(depth + 1))
      return rand() < 0.2 ? ['Not', parts[0]] : [pick(['And', 'Or']), parts]
    }
    let narrowed = 0
    for (let step = 0; step < 4000; step++) {
      const r = rand()
      if (r < 0.5) ns.put(randomDoc())
      else if (r < 0.65) ns.delete(`d${Math.floor(rand() * 60)}`)
      else {
        const f = filter(0)
        const pred = compileFilter(f, ns.meta.schema, ns.meta.idType)
        const scan = [...ns.docs.keys()].filter((k) => pred(ns.docs.get(k)!, null)).sort()
        const keys = candidateKeys(f, ns, ns.meta.schema)
        if (keys) narrowed++
        const viaKeys = keys ? [...keys].filter((k) => ns.docs.has(k) && pred(ns.docs.get(k)!, null)).sort() : scan
        expect({ f, keys: viaKeys }).toEqual({ f, keys: scan })
      }
    }
    // the lookups were used, not skipped
    expect(narrowed).toBeGreaterThan(300)
  })

  test("a row's chunks through the SDK: queries and writes by filter follow changed, moved and deleted chunks", async () => {
    const server = await startLocalServer()
    try {
      const ns = new Turbopuffer({ apiKey: 'k', baseURL: server.url, maxRetries: 0 }).namespace('chunks')
      const ids = async (row: string) =>
        ((await ns.query({ rank_by: ['id', 'asc'], top_k: 100, filters: ['_puffgres_row', 'Eq', row] })).rows ?? [])
          .map((r) => r.id)
      await ns.write({
        upsert_rows: [
          { id: 'a#0', _puffgres_row: 'a' },
          { id: 'a#1', _puffgres_row: 'a' },
          { id: 'b#0', _puffgres_row: 'b' },
        ],
      })
      expect(await ids('a')).toEqual(['a#0', 'a#1'])
      // a document changes rows; one is deleted by id; then by filter
      await ns.write({ upsert_rows: [{ id: 'a#1', _puffgres_row: 'b' }], deletes: ['b#0'] })
      expect([await ids('a'), await ids('b')]).toEqual([['a#0'], ['a#1']])
      await ns.write({ patch_by_filter: { filters: ['_puffgres_row', 'Eq', 'b'], patch: { _puffgres_row: 'c' } } })
      expect([await ids('b'), await ids('c')]).toEqual([[], ['a#1']])
      const r = await ns.write({
        delete_by_filter: ['Or', [['_puffgres_row', 'Eq', 'a'], ['_puffgres_row', 'Eq', 'c']]],
      })
      expect(r.rows_deleted).toBe(2)
      expect(server.documents('chunks')).toEqual([])
    } finally {
      await server.stop()
    }
  })
})
