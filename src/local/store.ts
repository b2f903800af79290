// All namespaces of one server, in memory, optionally backed by a data dir. A change is made durable first and
// only then applied in memory, and all of it runs synchronously, so concurrent requests never interleave.
import { join } from 'node:path'
import { notFound } from './errors.ts'
import { violation } from './rules.ts'
import type { DocId } from './ids.ts'
import { type Doc, Namespace, type NamespaceMeta } from './namespace.ts'
import { listNamespaceDirs, NamespaceFiles, removeNamespaceDir } from './persistence.ts'
import { NAMESPACE_NAME } from '../turbopuffer/types.ts'

export function checkNamespaceName(name: string): void {
  if (!NAMESPACE_NAME.test(name) || name === '.' || name === '..') {
    throw violation('namespace-name', `invalid namespace name '${name}': use 1 to 128 characters from [A-Za-z0-9-_.]`)
  }
}

export class Store {
  private readonly namespaces = new Map<string, Namespace>()
  private readonly files = new Map<string, NamespaceFiles>()

  constructor(private readonly dataDir?: string, private readonly compactAfterBytes = 4 * 1024 * 1024) {
    if (!dataDir) return
    try {
      for (const name of listNamespaceDirs(dataDir)) {
        const loaded = NamespaceFiles.load(join(dataDir, 'namespaces', name), name, compactAfterBytes)
        if (!loaded) continue
        this.namespaces.set(name, loaded.ns)
        this.files.set(name, loaded.files)
      }
    } catch (e) {
      this.close()
      throw e
    }
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
    return [...this.namespaces.keys()].sort()
  }

  /** Persists, then applies, the outcome of one write (creating the namespace if needed). */
  commit(name: string, meta: NamespaceMeta, put: Doc[], del: DocId[]): Namespace {
    let ns = this.namespaces.get(name)
    if (this.dataDir) {
      let files = this.files.get(name)
      if (!files) {
        files = NamespaceFiles.create(join(this.dataDir, 'namespaces', name), this.compactAfterBytes)
        this.files.set(name, files)
      }
      files.append(meta, put, del)
    }
    if (!ns) {
      ns = new Namespace(name, meta)
      this.namespaces.set(name, ns)
    }
    ns.meta = meta
    for (const id of del) ns.delete(id)
    for (const d of put) ns.put(d)
    const files = this.files.get(name)
    if (files?.shouldCompact()) files.compact(ns)
    return ns
  }

  drop(name: string): void {
    if (!this.namespaces.has(name)) throw notFound(name)
    const files = this.files.get(name)
    if (files && this.dataDir) {
      files.close()
      this.files.delete(name)
      removeNamespaceDir(this.dataDir, name)
    }
    this.namespaces.delete(name)
  }

  close(): void {
    for (const f of this.files.values()) f.close()
    this.files.clear()
  }
}
