// WritePipeline on its own: group commit, ids held behind their write in flight, confirmation only at the end of
// the longest landed prefix of commits, whatever order the writes land in.
import { describe, expect, test } from 'bun:test'
import { AdaptiveLimit } from '../src/concurrency.ts'
import type { Intent } from '../src/pipeline/changes.ts'
import { type Batch, WritePipeline } from '../src/stream/mod.ts'
import { parseNamespaceTemplate } from '../src/config/row-documents.ts'

function setup(
  opts: {
    limit?: number
    batchSize?: number
    maxOutstanding?: number
    maxOutstandingBytes?: number
    spread?: { rows: number; bytes: number; waitMs: number; behind?: () => boolean }
  } = {},
) {
  const writes: { batch: Batch; land(): void; fail(e: Error): void }[] = []
  const confirmed: bigint[] = []
  const p = new WritePipeline({
    batchSize: opts.batchSize ?? 100,
    maxBatch: 1000,
    maxBatchBytes: 1 << 20,
    maxOutstanding: opts.maxOutstanding ?? 10_000,
    maxOutstandingBytes: opts.maxOutstandingBytes ?? 1 << 24,
    pollIntervalMs: 60_000,
    spread: opts.spread,
    limit: new AdaptiveLimit({ initial: opts.limit ?? 8, max: opts.limit ?? 8 }),
    write: (batch) =>
      new Promise((resolve, reject) => writes.push({ batch, land: () => resolve(undefined), fail: reject })),
    confirm: (lsn) => confirmed.push(lsn),
  })
  // with `spread`, the changes are of a tenant mapping unless said otherwise
  const change = (id: number, lsn: number, spread = opts.spread !== undefined) =>
    p.add(`m\u0000${id}`, { id, lsn: BigInt(lsn) } as unknown as Intent, 100, spread)
  const ids = (k: number) => writes[k].batch.intents.map((i) => i.id)
  // a commit's write starts after the messages already received (setImmediate), a landing's effects in microtasks
  const tick = () => new Promise((r) => setImmediate(r))
  return { p, writes, confirmed, change, ids, tick }
}

/** Lands every write, those sent meanwhile too, over `turns` turns (a landing's effects take a few). */
async function landAll(writes: { land(): void }[], turns = 5) {
  for (let k = 0; k < turns; k++) {
    for (const w of writes) w.land()
    await new Promise((r) => setImmediate(r))
  }
}

/** `flushAll`, landing each write as it is sent */
async function flushLanding(p: WritePipeline, writes: { land(): void }[]) {
  const done = p.flushAll()
  await landAll(writes)
  await done
}

/** Changes to row 1 of a mapping with a namespace per tenant: upserted in `namespace`, leaving the `leave` ones. */
function moveRow(p: WritePipeline) {
  const mapping = { name: 'docs', namespace: 'docs_{ws}', namespaceTemplate: parseNamespaceTemplate('docs_{ws}') }
  return (lsn: number, namespace: string, leave?: string[]) =>
    p.add('docs\u00001', {
      route: { mapping },
      id: 1,
      kind: 'upsert',
      lsn: BigInt(lsn),
      namespace,
      ...(leave ? { leave } : {}),
    } as unknown as Intent, 100)
}

describe('WritePipeline', () => {
  // invariant 4 (bounded memory), asserted where it is kept: admission waits while too much is pending or in flight
  for (
    const [what, bound] of [
      ['documents', { maxOutstanding: 8 }],
      ['bytes', { maxOutstandingBytes: 800 }], // 100 bytes a change
    ] as const
  ) {
    test(`admission waits while too many ${what} are pending or in flight, and goes on once a write lands`, async () => {
      const { p, writes, change, tick } = setup({ limit: 1, batchSize: 5, ...bound })
      p.begin()
      for (let id = 1; id <= 5; id++) change(id, 100)
      await p.admit() // a batch's worth: written, and 5 of 8 outstanding leaves room
      expect(writes.length).toBe(1)
      for (let id = 6; id <= 8; id++) change(id, 100)
      let admitted = false
      const waiting = p.admit()
      expect(waiting).toBeInstanceOf(Promise)
      waiting!.then(() => admitted = true)
      for (let k = 0; k < 5; k++) await tick()
      expect(admitted).toBe(false) // 8 outstanding: the stream is held
      writes[0].land()
      await waiting
      expect(admitted).toBe(true)
      p.commit(110n)
      await tick()
      expect(writes.length).toBe(2)
      writes[1].land()
      await p.flushAll()
    })
  }

  test('a namespace per tenant (spread): a backlog waits for more rows while a write is in flight, a trickle does not', async () => {
    const { p, writes, change, tick } = setup({ batchSize: 10, spread: { rows: 50, bytes: 1 << 20, waitMs: 150 } })
    p.begin()
    change(1, 100)
    p.commit(110n)
    await tick()
    expect(writes.length).toBe(1) // nothing in flight: at once
    // a trickle (below batchSize) while a write is in flight: written after the usual coalescing, not held
    p.begin()
    change(2, 200)
    p.commit(210n)
    await new Promise((r) => setTimeout(r, 30))
    expect(writes.length).toBe(2)
    // a backlog (batchSize or more): held while a write is in flight, until it reaches `rows` or waited waitMs
    for (let t = 0; t < 3; t++) {
      p.begin()
      for (let id = 10 + t * 10; id < 20 + t * 10; id++) change(id, 300 + t)
      p.commit(BigInt(310 + t))
    }
    await tick()
    expect(writes.length).toBe(2)
    p.begin()
    for (let id = 100; id < 120; id++) change(id, 400)
    p.commit(410n)
    await tick()
    expect(writes.length).toBe(3) // 50 rows: one write of all of them
    expect(writes[2].batch.intents.length).toBe(50)
    p.begin()
    for (let id = 200; id < 215; id++) change(id, 500)
    p.commit(510n)
    await tick()
    expect(writes.length).toBe(3)
    await new Promise((r) => setTimeout(r, 200))
    expect(writes.length).toBe(4) // waited long enough
    for (const w of writes) w.land()
    await p.flushAll()
  })

  test('spread with `behind`: a backlog grows while the stream is behind, even with nothing in flight; cut once caught up', async () => {
    let behind = true
    const { p, writes, change, tick } = setup({
      batchSize: 10,
      spread: { rows: 50, bytes: 1 << 20, waitMs: 10_000, behind: () => behind },
    })
    for (let t = 0; t < 4; t++) {
      p.begin()
      for (let id = t * 10; id < t * 10 + 10; id++) change(id, 100 + t)
      p.commit(BigInt(110 + t))
      await tick()
    }
    p.tick()
    expect(writes.length).toBe(0) // 40 rows, behind: held (the code before: written at 10, nothing being in flight)
    behind = false
    p.tick() // the processor's timer: the stream caught up, so what is pending goes now
    expect(writes.length).toBe(1)
    expect(writes[0].batch.intents.length).toBe(40)
    // at `rows` it goes even while behind
    behind = true
    p.begin()
    for (let id = 100; id < 160; id++) change(id, 200)
    p.commit(210n)
    await tick()
    expect(writes.length).toBe(2)
    expect(writes[1].batch.intents.length).toBe(50)
    await flushLanding(p, writes)
    expect(writes.map((w) => w.batch.intents.length)).toEqual([40, 50, 10])
  })

  test('spread: two tenant batches may be outstanding, while other changes keep to maxOutstanding', async () => {
    for (const spread of [true, false]) {
      const { p, writes, change, tick } = setup({
        limit: 1,
        batchSize: 5,
        maxOutstanding: 8,
        spread: { rows: 20, bytes: 1 << 20, waitMs: 0, behind: () => false },
      })
      p.begin()
      for (let id = 1; id <= 5; id++) change(id, 100, spread)
      await p.admit()
      expect(writes.length).toBe(1)
      for (let id = 6; id <= 15; id++) change(id, 100, spread)
      const waiting = p.admit()
      let admitted = false
      waiting?.then(() => admitted = true)
      for (let k = 0; k < 5; k++) await tick()
      // 15 outstanding: room for tenant changes (two batches of 20), not for the others (8)
      expect(admitted || waiting === undefined).toBe(spread)
      await landAll(writes)
      await waiting
      p.commit(110n)
      await flushLanding(p, writes)
    }
  })

  test('spread, at the bound: what is pending waits for a landing, not a batch of its own over every namespace', async () => {
    // two tenant batches in flight fill the bound; the next few changes used to be cut at once as a third batch: a
    // sliver of rows spread over every tenant namespace, a request for every row or two (the benchmark's drain: 1,900
    // rows over 1,000 namespaces after each pair of 23,000-row batches, a third of its requests)
    let behind = true
    const { p, writes, change, tick } = setup({
      batchSize: 5,
      maxOutstanding: 5,
      spread: { rows: 10, bytes: 1 << 20, waitMs: 10_000, behind: () => behind },
    })
    const add = async (from: number, to: number) => {
      for (let id = from; id <= to; id++) {
        change(id, 100)
        const waiting = p.admit()
        if (waiting) await Promise.race([waiting, tick()])
      }
    }
    p.begin()
    await add(1, 10) // a full tenant batch: cut at once
    await add(11, 17) // held to grow while behind
    behind = false
    p.tick() // caught up: cut
    expect(writes.map((w) => w.batch.intents.length)).toEqual([10, 7])
    // 17 in flight: three more reach the bound of two batches (20)
    for (let id = 18; id <= 20; id++) change(id, 100)
    let admitted = false
    const waiting = p.admit()?.then(() => admitted = true)
    for (let k = 0; k < 5; k++) await tick()
    expect(admitted).toBe(false)
    expect(writes.length).toBe(2)
    writes[0].land()
    await waiting
    p.commit(110n)
    await flushLanding(p, writes)
    expect(writes.map((w) => w.batch.intents.length)).toEqual([10, 7, 3])
  })

  test('at the bound with a write in flight and a slot free, other changes (and dead letters) go at once', async () => {
    for (const spread of [undefined, { rows: 10, bytes: 1 << 20, waitMs: 10_000, behind: () => true }]) {
      const { p, writes, change, tick } = setup({ batchSize: 100, maxOutstanding: 5, spread })
      p.begin()
      for (let id = 1; id <= 3; id++) change(id, 100, false)
      p.commit(110n)
      await tick()
      expect(writes.length).toBe(1)
      // one-namespace changes (with or without tenant mappings beside them) reach the bound: one next write, now
      p.begin()
      change(4, 200, false)
      change(5, 200, false)
      const waiting = p.admit()
      await tick()
      expect(writes.map((w) => w.batch.intents.length)).toEqual([3, 2])
      // only dead letters pending at the bound: they go too
      p.addDead({ mapping: 'm', error: 'x' } as never)
      p.admit()
      await tick()
      expect(writes.length).toBe(3)
      await landAll(writes, 3)
      await waiting
      p.commit(210n)
      await flushLanding(p, writes)
    }
  })

  test('spread: changes of other mappings are batched as without it (maxBatch, not held)', async () => {
    const { p, writes, change, tick } = setup({
      batchSize: 10,
      spread: { rows: 5_000, bytes: 1 << 24, waitMs: 10_000, behind: () => true },
    })
    p.begin()
    for (let id = 0; id < 2_500; id++) change(id, 100, false)
    p.commit(110n)
    await tick()
    // one namespace's changes: cut at maxBatch (1,000), at once
    expect(writes.map((w) => w.batch.intents.length)).toEqual([1000, 1000, 500])
    for (const w of writes) w.land()
    await p.flushAll()
  })

  test('a tenant move collapsed into a later change: its commit is confirmed only once the later write landed', async () => {
    // row 1 in docs_a; moved to docs_b (commit 210), then to docs_c (commit 310) while its earlier write is in flight:
    // the two moves collapse into one write (to docs_c, leaving docs_a and docs_b). Confirming 210 before that write
    // landed would let a restart replay only b → c (leaving docs_b): the copy in docs_a would stay for good
    const { p, writes, confirmed, tick } = setup()
    const change = moveRow(p)
    p.begin()
    change(100, 'docs_a')
    p.commit(110n)
    await tick()
    expect(writes.length).toBe(1)
    p.begin()
    change(200, 'docs_b', ['docs_a'])
    p.commit(210n)
    p.begin()
    change(300, 'docs_c', ['docs_b'])
    p.commit(310n)
    await tick()
    writes[0].land()
    for (let k = 0; k < 5; k++) await tick()
    expect(writes.length).toBe(2)
    expect(writes[1].batch.intents[0].leave?.sort()).toEqual(['docs_a', 'docs_b'])
    expect(confirmed.at(-1)).toBe(110n)
    writes[1].land()
    await p.flushAll()
    expect(confirmed.at(-1)).toBe(310n)
  })

  test('a moved row changed many times while pending carries one earlier row per namespace it leaves, not every version', async () => {
    const { p, writes, tick } = setup()
    // a transform may name the document after the tenant: the values the row had where it leaves go along (leaves.ts)
    const mapping = {
      name: 'docs',
      namespace: 'docs_{ws}',
      namespaceTemplate: parseNamespaceTemplate('docs_{ws}'),
      transform: 'transforms/docs.ts',
    }
    const change = (lsn: number, old: Record<string, unknown>, row: Record<string, unknown>, leave?: string[]) =>
      p.add('docs\u00001', {
        route: { mapping },
        id: 1,
        kind: 'upsert',
        lsn: BigInt(lsn),
        event: { type: 'update', id: 1, old, new: row },
        ...(leave ? { leave } : {}),
      } as unknown as Intent, 100)
    p.begin()
    change(100, { id: 1, ws: 'a', n: 0 }, { id: 1, ws: 'b', n: 0 }, ['docs_a'])
    // a hot row: each change collapses into the next; every version carried was quadratic in copies, and a transform
    // run each when written
    for (let n = 1; n <= 2000; n++) change(100 + n, { id: 1, ws: 'b', n: n - 1 }, { id: 1, ws: 'b', n })
    p.commit(5000n)
    await tick()
    const [intent] = writes[0].batch.intents
    expect(intent.leave).toEqual(['docs_a'])
    expect(intent.leftRows).toEqual([{ id: 1, ws: 'a', n: 0 }])
    writes[0].land()
    await p.flushAll()
  })

  test('a moved row changed 60,000 times while pending: each change costs the same (the held commits were copied at each)', async () => {
    const { p, writes, confirmed, tick } = setup()
    const change = moveRow(p)
    p.begin()
    change(1, 'docs_b', ['docs_a'])
    const started = performance.now()
    // every change of the row after the move carries docs_a, so each keeps the commits before it unconfirmed
    for (let n = 2; n <= 60_000; n++) change(n, 'docs_b')
    // linear: about 0.1 s; the copies took about 4 s (a bound far from both, on a shared machine)
    expect(performance.now() - started).toBeLessThan(1500)
    p.commit(70_000n)
    await tick()
    expect(writes[0].batch.intents[0].leave).toEqual(['docs_a'])
    writes[0].land()
    await p.flushAll()
    expect(confirmed.at(-1)).toBe(70_000n)
  })

  test('a change collapsed into a later one that needs nothing of it is confirmed at once (moved back, same place)', async () => {
    const { p, writes, confirmed, tick } = setup()
    const change = moveRow(p)
    p.begin()
    change(100, 'docs_a')
    p.commit(110n)
    await tick()
    p.begin()
    change(200, 'docs_b', ['docs_a'])
    p.commit(210n)
    p.begin()
    change(300, 'docs_a', ['docs_b'])
    p.commit(310n)
    await tick()
    writes[0].land()
    for (let k = 0; k < 5; k++) await tick()
    expect(writes[1].batch.intents[0].leave).toEqual(['docs_b'])
    // b → a replayed alone leaves docs_b and writes docs_a: nothing of the move to b is needed
    expect(confirmed.at(-1)).toBe(210n)
    writes[1].land()
    await p.flushAll()
  })

  test('commits received together go in one write at once; confirmation waits for the earliest write', async () => {
    const { p, writes, confirmed, change, ids, tick } = setup()
    p.begin()
    change(1, 100)
    p.commit(110n)
    p.begin()
    change(2, 200)
    p.commit(210n)
    await tick()
    expect(writes.length).toBe(1) // both commits arrived before the write started: one write
    expect(ids(0)).toEqual([1, 2])
    p.begin()
    change(3, 300)
    p.commit(310n)
    await tick()
    expect(writes.length).toBe(2)
    writes[1].land() // the later write lands first: nothing may be confirmed yet
    await tick()
    expect(confirmed).toEqual([])
    writes[0].land()
    await tick()
    expect(confirmed.at(-1)).toBe(310n)
    expect(p.idle).toBe(true)
  })

  test('an id in flight holds its next change for a later write; an empty commit waits its turn', async () => {
    const { p, writes, confirmed, change, ids, tick } = setup()
    p.begin()
    change(1, 100)
    p.commit(110n)
    await tick()
    p.begin()
    change(1, 200) // delete or update of the same document: must not overtake the write in flight
    change(2, 200)
    p.commit(210n)
    p.begin()
    p.commit(310n) // no changes of ours
    await tick()
    expect(writes.length).toBe(2)
    expect(ids(1)).toEqual([2])
    writes[1].land()
    await tick()
    expect(confirmed).toEqual([])
    writes[0].land()
    await tick()
    // the held change goes now, and only its landing lets the slot pass 210 (and the empty commit after it)
    expect(writes.length).toBe(3)
    expect(ids(2)).toEqual([1])
    expect(confirmed.at(-1) ?? 0n).toBeLessThan(210n)
    writes[2].land()
    await tick()
    expect(confirmed.at(-1)).toBe(310n)
  })

  test('with every slot busy, what arrives goes into one next write; a failure stops confirmation', async () => {
    const { p, writes, confirmed, change, tick } = setup({ limit: 1 })
    for (let k = 0; k < 5; k++) {
      p.begin()
      change(k, 100 * (k + 1))
      p.commit(BigInt(100 * (k + 1) + 10))
      if (k === 0) await tick()
    }
    await tick()
    expect(writes.length).toBe(1)
    writes[0].land()
    await tick()
    expect(writes.length).toBe(2)
    expect(writes[1].batch.intents.length).toBe(4)
    writes[1].fail(new Error('boom'))
    await tick()
    expect(p.failure?.message).toBe('boom')
    expect(confirmed.at(-1)).toBe(110n)
    await expect(p.flushAll()).rejects.toThrow('boom')
  })
})
