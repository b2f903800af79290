// Durable storage of one namespace in `<dataDir>/namespaces/<name>/`: `wal.jsonl` gets one JSON line per applied
// write (the resulting documents, not the request, so replaying is trivial), fsynced before the write is
// acknowledged; `snapshot.json` is the compacted state, replaced atomically (write temp, fsync, rename).
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { join } from 'node:path'
import { Buffer } from 'node:buffer'
import { parseJson, toJson } from './json.ts'
import type { DocId } from './ids.ts'
import { type Doc, Namespace, type NamespaceMeta } from './namespace.ts'

interface WalEntry {
  seq: number
  meta: NamespaceMeta
  put: Doc[]
  del: DocId[]
}

interface Snapshot {
  seq: number
  meta: NamespaceMeta
  docs: Doc[]
}

function fsyncDir(dir: string) {
  let fd: number | undefined
  try {
    fd = openSync(dir, 'r')
    fsyncSync(fd)
  } catch {
    // some platforms cannot fsync a directory; the file fsyncs still hold
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

export class NamespaceFiles {
  private fd: number
  private seq: number
  private walBytes: number
  private snapshotBytes: number

  private constructor(readonly dir: string, seq: number, snapshotBytes: number, private compactAfter: number) {
    this.fd = openSync(join(dir, 'wal.jsonl'), 'a')
    this.seq = seq
    this.walBytes = statSync(join(dir, 'wal.jsonl')).size
    this.snapshotBytes = snapshotBytes
  }

  static create(dir: string, compactAfter: number): NamespaceFiles {
    mkdirSync(dir, { recursive: true })
    fsyncDir(join(dir, '..'))
    const files = new NamespaceFiles(dir, 0, 0, compactAfter)
    fsyncDir(dir)
    return files
  }

  /** Reads a namespace back: snapshot, then the log entries after it. Undefined for an empty leftover folder. */
  static load(dir: string, name: string, compactAfter: number): { ns: Namespace; files: NamespaceFiles } | undefined {
    const snapPath = join(dir, 'snapshot.json')
    const walPath = join(dir, 'wal.jsonl')
    let ns: Namespace | undefined
    let seq = 0
    let snapshotBytes = 0
    if (existsSync(snapPath)) {
      const text = readFileSync(snapPath, 'utf8')
      snapshotBytes = text.length
      let snap: Snapshot
      try {
        snap = parseJson(text) as Snapshot
      } catch (e) {
        throw new Error(`local turbopuffer data is corrupt: ${snapPath}: ${(e as Error).message}`)
      }
      ns = new Namespace(name, snap.meta)
      for (const d of snap.docs) ns.put(d)
      seq = snap.seq
    }
    if (existsSync(walPath)) {
      const text = readFileSync(walPath, 'utf8')
      let offset = 0
      let lineNo = 0
      while (offset < text.length) {
        const end = text.indexOf('\n', offset)
        lineNo++
        if (end === -1) {
          // A torn last line is a write that was never acknowledged: drop it so later appends stay parseable.
          const keep = Buffer.byteLength(text.slice(0, offset))
          const fd = openSync(walPath, 'r+')
          ftruncateSync(fd, keep)
          fsyncSync(fd)
          closeSync(fd)
          break
        }
        let entry: WalEntry
        try {
          entry = parseJson(text.slice(offset, end)) as WalEntry
        } catch (e) {
          throw new Error(`local turbopuffer data is corrupt: ${walPath} line ${lineNo}: ${(e as Error).message}`)
        }
        offset = end + 1
        if (entry.seq <= seq) continue // already in the snapshot (a crash between snapshot and truncation)
        if (!ns) ns = new Namespace(name, entry.meta)
        ns.meta = entry.meta
        for (const id of entry.del) ns.delete(id)
        for (const d of entry.put) ns.put(d)
        seq = entry.seq
      }
    }
    if (!ns) return undefined
    return { ns, files: new NamespaceFiles(dir, seq, snapshotBytes, compactAfter) }
  }

  /** Appends one applied write and fsyncs it. */
  append(meta: NamespaceMeta, put: Doc[], del: DocId[]): void {
    const entry: WalEntry = { seq: this.seq + 1, meta, put, del }
    const line = new TextEncoder().encode(toJson(entry) + '\n')
    let written = 0
    while (written < line.length) written += writeSync(this.fd, line, written, line.length - written)
    fsyncSync(this.fd)
    this.seq++
    this.walBytes += line.length
  }

  /** Whether the log is worth folding into a new snapshot (amortised: the log outgrew the snapshot). */
  shouldCompact(): boolean {
    return this.walBytes > this.compactAfter && this.walBytes > this.snapshotBytes
  }

  compact(ns: Namespace): void {
    const snap: Snapshot = { seq: this.seq, meta: ns.meta, docs: [...ns.docs.values()] }
    const text = toJson(snap)
    const tmp = join(this.dir, 'snapshot.json.tmp')
    writeFileSync(tmp, text)
    const fd = openSync(tmp, 'r+')
    fsyncSync(fd)
    closeSync(fd)
    renameSync(tmp, join(this.dir, 'snapshot.json'))
    fsyncDir(this.dir)
    ftruncateSync(this.fd, 0)
    fsyncSync(this.fd)
    this.walBytes = 0
    this.snapshotBytes = text.length
  }

  close(): void {
    closeSync(this.fd)
  }
}

/** Lists the namespace folders under a data dir, clearing the remains of interrupted namespace deletions. */
export function listNamespaceDirs(dataDir: string): string[] {
  const trash = join(dataDir, 'trash')
  if (existsSync(trash)) rmSync(trash, { recursive: true, force: true })
  const root = join(dataDir, 'namespaces')
  mkdirSync(root, { recursive: true })
  return readdirSync(root)
}

/** Removes a namespace's folder: an atomic rename out of the way first, so a crash cannot leave half of it. */
export function removeNamespaceDir(dataDir: string, name: string): void {
  const trash = join(dataDir, 'trash')
  mkdirSync(trash, { recursive: true })
  const target = join(trash, `${name}-${Date.now()}-${Math.random().toString(36).slice(2)}`)
  renameSync(join(dataDir, 'namespaces', name), target)
  fsyncDir(join(dataDir, 'namespaces'))
  rmSync(target, { recursive: true, force: true })
}
