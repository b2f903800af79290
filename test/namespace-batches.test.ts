// The pool of open namespace batches a tenant backfill writes through (src/backfill/namespace-batches.ts), and the
// namespace `verify --tenant` names (src/pipeline/tenant-values.ts).
import { describe, expect, test } from 'bun:test'
import { AdaptiveLimit } from '../src/concurrency.ts'
import { NamespaceBatches } from '../src/backfill/namespace-batches.ts'
import { parseNamespaceTemplate } from '../src/config/row-documents.ts'
import { tenantNamespace } from '../src/pipeline/tenant-values.ts'

describe('NamespaceBatches', () => {
  test('bounded by its open batches and rows, whatever the number of namespaces; every item written once', async () => {
    const writes: Array<[string, number[]]> = []
    let inFlight = 0
    let most = 0
    const pool = new NamespaceBatches<number>({
      batchSize: 10,
      maxOpen: 4,
      maxRows: 25,
      limit: new AdaptiveLimit({ initial: 3, max: 3 }),
      write: async (ns, items) => {
        most = Math.max(most, ++inFlight)
        await new Promise((r) => setTimeout(r, 1))
        writes.push([ns, items])
        inFlight--
      },
    })
    for (let i = 0; i < 1000; i++) await pool.add(`t${i % 97}`, i)
    await pool.drain()
    expect(pool.peaks.open).toBe(4)
    expect(pool.peaks.rows).toBeLessThanOrEqual(25)
    expect(most).toBeLessThanOrEqual(3)
    expect(pool.peaks.inFlight).toBe(most)
    const all = writes.flatMap(([ns, items]) => items.map((i) => [ns, i] as const))
    expect(all.length).toBe(1000)
    expect(new Set(all.map(([, i]) => i)).size).toBe(1000)
    for (const [ns, i] of all) expect(ns).toBe(`t${i % 97}`)
    expect(Math.max(...writes.map(([, items]) => items.length))).toBeLessThanOrEqual(10)
  })

  test('a full batch is written at its size; the largest open batch makes room', async () => {
    const writes: Array<[string, number]> = []
    const pool = new NamespaceBatches<number>({
      batchSize: 3,
      maxOpen: 2,
      maxRows: 100,
      limit: new AdaptiveLimit({ initial: 1, max: 1 }),
      write: async (ns, items) => void writes.push([ns, items.length]),
    })
    for (const ns of ['a', 'a', 'a', 'b', 'b', 'c', 'd']) await pool.add(ns, 0)
    // a: full at 3; d needs a place while b (2) and c (1) are open: b, the largest, goes
    expect(writes).toEqual([['a', 3], ['b', 2]])
    await pool.drain()
    expect(writes).toEqual([['a', 3], ['b', 2], ['c', 1], ['d', 1]])
  })

  test('a failed write fails the pool (add or drain), after the writes in flight settle', async () => {
    const pool = new NamespaceBatches<number>({
      batchSize: 1,
      maxOpen: 8,
      maxRows: 8,
      limit: new AdaptiveLimit({ initial: 2, max: 2 }),
      write: async (ns) => {
        if (ns === 'bad') throw new Error('refused')
      },
    })
    await pool.add('bad', 1)
    await new Promise((r) => setTimeout(r, 1))
    await expect(pool.add('good', 2)).rejects.toThrow('refused')
    await expect(pool.drain()).rejects.toThrow('refused')
  })
})

describe('tenant values', () => {
  const m = (text: string) => ({ name: 'm', namespace: text, namespaceTemplate: parseNamespaceTemplate(text) })

  test('--tenant: a value, or column=value pairs; errors name the flag', () => {
    expect(tenantNamespace(m('docs_{ws}'), '7')).toBe('docs_7')
    expect(tenantNamespace(m('docs_{ws}'), 'ws=7')).toBe('docs_7')
    expect(tenantNamespace(m('{region}_{org}'), 'org=7,region=eu')).toBe('eu_7')
    expect(() => tenantNamespace(m('{region}_{org}'), 'eu')).toThrow('--tenant: "eu" is not column=value')
    expect(() => tenantNamespace(m('{region}_{org}'), 'region=eu')).toThrow('needs a value for org')
    expect(() => tenantNamespace(m('{region}_{org}'), 'region=eu,zone=1')).toThrow('"zone=1" is not column=value')
    expect(() => tenantNamespace(m('docs_{ws}'), 'a b')).toThrow('--tenant: mapping m')
    expect(() => tenantNamespace({ name: 'p', namespace: 'p' }, '7')).toThrow('mapping p has one namespace (p)')
  })
})
