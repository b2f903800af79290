// A mapping's namespaces (issue 24): TurbopufferSink.listNamespaces pages through `GET /v1/namespaces?prefix=`, and
// mappingNamespaces keeps the names the mapping's template renders (not a longer literal, not another mapping's);
// the write budget's per-namespace buckets do not grow with every tenant ever written.
import { describe, expect, test } from 'bun:test'
import { startLocalServer } from '../src/local/server.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import { listMappingNamespaces, mappingNamespaces } from '../src/turbopuffer/mapping-namespaces.ts'
import { DiscardSink } from '../src/turbopuffer/discard.ts'
import { WriteBudget } from '../src/turbopuffer/write-budget.ts'
import { parseNamespaceTemplate } from '../src/config/row-documents.ts'

describe('the namespaces of a mapping', () => {
  test('listed by prefix page by page, filtered by the template', async () => {
    const server = await startLocalServer()
    try {
      const sink = new TurbopufferSink({ api_key: 'k', base_url: server.url })
      const names = ['docs_1', 'docs_2', 'docs_3', 'docs_a.b', 'docsx_1', 'docs_', 'other_1', 'prod_docs_1']
      for (const n of names) {
        await sink.write(n, [{ kind: 'upsert', id: 1, attributes: {}, version: '0'.repeat(24) }])
      }
      const page = await sink.listNamespaces('docs_', { pageSize: 2 })
      expect(page).toEqual({ namespaces: ['docs_', 'docs_1'], nextCursor: 'docs_1' })
      const last = await sink.listNamespaces('docs_', { pageSize: 2, cursor: 'docs_2' })
      expect(last).toEqual({ namespaces: ['docs_3', 'docs_a.b'] })
      const m = { namespace: 'docs_{ws}', namespaceTemplate: parseNamespaceTemplate('docs_{ws}') }
      const seen: string[] = []
      for await (const n of mappingNamespaces(sink, m, { pageSize: 1 })) seen.push(n)
      // "docs_" renders from no value (a placeholder is at least one character); "docsx_1" is another literal
      expect(seen).toEqual(['docs_1', 'docs_2', 'docs_3', 'docs_a.b'])
      const prefixed = { namespace: 'prod_docs_{ws}', namespaceTemplate: parseNamespaceTemplate('prod_docs_{ws}') }
      expect(await listMappingNamespaces(sink, prefixed)).toEqual(['prod_docs_1'])
      // a fixed name is itself, asked of no one
      expect(await listMappingNamespaces(new DiscardSink(), { namespace: 'docs_9' })).toEqual(['docs_9'])
    } finally {
      await server.stop()
    }
  })
})

describe('per-namespace state stays bounded whatever the number of tenants', () => {
  test('the write budget drops the buckets of idle namespaces (a full one is the same as none)', () => {
    let now = 0
    const budget = new WriteBudget(1000, () => now)
    for (let i = 0; i < 10_000; i++) {
      expect(budget.reserve(`t_${i}`, 10)).toBe(0)
      now += 5 // each bucket refills its 10 bytes in 10 ms: all but the last few are idle by the next sweep
    }
    expect(budget.size).toBeLessThanOrEqual(1024)
    // a namespace still paying back its debt keeps its bucket, and its wait
    now += 10_000
    expect(budget.reserve('busy', 3000)).toBe(0)
    for (let i = 0; i < 2000; i++) budget.reserve(`u_${i}`, 1)
    expect(budget.reserve('busy', 1000)).toBeGreaterThan(0)
  })
})
