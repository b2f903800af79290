// All namespaces of one server, in memory, optionally backed by a data dir (src/local/persistence.ts: one log for
// all namespaces). A change is made durable first and only then applied in memory, and all of it runs
// synchronously, so concurrent requests never interleave.
import { notFound } from './errors.ts'
import { violation } from './rules.ts'
import type { DocId } from './ids.ts'
import { type Doc, Namespace, type NamespaceMeta } from './namespace.ts'
import { DataDir } from './persistence.ts'
import { NAMESPACE_NAME } from '../turbopuffer/types.ts'

export function checkNamespaceName(name: string): void {
  if (!NAMESPACE_NAME.test(name) || name === '.' || name === '..') {
    throw violation('namespace-name', `invalid namespace name '${name}': use 1 to 128 characters from [A-Za-z0-9-_.]`)
  }
}

export class Store {
  private readonly namespaces = new Map<string, Namespace>()
  private readonly data?: DataDir
  /** the names in order, rebuilt only after a namespace was created or deleted (listing pages through it) */
  private sortedNames?: string[]

  constructor(dataDir?: string, compactAfterBytes = 4 * 1024 * 1024) {
    if (!dataDir) return
    const opened = DataDir.open(dataDir, compactAfterBytes)
    this.data = opened.data
    this.namespaces = opened.namespaces
  }

  get(name: string): Namespace | undefined {
    return this.namespaces.get(name)
  }

  /** The namespace, or a 404 like turbopuffer's. */
  require(name: string): Namespace {
    const ns = this.namespaces.get(name)
    if (!ns) throw notFound(name)
    return ns
  }

  names(): string[] {
    this.sortedNames ??= [...this.namespaces.keys()].sort()
    return this.sortedNames
  }

  /** Persists, then applies, the outcome of one write (creating the namespace if needed). */
  commit(name: string, meta: NamespaceMeta, put: Doc[], del: DocId[]): Namespace {
    this.data?.append(name, meta, put, del)
    let ns = this.namespaces.get(name)
    if (!ns) {
      ns = new Namespace(name, meta)
      this.namespaces.set(name, ns)
      this.sortedNames = undefined
    }
    ns.meta = meta
    for (const id of del) ns.delete(id)
    for (const d of put) ns.put(d)
    if (this.data?.shouldCompact()) this.data.compact(this.namespaces.values())
    return ns
  }

  drop(name: string): void {
    if (!this.namespaces.has(name)) throw notFound(name)
    this.data?.drop(name)
    this.namespaces.delete(name)
    this.sortedNames = undefined
    if (this.data?.shouldCompact()) this.data.compact(this.namespaces.values())
  }

  close(): void {
    this.data?.close()
  }
}
