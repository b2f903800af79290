// Reads a data dir written by puffgres before 0.x's single log (one folder per namespace under `namespaces/`, each
// with `snapshot.json` and `wal.jsonl`), so an existing `--data-dir` keeps its namespaces: src/local/persistence.ts
// folds them into its snapshot once and removes the folders.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseJson } from './json.ts'
import { readLines } from './json-lines.ts'
import type { DocId } from './ids.ts'
import { type Doc, Namespace, type NamespaceMeta } from './namespace.ts'

interface LegacyEntry {
  seq: number
  meta: NamespaceMeta
  put: Doc[]
  del: DocId[]
}

/** The namespaces of `<dataDir>/namespaces/`, or none when the folder does not exist. */
export function loadLegacyNamespaces(dataDir: string): Namespace[] {
  const root = join(dataDir, 'namespaces')
  if (!existsSync(root)) return []
  const out: Namespace[] = []
  for (const name of readdirSync(root)) {
    const ns = loadOne(join(root, name), name)
    if (ns) out.push(ns)
  }
  return out
}

function loadOne(dir: string, name: string): Namespace | undefined {
  const snapPath = join(dir, 'snapshot.json')
  const walPath = join(dir, 'wal.jsonl')
  let ns: Namespace | undefined
  let seq = 0
  if (existsSync(snapPath)) {
    let snap: { seq: number; meta: NamespaceMeta; docs: Doc[] }
    try {
      snap = parseJson(readFileSync(snapPath, 'utf8')) as typeof snap
    } catch (e) {
      throw new Error(`local turbopuffer data is corrupt: ${snapPath}: ${(e as Error).message}`)
    }
    ns = new Namespace(name, snap.meta)
    for (const d of snap.docs) ns.put(d)
    seq = snap.seq
  }
  readLines(walPath, (value) => {
    const entry = value as LegacyEntry
    if (entry.seq <= seq) return
    if (!ns) ns = new Namespace(name, entry.meta)
    ns.meta = entry.meta
    for (const id of entry.del) ns.delete(id)
    for (const d of entry.put) ns.put(d)
    seq = entry.seq
  })
  return ns
}
