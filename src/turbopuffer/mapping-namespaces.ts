// The namespaces of a mapping (issue 24): its one name, or, for a `[target] namespace` template, every namespace the
// service lists under the template's literal prefix that the template can render (config refuses two mappings whose
// templates could meet, so the ones found are this mapping's own). TRUNCATE, verify and status read them here.
import type { Mapping } from '../config/load.ts'
import { literalPrefix, templatePattern } from '../config/row-documents.ts'
import type { Sink } from './types.ts'

/**
 * Every namespace of `m` that exists, page by page (`pageSize` names a request), in name order. A fixed name is
 * yielded as is, without asking the service (it may not exist yet). A template needs a sink that lists namespaces.
 */
export async function* mappingNamespaces(
  sink: Sink,
  m: Pick<Mapping, 'namespace' | 'namespaceTemplate'>,
  opts: { pageSize?: number } = {},
): AsyncGenerator<string> {
  const template = m.namespaceTemplate
  if (!template) {
    yield m.namespace
    return
  }
  if (!sink.listNamespaces) throw new Error(`namespace "${m.namespace}": this sink cannot list namespaces`)
  const prefix = literalPrefix(template)
  const pattern = templatePattern(template)
  let cursor: string | undefined
  do {
    const page = await sink.listNamespaces(prefix, { cursor, pageSize: opts.pageSize })
    for (const name of page.namespaces) if (pattern.test(name)) yield name
    cursor = page.nextCursor
  } while (cursor)
}

/** All of mappingNamespaces at once (for callers that need the list; the stream's TRUNCATE walks it instead). */
export async function listMappingNamespaces(
  sink: Sink,
  m: Pick<Mapping, 'namespace' | 'namespaceTemplate'>,
): Promise<string[]> {
  const out: string[] = []
  for await (const name of mappingNamespaces(sink, m)) out.push(name)
  return out
}
