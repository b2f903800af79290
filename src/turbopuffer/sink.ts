// Writes versioned ops to turbopuffer through the official SDK: conditional writes, retries without a time limit
// (backpressure), and isolation of the rows turbopuffer refuses so that the caller can dead-letter exactly those.
import { withLinkedSignal } from '../abort.ts'
import { explainTurbopufferError } from './reach.ts'
import type { Filter, Namespace, NamespaceWriteResponse, Row, Turbopuffer } from '@turbopuffer/turbopuffer'
import { type Id, type Logger, VERSION_ATTR, type WriteOp } from '../types.ts'
import { documentsAtVersions, embedHashes, newerRowVersions, type RowQuery } from './row-queries.ts'
import { unappliedPatches } from './patches.ts'
import { createClient, type TurbopufferConfig, unmarkBigints } from './client.ts'
import {
  abortError,
  backoffDelay,
  type BackoffPolicy,
  classifyError,
  DEFAULT_BACKOFF,
  type Failure,
  type RetryInfo,
  sleep,
} from './retry.ts'
import type { NamespacePage, Sink, SinkStats, VersionedDocument, WriteOptions, WriteResult } from './types.ts'
import { checkName } from './types.ts'
import { forEachLimited, Slots } from '../concurrency.ts'
import { DEFAULT_NAMESPACE_BYTES_PER_SECOND, WriteBudget } from './write-budget.ts'
import { defaultWritesInFlight, postWrite, type WriteEndpoint, writeEndpoint } from './write-request.ts'
import { BIGINT_MARK } from './wire-ids.ts'
import {
  chunkBytes,
  chunkOps,
  collapseOps,
  countWritten,
  DEFAULT_LIMITS,
  type Limits,
  overRequestLimit,
  type PreparedOp,
  prepareOp,
  writeBody,
  writeBodyParts,
} from './write-plan.ts'

export type { TurbopufferConfig } from './client.ts'
export type { RetryInfo } from './retry.ts'
import { TurbopufferRequestError, type TurbopufferSinkOptions } from './sink-options.ts'
export { TurbopufferRequestError, type TurbopufferSinkOptions } from './sink-options.ts'

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} }

export class TurbopufferSink implements Sink {
  readonly #client: Turbopuffer
  readonly #namespaces = new Map<string, Namespace>()
  readonly #log: Logger
  #signal?: AbortSignal
  readonly #limits: Limits
  readonly #backoff: BackoffPolicy
  readonly #concurrency: number
  readonly #onRetry?: (info: RetryInfo) => void
  readonly #onRequest?: TurbopufferSinkOptions['onRequest']
  readonly #onPaced?: (namespace: string, ms: number) => void
  readonly #stats: SinkStats = { requests: 0, retries: 0, written: 0, skipped: 0, failed: 0 }
  readonly #budget: WriteBudget
  /** writes go out with fetch itself (write-request.ts), unless the caller gave a client of its own */
  readonly #endpoint?: WriteEndpoint
  readonly #writeSlots: Slots

  constructor(config: TurbopufferConfig, opts: TurbopufferSinkOptions = {}) {
    this.#client = opts.client ?? createClient(config, { timeoutMs: opts.timeoutMs, env: opts.env })
    this.#log = opts.log ?? silent
    this.#signal = opts.signal
    this.#limits = { ...DEFAULT_LIMITS, ...opts.limits }
    this.#backoff = { ...DEFAULT_BACKOFF, ...opts.backoff }
    this.#concurrency = Math.max(1, opts.concurrency ?? 2)
    const env = opts.env ?? process.env
    if (!opts.client) this.#endpoint = writeEndpoint(this.#client, env)
    const inFlight = opts.writesInFlight ?? defaultWritesInFlight(env, 'Bun' in globalThis, !!this.#endpoint?.pool)
    this.#writeSlots = new Slots(inFlight)
    // as many connections kept open as writes go at once
    if (this.#endpoint?.pool) this.#endpoint.pool.maxIdle = inFlight
    this.#onRetry = opts.onRetry
    this.#onRequest = opts.onRequest
    this.#onPaced = opts.onPaced
    this.#budget = new WriteBudget(opts.namespaceBytesPerSecond ?? DEFAULT_NAMESPACE_BYTES_PER_SECOND)
    for (const [k, v] of Object.entries(this.#limits)) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`turbopuffer sink: limits.${k} must be a positive integer`)
    }
  }

  /** namespace writes sent at once (write-request.ts defaultWritesInFlight, or the option) */
  get writesInFlight(): number {
    return this.#writeSlots.size
  }

  stats(): SinkStats {
    return { ...this.#stats }
  }

  useSignal(signal: AbortSignal): void {
    this.#signal = signal
  }

  async write(namespace: string, ops: WriteOp[], opts: WriteOptions = {}): Promise<WriteResult> {
    // the SDK's namespace object (a client of its own) only when writes go through the SDK
    const ns = this.#endpoint ? checkName(namespace) : this.#namespace(namespace)
    // a namespace per tenant: a batch is a write per namespace, thousands at once. Those past the slots wait here, as
    // ops: no request body is built (memory) and no request waits in the runtime's own queue with its timeout running
    const signal = opts.signal ?? this.#signal // the signal of the call, not of when a slot is free (useSignal)
    const release = await this.#writeSlots.take()
    try {
      return await this.#write(namespace, ns, ops, { ...opts, signal })
    } finally {
      release()
    }
  }

  async #write(namespace: string, ns: Namespace | string, ops: WriteOp[], opts: WriteOptions): Promise<WriteResult> {
    const result: WriteResult = { written: 0, skipped: 0, failed: [] }
    const prepared = []
    for (const op of collapseOps(ops)) {
      const p = prepareOp(op)
      const tooLarge = typeof p === 'string' ? p : overRequestLimit(p, this.#limits)
      if (tooLarge) result.failed.push({ op, error: tooLarge })
      else prepared.push(p as PreparedOp)
    }
    const chunks = chunkOps(prepared, this.#limits)
    try {
      await forEachLimited(chunks, this.#concurrency, async (chunk) => {
        await this.#writeChunk(namespace, ns, chunk, opts, result)
      })
    } finally {
      this.#stats.written += result.written
      this.#stats.skipped += result.skipped
      this.#stats.failed += result.failed.length
    }
    for (const f of result.failed) {
      // no status: refused here before sending (write-plan.ts), for what turbopuffer would refuse it
      const msg = f.status === undefined ? 'a document was not sent to turbopuffer' : 'turbopuffer refused a document'
      this.#log.warn(msg, { namespace, id: f.op.id, status: f.status, error: f.error })
    }
    return result
  }

  /**
   * Sends one chunk. A permanent refusal of a chunk of several ops is narrowed down by halving, so that the good
   * ops are written and only the refused ones come back in `failed`: O(bad · log n) extra requests.
   */
  async #writeChunk(
    namespace: string,
    ns: Namespace | string,
    chunk: ReturnType<typeof chunkOps>[number],
    opts: WriteOptions,
    result: WriteResult,
  ): Promise<void> {
    let res: NamespaceWriteResponse
    // paced per namespace (write-budget.ts); a split retry below is paced again, as it is sent again
    const wait = this.#budget.reserve(namespace, chunkBytes(chunk))
    if (wait > 0) {
      this.#stats.pacedMs = (this.#stats.pacedMs ?? 0) + wait
      this.#onPaced?.(namespace, wait)
      await sleep(wait, opts.signal)
    }
    try {
      // per request: the SDK's write() sets maxRetries: 6 itself, overriding the client's 0
      const endpoint = this.#endpoint
      let send: (signal?: AbortSignal) => Promise<NamespaceWriteResponse>
      if (endpoint) {
        const parts = writeBodyParts(chunk, opts)
        send = (signal) => postWrite(endpoint, namespace, parts, signal)
      } else {
        const body = writeBody(chunk, opts)
        send = (signal) => (ns as Namespace).write(body, { signal, maxRetries: 0 })
      }
      res = await this.#call(namespace, 'write', send, opts.signal)
    } catch (err) {
      if (!(err instanceof TurbopufferRequestError) || err.fatal) throw err
      if (chunk.length === 1 || opts.whole) {
        for (const p of chunk) result.failed.push({ op: p.op, error: err.message, status: err.status })
        return
      }
      this.#log.info('turbopuffer refused a request; splitting it to find the refused documents', {
        namespace,
        ops: chunk.length,
        status: err.status,
        error: err.message,
      })
      const mid = chunk.length >> 1
      await this.#writeChunk(namespace, ns, chunk.slice(0, mid), opts, result)
      await this.#writeChunk(namespace, ns, chunk.slice(mid), opts, result)
      return
    }
    const written = countWritten(res, chunk.length)
    result.written += written
    result.skipped += chunk.length - written
    const unpatched = unappliedPatches(chunk, res)
    if (unpatched.length) (result.unpatched ??= []).push(...unpatched)
  }

  /**
   * TRUNCATE: deletes every document older than `version`, keeping the ones written after the truncate. A namespace
   * that does not exist is already empty.
   */
  async deleteAllBefore(namespace: string, version: string): Promise<void> {
    const ns = this.#namespace(namespace)
    const filter: Filter = [VERSION_ATTR, 'Lt', version]
    // with allow_partial turbopuffer deletes what it can per request and says whether rows remain
    for (let round = 0;; round++) {
      let res: NamespaceWriteResponse
      try {
        res = await this.#call(
          namespace,
          'delete_by_filter',
          (signal) =>
            ns.write({ delete_by_filter: filter, delete_by_filter_allow_partial: true }, { signal, maxRetries: 0 }),
        )
      } catch (err) {
        if (err instanceof TurbopufferRequestError && err.status === 404) return
        throw err
      }
      this.#log.info('deleted documents older than a truncate', {
        namespace,
        version,
        deleted: res.rows_deleted ?? res.rows_affected,
        round,
      })
      if (!res.rows_remaining) return
    }
  }

  /**
   * Every document of `namespace` in id order, `pageSize` per query (ranked by id, continuing after the last id
   * seen). Yields nothing for a namespace that does not exist.
   */
  async *listDocuments(
    namespace: string,
    opts: { attributes?: string[] | true; pageSize?: number } = {},
  ): AsyncGenerator<Row> {
    const ns = this.#namespace(namespace)
    const pageSize = opts.pageSize ?? 1000
    if (!Number.isInteger(pageSize) || pageSize < 1) throw new Error('listDocuments: pageSize must be >= 1')
    let last: Id | undefined
    for (;;) {
      const after = last
      let rows: Row[]
      try {
        const res = await this.#call(namespace, 'query', (signal) =>
          ns.query({
            rank_by: ['id', 'asc'],
            limit: pageSize,
            include_attributes: opts.attributes ?? true,
            // a bigint id is marked and sent as a bare integer (client.ts)
            ...(after === undefined
              ? {}
              : { filters: ['id', 'Gt', typeof after === 'bigint' ? BIGINT_MARK + after : after] }),
          }, { signal }))
        rows = res.rows ?? []
      } catch (err) {
        if (err instanceof TurbopufferRequestError && err.status === 404) return
        throw err
      }
      for (const row of rows) yield unmarkBigints(row)
      if (rows.length < pageSize) return
      last = rows[rows.length - 1].id
    }
  }

  /** See Sink.newerRowVersions: 1,000 row keys a query, paged by id (row-queries.ts). */
  newerRowVersions(namespace: string, rowKeys: string[], version: string): Promise<Map<string, string>> {
    return newerRowVersions(this.#query(namespace), rowKeys, version)
  }

  /** See Sink.documentsAtVersions: 1,000 documents a query, paged by id (row-queries.ts). */
  documentsAtVersions(namespace: string, versions: string[], rowKeys: boolean): AsyncIterable<VersionedDocument[]> {
    return documentsAtVersions(this.#query(namespace), versions, rowKeys)
  }

  /** See Sink.embedHashes: up to 10,000 ids a query (row-queries.ts). */
  embedHashes(namespace: string, ids: Id[]): Promise<Map<string, string>> {
    return embedHashes(this.#query(namespace), ids)
  }

  /** One query of `namespace`, retried as every call is; undefined when the namespace does not exist. */
  #query(namespace: string): RowQuery {
    const ns = this.#namespace(namespace)
    return (query) =>
      this.#call(namespace, 'query', (signal) => ns.query(query, { signal })).then((r) => r.rows ?? [], (err) => {
        if (err instanceof TurbopufferRequestError && err.status === 404) return undefined
        throw err
      })
  }

  /** The namespace's attribute types (name → type), `{}` when it does not exist. */
  async attributeTypes(namespace: string): Promise<Record<string, string>> {
    const ns = this.#namespace(namespace)
    // a namespace that does not exist yet has no types: an answer, not a failed request (metrics, retries)
    const schema = await this.#call(namespace, 'query', async (signal) => {
      try {
        return await ns.schema({}, { signal, maxRetries: 0 })
      } catch (err) {
        if ((err as { status?: unknown }).status === 404) return {}
        throw err
      }
    })
    const out: Record<string, string> = {}
    for (const [name, cfg] of Object.entries(schema)) {
      if (name !== 'id' && name !== 'vector' && typeof cfg?.type === 'string') out[name] = cfg.type
    }
    return out
  }

  /** See Sink.listNamespaces: `GET /v1/namespaces?prefix=&cursor=&page_size=` (default page 1000, the most). */
  async listNamespaces(prefix: string, opts: { cursor?: string; pageSize?: number } = {}): Promise<NamespacePage> {
    const query = { prefix, page_size: opts.pageSize ?? 1000, ...(opts.cursor ? { cursor: opts.cursor } : {}) }
    const page = await this.#call(prefix, 'list_namespaces', (signal) => this.#client.namespaces(query, { signal }))
    const namespaces = (page.namespaces ?? []).map((n) => n.id)
    return page.next_cursor ? { namespaces, nextCursor: page.next_cursor } : { namespaces }
  }

  /** Deletes the namespace and all its documents; fine if it does not exist. */
  async deleteNamespace(namespace: string): Promise<void> {
    const ns = this.#namespace(namespace)
    try {
      await this.#call(namespace, 'delete_namespace', (signal) => ns.deleteAll({}, { signal }))
    } catch (err) {
      if (err instanceof TurbopufferRequestError && err.status === 404) return
      throw err
    }
  }

  /** See Sink.documentCount: the namespace's metadata (`approx_row_count`); 0 when it does not exist. */
  documentCount(namespace: string): Promise<number> {
    const ns = this.#namespace(namespace)
    return this.#call(namespace, 'query', (signal) => ns.metadata({}, { signal, maxRetries: 0 })).then(
      (meta) => meta.approx_row_count ?? 0,
      (err) => err instanceof TurbopufferRequestError && err.status === 404 ? 0 : Promise.reject(err),
    )
  }

  #namespace(name: string): Namespace {
    let ns = this.#namespaces.get(name)
    if (!ns) {
      ns = this.#client.namespace(checkName(name))
      // a namespace per tenant: keep the handles of the latest few thousand, not of every tenant ever written
      if (this.#namespaces.size >= 4096) this.#namespaces.delete(this.#namespaces.keys().next().value!)
      this.#namespaces.set(name, ns)
    }
    return ns
  }

  /**
   * One logical request: retried on transient failures for as long as it takes (the pipeline waits meanwhile), with
   * capped exponential backoff and full jitter, or the wait the server asks for. Replaying a write is harmless:
   * every write is conditional on versions.
   */
  async #call<T>(
    namespace: string,
    operation: RetryInfo['operation'],
    send: (signal?: AbortSignal) => Promise<T>,
    signal = this.#signal,
  ): Promise<T> {
    for (let attempt = 0;; attempt++) {
      if (signal?.aborted) throw abortError(signal)
      this.#stats.requests++
      const started = performance.now()
      let failure: Failure
      try {
        // a signal per request, unlinked when it settles: the SDK leaves a listener on the signal it is given, and
        // the shutdown signal lives as long as `run` (src/abort.ts, issue 21)
        const res = await withLinkedSignal(signal, send)
        this.#onRequest?.(performance.now() - started, true, operation)
        return res
      } catch (err) {
        this.#onRequest?.(performance.now() - started, false, operation)
        failure = classifyError(err, signal)
        // a connection failure names the URL and what to check (the retry warnings below say it)
        if (failure.kind === 'transient' && failure.status === undefined) {
          failure.message = explainTurbopufferError(err, this.#client.baseURL) ?? failure.message
        }
      }
      if (failure.kind === 'aborted') throw abortError(signal)
      if (failure.kind === 'fatal') {
        throw new TurbopufferRequestError(
          failure.status,
          `turbopuffer refused the request (check the API key): ${failure.message}`,
          true,
        )
      }
      if (failure.kind === 'permanent') throw new TurbopufferRequestError(failure.status, failure.message, false)
      const delayMs = Math.round(failure.retryAfterMs ?? backoffDelay(attempt, this.#backoff))
      const info: RetryInfo = {
        namespace,
        operation,
        attempt: attempt + 1,
        delayMs,
        status: failure.status,
        error: failure.message,
      }
      this.#stats.retries++
      this.#log.warn('turbopuffer request failed; retrying', { ...info })
      this.#onRetry?.(info)
      await sleep(delayMs, signal)
    }
  }
}
