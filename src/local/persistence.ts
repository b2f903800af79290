// Durable storage of every namespace of a local server in one data dir: `log.jsonl` gets one JSON line per applied
// write (the resulting documents of one namespace, not the request, so replaying is trivial) or namespace deletion,
// fsynced before the request is acknowledged; `snapshot.jsonl` is the compacted state of all namespaces, replaced
// atomically (write a temp file, fsync, rename). One log for all namespaces: a write costs one append and one fsync
// however many namespaces exist, creating a namespace costs nothing more than writing to it, and the server holds
// one file open, not one per namespace (thousands of tenant namespaces, issue 24).
//
// snapshot.jsonl: a first line `{"seq":N}` (the last log entry it includes), then per namespace a line
// `{"ns":name,"meta":{…}}` followed by lines `{"ns":name,"docs":[…]}` of at most SNAPSHOT_DOCS_PER_LINE documents,
// so neither writing nor reading it builds one string of the whole store.
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs'
import { join } from 'node:path'
import { toJson } from './json.ts'
import type { DocId } from './ids.ts'
import { type Doc, Namespace, type NamespaceMeta } from './namespace.ts'
import { loadLegacyNamespaces } from './persistence-legacy.ts'
import { readLines } from './json-lines.ts'

type LogEntry =
  | { seq: number; ns: string; meta: NamespaceMeta; put: Doc[]; del: DocId[] }
  | { seq: number; ns: string; drop: true }

type SnapshotLine = { seq: number } | { ns: string; meta: NamespaceMeta } | { ns: string; docs: Doc[] }

const SNAPSHOT_DOCS_PER_LINE = 1000
const encoder = new TextEncoder()

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

function writeAll(fd: number, text: string): number {
  const bytes = encoder.encode(text)
  let written = 0
  while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written)
  return bytes.length
}

export class DataDir {
  private readonly logPath: string
  private readonly snapshotPath: string
  private fd: number
  private seq: number
  private logBytes: number
  /** bytes of the last snapshot, and the part of them that belongs to namespaces deleted since */
  private snapshotBytes: number
  private droppedBytes = 0
  /** each namespace's bytes in the last snapshot, to count a deleted namespace's share */
  private readonly bytesInSnapshot = new Map<string, number>()

  private constructor(readonly root: string, private readonly compactAfter: number, seq: number) {
    this.logPath = join(root, 'log.jsonl')
    this.snapshotPath = join(root, 'snapshot.jsonl')
    this.fd = openSync(this.logPath, 'a')
    this.seq = seq
    this.logBytes = statSync(this.logPath).size
    this.snapshotBytes = existsSync(this.snapshotPath) ? statSync(this.snapshotPath).size : 0
  }

  /** Reads a data dir back: the snapshot, then the log entries after it (and a data dir of the older layout). */
  static open(root: string, compactAfter: number): { data: DataDir; namespaces: Map<string, Namespace> } {
    mkdirSync(root, { recursive: true })
    const trash = join(root, 'trash')
    if (existsSync(trash)) rmSync(trash, { recursive: true, force: true })
    const namespaces = new Map<string, Namespace>()
    const bytesInSnapshot = new Map<string, number>()
    const snapshotPath = join(root, 'snapshot.jsonl')
    let seq = 0
    readLines(snapshotPath, (value, lineNo, chars) => {
      const line = value as SnapshotLine
      if ('seq' in line) {
        seq = line.seq
        return
      }
      bytesInSnapshot.set(line.ns, (bytesInSnapshot.get(line.ns) ?? 0) + chars)
      if ('meta' in line) namespaces.set(line.ns, new Namespace(line.ns, line.meta))
      else {
        const ns = namespaces.get(line.ns)
        if (!ns) throw new Error(`local turbopuffer data is corrupt: ${snapshotPath} line ${lineNo}: no namespace`)
        for (const d of line.docs) ns.put(d)
      }
    })
    const snapshotSeq = seq
    /** namespaces deleted (and not created again) since the snapshot: their share of it is waste */
    const dropped = new Set<string>()
    readLines(join(root, 'log.jsonl'), (value) => {
      const entry = value as LogEntry
      if (entry.seq <= snapshotSeq) return // already in the snapshot (a crash between snapshot and truncation)
      seq = entry.seq
      if ('drop' in entry) {
        namespaces.delete(entry.ns)
        dropped.add(entry.ns)
        return
      }
      dropped.delete(entry.ns)
      let ns = namespaces.get(entry.ns)
      if (!ns) namespaces.set(entry.ns, ns = new Namespace(entry.ns, entry.meta))
      ns.meta = entry.meta
      for (const id of entry.del) ns.delete(id)
      for (const d of entry.put) ns.put(d)
    })
    const data = new DataDir(root, compactAfter, seq)
    for (const [k, v] of bytesInSnapshot) {
      if (dropped.has(k)) data.droppedBytes += v
      else data.bytesInSnapshot.set(k, v)
    }
    try {
      if (existsSync(join(root, 'namespaces'))) {
        // the older layout (a folder per namespace): fold it into the snapshot once, then remove it
        for (const ns of loadLegacyNamespaces(root)) namespaces.set(ns.name, ns)
        data.compact(namespaces.values())
        data.remove(join(root, 'namespaces'))
      }
    } catch (e) {
      data.close()
      throw e
    }
    return { data, namespaces }
  }

  /** Appends one applied write and fsyncs it. */
  append(name: string, meta: NamespaceMeta, put: Doc[], del: DocId[]): void {
    this.write({ seq: this.seq + 1, ns: name, meta, put, del })
  }

  /** Records the deletion of a namespace; its documents leave the files at the next compaction. */
  drop(name: string): void {
    this.write({ seq: this.seq + 1, ns: name, drop: true })
    this.droppedBytes += this.bytesInSnapshot.get(name) ?? 0
    this.bytesInSnapshot.delete(name)
  }

  private write(entry: LogEntry): void {
    this.logBytes += writeAll(this.fd, toJson(entry) + '\n')
    fsyncSync(this.fd)
    this.seq = entry.seq
  }

  /**
   * Whether the log (plus what deleted namespaces left in the snapshot) is worth folding into a new snapshot:
   * amortised, it outgrew both the threshold and the live part of the snapshot.
   */
  shouldCompact(): boolean {
    const waste = this.logBytes + this.droppedBytes
    return waste > this.compactAfter && waste > this.snapshotBytes - this.droppedBytes
  }

  /** Writes every namespace into a new snapshot, then empties the log. */
  compact(namespaces: Iterable<Namespace>): void {
    const tmp = this.snapshotPath + '.tmp'
    const fd = openSync(tmp, 'w')
    let total = 0
    this.bytesInSnapshot.clear()
    try {
      total += writeAll(fd, toJson({ seq: this.seq }) + '\n')
      for (const ns of namespaces) {
        let bytes = writeAll(fd, toJson({ ns: ns.name, meta: ns.meta }) + '\n')
        let docs: Doc[] = []
        for (const d of ns.docs.values()) {
          docs.push(d)
          if (docs.length === SNAPSHOT_DOCS_PER_LINE) {
            bytes += writeAll(fd, toJson({ ns: ns.name, docs }) + '\n')
            docs = []
          }
        }
        if (docs.length > 0) bytes += writeAll(fd, toJson({ ns: ns.name, docs }) + '\n')
        this.bytesInSnapshot.set(ns.name, bytes)
        total += bytes
      }
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, this.snapshotPath)
    fsyncDir(this.root)
    ftruncateSync(this.fd, 0)
    fsyncSync(this.fd)
    this.logBytes = 0
    this.snapshotBytes = total
    this.droppedBytes = 0
  }

  /** Removes a folder: an atomic rename out of the way first, so a crash cannot leave half of it. */
  private remove(dir: string): void {
    if (!existsSync(dir)) return
    const trash = join(this.root, 'trash')
    mkdirSync(trash, { recursive: true })
    const target = join(trash, `${Date.now()}-${Math.random().toString(36).slice(2)}`)
    renameSync(dir, target)
    fsyncDir(this.root)
    rmSync(target, { recursive: true, force: true })
  }

  close(): void {
    closeSync(this.fd)
  }
}
