// The contract between the pipeline and whatever stores its documents (turbopuffer, or nothing for benchmarks).
import type { DistanceMetric, Id, WriteOp } from '../types.ts'

/** What turbopuffer accepts as a namespace name (the sink and the local server check it). */
export const NAMESPACE_NAME = /^[A-Za-z0-9_.-]{1,128}$/

/** The name, if turbopuffer takes it as a namespace's. */
export function checkName(name: string): string {
  if (!NAMESPACE_NAME.test(name)) {
    throw new Error(`turbopuffer namespace "${name}": names are 1-128 of A-Z a-z 0-9 - _ .`)
  }
  return name
}

export interface WriteOptions {
  /** the caller's attribute schema; the sink adds `VERSION_ATTR: 'string'` */
  schema?: Record<string, unknown>
  /** sent with the request (turbopuffer needs it once a namespace holds vectors) */
  distanceMetric?: DistanceMetric
  /**
   * a refused request is not split to find the documents refused: all its ops come back failed (the caller writes
   * them again once it knows why: a tenant namespace whose attribute types it assumed, pipeline/namespace-types.ts)
   */
  whole?: boolean
  /** gives up (rejects) when it aborts; default: the sink's signal when the call is made (useSignal) */
  signal?: AbortSignal
}

export interface FailedOp {
  op: WriteOp
  /** one line: what turbopuffer (or the local check) said about this op */
  error: string
  /** the HTTP status turbopuffer answered, when the failure came from the service */
  status?: number
}

export interface WriteResult {
  /** ops that changed the namespace (an upsert applied, a document deleted) */
  written: number
  /** ops the version condition turned down (an older version), and deletes of documents that do not exist */
  skipped: number
  /** ops refused permanently; the caller puts them in the dead-letter queue */
  failed: FailedOp[]
  /**
   * embeddings paid once: documents sent as patches (`stored`) that did not apply, by op (the document went away
   * since its hash was read, or a newer version is there); the caller writes them again with their vectors
   */
  unpatched?: Array<{ op: WriteOp; ids: Id[] }>
}

export interface SinkStats {
  /** HTTP requests sent, retries included */
  requests: number
  retries: number
  written: number
  skipped: number
  failed: number
  /** ms writes waited for their namespace's byte budget (write-budget.ts), summed over writes */
  pacedMs?: number
}

export interface Sink {
  /**
   * Writes `ops` to `namespace`, each conditional on its version. Resolves once every op is durably written,
   * skipped or failed permanently; waits (retrying) for as long as turbopuffer is unavailable. Rejects only when
   * aborted, or when retrying cannot help (e.g. the API key is refused).
   */
  write(namespace: string, ops: WriteOp[], opts?: WriteOptions): Promise<WriteResult>
  /**
   * Calls started from now on give up (reject) when `signal` aborts, in place of the signal the sink was made with
   * (the stream engine: the writes of one replication connection, abandoned when PostgreSQL ends it). Optional.
   */
  useSignal?(signal: AbortSignal): void
  /** Deletes every document whose version is older than `version` (TRUNCATE); later writes are kept. */
  deleteAllBefore(namespace: string, version: string): Promise<void>
  stats(): SinkStats
  /** The namespace's attribute types (name → type; empty when it does not exist). Optional: without it no type
   * conflict with the namespace is detected before writing. */
  attributeTypes?(namespace: string): Promise<Record<string, string>>
  /**
   * Row-documents mode: of the rows `rowKeys`, those with a document newer than `version`, each with the highest
   * version it has (`ROW_ATTR` → version). For the writers that race the stream (backfill's re-check); a sink without
   * it cannot write chunked mappings from backfill.
   */
  newerRowVersions?(namespace: string, rowKeys: string[], version: string): Promise<Map<string, string>>
  /**
   * The documents whose version is one of `versions` (backfill pages' versions), a query page (1,000, by id) at a
   * time: each one's id, its version and, with `rowKeys` (row-documents mode), its row key (`ROW_ATTR`). Nothing for a
   * namespace that does not exist. For the re-check of pages an interrupted backfill left, to find where their
   * documents are (backfill/tenant-pages.ts); without it that re-check cannot tell where a row that moved was copied.
   */
  documentsAtVersions?(namespace: string, versions: string[], rowKeys: boolean): AsyncIterable<VersionedDocument[]>
  /**
   * Embeddings paid once: the `EMBED_HASH_ATTR` of those of the documents `ids` that exist and have one, by `idKey`
   * (empty for a namespace that does not exist). A sink without it makes every embedding a provider call.
   */
  embedHashes?(namespace: string, ids: Id[]): Promise<Map<string, string>>
  /**
   * One page of the namespaces whose names begin with `prefix`, in name order; `nextCursor` (absent on the last page)
   * asks for the next. For a mapping's tenant namespaces use mapping-namespaces.ts, which filters by the template.
   */
  listNamespaces?(prefix: string, opts?: { cursor?: string; pageSize?: number }): Promise<NamespacePage>
  /** The namespace's document count as the service reports it (approximate), 0 when it does not exist (status). */
  documentCount?(namespace: string): Promise<number>
}

/** A document found by `Sink.documentsAtVersions`. */
export interface VersionedDocument {
  id: Id
  version: string
  /** its row key (`ROW_ATTR`), when asked for */
  row?: string
}

export interface NamespacePage {
  namespaces: string[]
  nextCursor?: string
}
