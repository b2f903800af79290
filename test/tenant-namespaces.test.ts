// A mapping's namespaces (issue 24): TurbopufferSink.listNamespaces pages through `GET /v1/namespaces?prefix=`, and
// mappingNamespaces keeps the names the mapping's template renders (not a longer literal, not another mapping's).
import { describe, expect, test } from 'bun:test'
import { startLocalServer } from '../src/local/server.ts'
import { TurbopufferSink } from '../src/turbopuffer/sink.ts'
import { listMappingNamespaces, mappingNamespaces } from '../src/turbopuffer/mapping-namespaces.ts'
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
      expect(await listMappingNamespaces({}, { namespace: 'docs_9' })).toEqual(['docs_9'])
    } finally {
      await server.stop()
    }
  })
})
