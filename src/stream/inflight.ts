// Several batches in flight at once, with group commit, per-document order and a commit-ordered confirmation
// (docs/ARCHITECTURE.md, invariants 1, 4, 6):
// - group commit: when a slot is free, whatever is pending at a commit is written at once; what arrives while
//   writes are in flight goes into the next one, so batches grow with the backlog (up to maxBatch);
// - per-document order: a document whose earlier change is in flight is held back for a later batch (a delete leaves
//   no tombstone, so an older upsert landing after a newer delete would bring the document back); the key is the
//   mapping's and the row's, so with a namespace per tenant the order holds across namespaces (a move's delete in the
//   old namespace and write in the new one land before the row's next change is sent);
// - confirmation: commits are kept in order with a count of their changes not yet landed (CommitLedger, the
//   checkpoint's, checkpoint.ts); the LSN confirmed is the end of the last commit of the longest landed prefix.
import { setImmediate } from 'node:timers'
import { type AdaptiveLimit, Landings } from '../concurrency.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import type { Intent } from '../pipeline/changes.ts'
import { carryLeaves } from '../pipeline/intent-namespace.ts'
import { CommitLedger, type LedgerTxn as Txn } from './checkpoint.ts'

interface Entry {
  key: string
  intent: Intent
  txn: Txn
  /**
   * commits of earlier changes this one replaced and whose namespaces it carries (a tenant move, carryLeaves): they
   * are confirmed only when this write lands
   */
  held?: Txn[]
  /** the change's size as decoded (an estimate of what it costs in memory) */
  bytes: number
  /** of a mapping with a namespace per tenant (`spread`) */
  spread?: true
}

export interface Batch {
  intents: Intent[]
  dead: DeadLetter[]
}

export interface WritePipelineOptions<R> {
  /** outside a commit, a batch is cut once this many documents are pending */
  batchSize: number
  /** the most documents in one batch */
  maxBatch: number
  /** the most bytes (as estimated by `add`'s callers) in one batch */
  maxBatchBytes: number
  /** backpressure: `admit` waits while this many documents are pending or in flight */
  maxOutstanding: number
  /** backpressure: `admit` waits while this many bytes are pending or in flight */
  maxOutstandingBytes: number
  /** the longest a change waits before it is written, even inside a transaction */
  pollIntervalMs: number
  /**
   * while other writes are in flight, a small batch waits this long for more changes to join it (with nothing in
   * flight it goes at once): a fast service is not sent one write per commit, a slow one costs this much at most
   */
  coalesceMs?: number
  /**
   * a namespace per tenant: a batch of such changes (`add`'s `spread`) is spread over many namespaces, one request
   * each, so a request carries about batch rows / namespaces, and a request costs far more than a row. When most of
   * what is pending is such changes, a batch may hold `rows` and `bytes` (not maxBatch / maxBatchBytes), and while the
   * stream is `behind` and a backlog is pending (batchSize or more), it waits up to `waitMs` (from the previous cut)
   * to grow: fewer, fuller requests. Once the stream has caught up it is cut at once. A trickle of changes (below
   * batchSize) is written as without it. Without `behind`, a batch waits only while other batches are in flight.
   */
  spread?: { rows: number; bytes: number; waitMs: number; behind?: () => boolean }
  /** how many batches may be in flight */
  limit: AdaptiveLimit
  /** writes a batch; resolves once it is durable (written or dead-lettered) */
  write(batch: Batch): Promise<R>
  /** called with the end LSN of the last commit whose changes have all landed (never decreasing) */
  confirm(lsn: bigint): void
  /** after a batch landed and the confirmation moved */
  landed?(result: R, batch: Batch): void
  /** the first failed write (nothing after it is confirmed) */
  failed?(error: Error): void
}

export class WritePipeline<R = unknown> {
  #pending = new Map<string, Entry>()
  #dead: { dead: DeadLetter; txn: Txn }[] = []
  /** keys of documents in flight */
  readonly #busy = new Set<string>()
  readonly #ledger = new CommitLedger()
  #inflight = 0
  #inflightDocs = 0
  /** of the documents in flight, those added with `spread` */
  #inflightSpread = 0
  #pendingBytes = 0
  #inflightBytes = 0
  /** when the oldest change not yet cut into a batch arrived */
  #pendingSince = 0
  readonly #landings = new Landings()
  #failure: Error | undefined
  #coalesceTimer: ReturnType<typeof setTimeout> | undefined
  /** a batch is held to grow while the reader is behind (spread): cut by the next tick once it has caught up */
  #spreading = false
  /** pending entries added with `spread` (a namespace per tenant) */
  #pendingSpread = 0
  #pumpSoon = false

  constructor(private readonly opts: WritePipelineOptions<R>) {}

  get failure(): Error | undefined {
    return this.#failure
  }

  /** nothing pending or in flight and no transaction open */
  get idle(): boolean {
    return !this.#ledger.open && !this.#pending.size && !this.#dead.length && !this.#inflight
  }

  /** batches in flight now */
  get inflight(): number {
    return this.#inflight
  }

  begin(): void {
    this.#ledger.begin()
  }

  /**
   * A document's wanted state; replaces a pending change of the same key (the later one wins). `spread`: its mapping
   * has a namespace per tenant (the `spread` option).
   */
  add(key: string, intent: Intent, bytes: number, spread = false): void {
    const old = this.#pending.get(key)
    let held: Txn[] | undefined
    if (old) {
      // a tenant move in the change replaced must still take the row out of its old namespace; until that lands, its
      // commit stays unconfirmed (a restart replaying only the later change would not leave that namespace)
      if (carryLeaves(old.intent, intent)) {
        // the replaced entry's list, grown: a copy at each change of a hot row was quadratic in its changes
        held = old.held ?? []
        held.push(old.txn)
      } else {
        this.#ledger.done(old.txn)
        for (const t of old.held ?? []) this.#ledger.done(t)
      }
      this.#pending.delete(key) // re-insert: the map's order stays the order of last change
      this.#pendingBytes -= old.bytes
      if (old.spread) this.#pendingSpread--
    } else if (!this.#pending.size && !this.#dead.length) this.#pendingSince = Date.now()
    const txn = this.#ledger.add()
    this.#pendingBytes += bytes
    const entry: Entry = held ? { key, intent, txn, bytes, held } : { key, intent, txn, bytes }
    if (spread) {
      entry.spread = true
      this.#pendingSpread++
    }
    this.#pending.set(key, entry)
  }

  addDead(dead: DeadLetter): void {
    if (!this.#pending.size && !this.#dead.length) this.#pendingSince = Date.now()
    this.#dead.push({ dead, txn: this.#ledger.add() })
  }

  /** The open transaction committed: confirm it if everything up to it landed, and write what is pending. */
  commit(endLsn: bigint): void {
    this.#ledger.commit(endLsn)
    this.#advance()
    // after the messages already received (a backlog arrives many commits per read): one write for all of them
    if (!this.#pumpSoon) {
      this.#pumpSoon = true
      setImmediate(() => {
        this.#pumpSoon = false
        this.#pump(false)
      })
    }
  }

  /**
   * Backpressure: writes what is due and resolves once there is room for more changes; undefined (no promise, the
   * common case, called once per change) when there is nothing to write or wait for.
   */
  admit(): Promise<void> | undefined {
    if (this.#failure) return Promise.reject(this.#failure)
    // inside a transaction below the batch size nothing is due (the timer sees to the poll interval)
    if (
      this.#ledger.open && this.#pending.size + this.#dead.length < this.opts.batchSize &&
      this.#pendingBytes < this.opts.maxBatchBytes && !this.#full()
    ) return undefined
    return this.#admit()
  }

  async #admit(): Promise<void> {
    this.#pump(false)
    while (!this.#failure && this.#full()) {
      // at the bound, what is pending goes at once, except mostly tenant changes behind writes in flight: cut now,
      // they would be a sliver of rows over every tenant namespace, a request for every row or two; they wait for a
      // landing and go by the batch policy (or the poll interval's bound: tick)
      const tenants = this.#pending.size > 0 && this.#spreadOf(this.#pendingSpread, this.#pending.size)
      if (!this.#inflight || !tenants) this.#pump(true)
      if (!this.#inflight) break // cannot happen with a limit >= 1; never wait for nothing
      await this.#landings.next()
    }
    if (this.#failure) throw this.#failure
  }

  /** The poll interval's bound: writes pending changes that waited long enough, even inside a transaction. */
  tick(): void {
    if ((this.#pending.size || this.#dead.length) && Date.now() - this.#pendingSince >= this.opts.pollIntervalMs) {
      this.#pump(true)
    } else if (this.#spreading) this.#pump(false)
  }

  /** Writes everything pending and waits until all of it, and everything in flight, has landed. */
  async flushAll(): Promise<void> {
    for (;;) {
      if (this.#failure) throw this.#failure
      this.#pump(true)
      if (!this.#inflight) {
        if (!this.#pending.size && !this.#dead.length) return
        throw new Error('write pipeline: changes pending but nothing can be written (limit below 1?)')
      }
      await this.#landings.next()
    }
  }

  /** Waits for the writes in flight only (after a failure, so that nothing is written behind the stream's back). */
  async settle(): Promise<void> {
    while (this.#inflight) await this.#landings.next()
  }

  #full(): boolean {
    // mostly changes of tenant mappings: two of their batches may be outstanding, else two of the others'
    const spread = this.#spreadOf(this.#pendingSpread + this.#inflightSpread, this.#pending.size + this.#inflightDocs)
    const docs = spread ? Math.max(this.opts.maxOutstanding, 2 * spread.rows) : this.opts.maxOutstanding
    const bytes = spread ? Math.max(this.opts.maxOutstandingBytes, 2 * spread.bytes) : this.opts.maxOutstandingBytes
    return this.#pending.size + this.#dead.length + this.#inflightDocs >= docs ||
      this.#pendingBytes + this.#inflightBytes >= bytes
  }

  /** The `spread` option when at least half of `of` documents (`tenant` of them of tenant mappings) are such. */
  #spreadOf(tenant: number, of: number): WritePipelineOptions<R>['spread'] {
    return tenant * 2 >= of ? this.opts.spread : undefined
  }

  #advance(): void {
    const lsn = this.#ledger.advance()
    if (lsn !== undefined) this.opts.confirm(lsn)
  }

  /** Cuts and sends batches while a slot is free and something is due. */
  #pump(force: boolean): void {
    while (!this.#failure && this.#inflight < this.opts.limit.current) {
      if (!this.#pending.size && !this.#dead.length) return
      const big = this.#pending.size + this.#dead.length >= this.opts.batchSize ||
        this.#pendingBytes >= this.opts.maxBatchBytes
      const waited = Date.now() - this.#pendingSince
      const due = force || big || !this.#ledger.open || waited >= this.opts.pollIntervalMs
      if (!due) return
      const coalesce = this.opts.coalesceMs ?? 0
      if (!force && !big && this.#inflight > 0 && waited < coalesce) {
        this.#coalesceTimer ??= setTimeout(() => {
          this.#coalesceTimer = undefined
          this.#pump(false)
        }, coalesce - waited)
        return
      }
      // mostly changes of tenant mappings: a batch of their own size, grown while the stream is behind
      const spread = this.#spreadOf(this.#pendingSpread, this.#pending.size)
      const maxRows = spread?.rows ?? this.opts.maxBatch
      const maxBytes = spread?.bytes ?? this.opts.maxBatchBytes
      this.#spreading = false
      if (
        spread && !force && big && waited < spread.waitMs &&
        (spread.behind ? spread.behind() : this.#inflight > 0) &&
        this.#pending.size + this.#dead.length < maxRows && this.#pendingBytes < maxBytes
      ) {
        this.#spreading = true
        this.#coalesceTimer ??= setTimeout(() => {
          this.#coalesceTimer = undefined
          this.#pump(false)
        }, spread.waitMs - waited)
        return
      }
      const entries: Entry[] = []
      let bytes = 0
      for (const e of this.#pending.values()) {
        if (entries.length >= maxRows || (entries.length && bytes + e.bytes > maxBytes)) break
        if (this.#busy.has(e.key)) continue
        entries.push(e)
        bytes += e.bytes
      }
      if (!entries.length && !this.#dead.length) return // all held behind writes in flight
      // usually everything pending goes: a new map is cheaper than deleting each key
      const all = entries.length === this.#pending.size
      if (all) this.#pending = new Map()
      let spreadCut = 0
      for (const e of entries) {
        if (!all) this.#pending.delete(e.key)
        if (e.spread) spreadCut++
        this.#busy.add(e.key)
      }
      this.#pendingSpread -= spreadCut
      this.#pendingBytes -= bytes
      const dead = this.#dead
      this.#dead = []
      // what is left (held back) waits from now: it is written as soon as its document's write lands
      this.#pendingSince = Date.now()
      this.#send(entries, dead, bytes, spreadCut)
    }
  }

  /** `spread`: how many of `entries` were added with `spread` */
  #send(entries: Entry[], dead: { dead: DeadLetter; txn: Txn }[], bytes: number, spread: number): void {
    const limit = this.opts.limit
    this.#inflight++
    const docs = entries.length + dead.length
    this.#inflightDocs += docs
    this.#inflightSpread += spread
    this.#inflightBytes += bytes
    const full = this.#inflight >= limit.current
    const token = limit.begin()
    const batch: Batch = { intents: entries.map((e) => e.intent), dead: dead.map((d) => d.dead) }
    this.opts.write(batch).then((result) => {
      for (const e of entries) {
        this.#busy.delete(e.key)
        this.#ledger.done(e.txn)
        if (e.held) { for (const t of e.held) this.#ledger.done(t) }
      }
      for (const d of dead) this.#ledger.done(d.txn)
      limit.landed(token, full)
      this.#advance()
      try {
        this.opts.landed?.(result, batch)
      } catch { /* an observer's error is not the write's */ }
    }, (e) => {
      // the documents stay busy and their commits outstanding: nothing after them is written or confirmed
      if (!this.#failure) {
        this.#failure = e instanceof Error ? e : new Error(String(e))
        this.opts.failed?.(this.#failure)
      }
    }).finally(() => {
      this.#inflight--
      this.#inflightDocs -= docs
      this.#inflightSpread -= spread
      this.#inflightBytes -= bytes
      this.#pump(false)
      this.#landings.landed()
    })
  }
}
