// The namespaces of a tenant mapping (`[target] namespace = "docs_{workspace_id}"`) for `puffgres status`: how
// many, the largest by document count, and (for `--json`) all of them. Listed page by page (1,000 names a request)
// and counted a page at a time, a few requests at once, so memory holds one page and the largest ones — unless every
// namespace is asked for.
import { forEachLimited } from '../concurrency.ts'
import type { Mapping } from '../config/load.ts'
import { mappingNamespaces } from '../turbopuffer/mapping-namespaces.ts'
import type { Sink } from '../turbopuffer/types.ts'

export interface NamespaceSize {
  namespace: string
  /** documents, as the service counts them (approximate on turbopuffer) */
  documents: number
}

export interface TenantNamespaces {
  /** namespaces of the mapping that exist */
  count: number
  /** the largest by documents, most first (at most `top`) */
  largest: NamespaceSize[]
  /** every namespace, in name order (only when asked for: status --json) */
  all?: NamespaceSize[]
  /** documents in all of them */
  documents: number
}

export interface TenantNamespacesOptions {
  /** list every namespace with its count */
  all?: boolean
  /** how many of the largest (default 5) */
  top?: number
  /** names per listing request (default 1000) */
  pageSize?: number
  /** count requests at once (default 16) */
  concurrency?: number
}

/** Counts the namespaces of tenant mapping `m` and finds the largest. */
export async function tenantNamespaces(
  sink: Sink,
  m: Pick<Mapping, 'namespace' | 'namespaceTemplate'>,
  opts: TenantNamespacesOptions = {},
): Promise<TenantNamespaces> {
  const top = opts.top ?? 5
  const pageSize = opts.pageSize ?? 1000
  const out: TenantNamespaces = { count: 0, largest: [], documents: 0, ...(opts.all ? { all: [] } : {}) }
  const count = sink.documentCount?.bind(sink)
  let page: string[] = []
  const flush = async () => {
    const sizes: NamespaceSize[] = page.map((namespace) => ({ namespace, documents: 0 }))
    page = []
    await forEachLimited(sizes, opts.concurrency ?? 16, async (s) => {
      s.documents = count ? await count(s.namespace) : 0
    })
    for (const s of sizes) {
      out.count++
      out.documents += s.documents
      out.all?.push(s)
      keepLargest(out.largest, s, top)
    }
  }
  for await (const name of mappingNamespaces(sink, m, { pageSize })) {
    page.push(name)
    if (page.length >= pageSize) await flush()
  }
  await flush()
  return out
}

/** Inserts `s` into `largest` (most documents first, then by name) if it is among the `top` largest. */
function keepLargest(largest: NamespaceSize[], s: NamespaceSize, top: number): void {
  if (top < 1) return
  let i = largest.length
  while (i > 0 && before(s, largest[i - 1])) i--
  if (i >= top) return
  largest.splice(i, 0, s)
  if (largest.length > top) largest.pop()
}

function before(a: NamespaceSize, b: NamespaceSize): boolean {
  return a.documents > b.documents || (a.documents === b.documents && a.namespace < b.namespace)
}
