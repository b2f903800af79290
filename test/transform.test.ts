import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createEmbedder } from '../src/embeddings/embedder.ts'
import { deleteSchema, normalizeAction, plainShapeOk, upsertSchema } from '../src/pipeline/transform/action.ts'
import { parseTransformSpec, splitCommandLine } from '../src/config/transform-spec.ts'
import {
  createTransformRunner,
  loadTransform,
  type TransformResult,
  validateTransform,
  validateTransformFile,
} from '../src/pipeline/transform/mod.ts'
import type { Logger, RowEvent } from '../src/types.ts'
import { type EmbeddingServer, expectedVector, startEmbeddingServer } from './fixtures/transforms/embedding-server.ts'
import { rowEvent } from './harness/row-event.ts'

const FIXTURES = fileURLToPath(new URL('./fixtures/transforms', import.meta.url))
const fixture = (name: string) => ({ kind: 'module' as const, path: join(FIXTURES, name), label: `transforms/${name}` })

export const silentLog: Logger = { debug() {}, info() {}, warn() {}, error() {} }

const ev = (
  id: string | number,
  row?: Record<string, unknown>,
  type: RowEvent['type'] = row ? 'insert' : 'delete',
): RowEvent => rowEvent(id, type, row, { table: 'items', lsn: '0/16B3748', mapping: 'items' })

let tmp: string
let server: EmbeddingServer
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'puffgres-transform-'))
  server = await startEmbeddingServer()
})
afterAll(async () => {
  rmSync(tmp, { recursive: true, force: true })
  await server.close()
})

function writeModule(name: string, source: string): string {
  const p = join(tmp, name)
  writeFileSync(p, source)
  return p
}

describe('loading a transform module', () => {
  test('loads a .ts default export and detects the form', async () => {
    const t = await loadTransform(join(FIXTURES, 'uppercase.ts'))
    expect(t.batch).toBe(false)
    expect(t.idArgument).toBe(false)
    expect((await loadTransform(join(FIXTURES, 'batch-echo.ts'))).batch).toBe(true)
    expect((await loadTransform(join(FIXTURES, 'original-style.ts'))).idArgument).toBe(true)
  })

  test('clear errors naming the file', async () => {
    const noDefault = writeModule('no-default.ts', 'export const transform = () => ({ type: "skip" })\n')
    await expect(validateTransformFile(noDefault, { label: 'transforms/no-default.ts' })).rejects.toThrow(
      'transform transforms/no-default.ts must export a default function: export default function (event, ctx) { … }; it exports transform',
    )
    const notFn = writeModule('not-fn.ts', 'export default { type: "skip" }\n')
    await expect(validateTransformFile(notFn)).rejects.toThrow('(its default export is object)')
    const broken = writeModule('broken.ts', 'export default function (event {\n')
    await expect(validateTransformFile(broken, { label: 'transforms/broken.ts' })).rejects.toThrow(
      'transform transforms/broken.ts could not be loaded: ',
    )
    const throwsAtLoad = writeModule('throws.ts', 'throw new Error("no API key")\nexport default () => null\n')
    await expect(validateTransformFile(throwsAtLoad)).rejects.toThrow('could not be loaded: no API key')
    const badBatch = writeModule('bad-batch.ts', 'export const batch = "yes"\nexport default () => []\n')
    await expect(validateTransformFile(badBatch)).rejects.toThrow('`export const batch` must be true or false')
    await expect(validateTransformFile(join(tmp, 'missing.ts'), { label: 'transforms/missing.ts' })).rejects.toThrow(
      'transform transforms/missing.ts: file not found',
    )
    await expect(validateTransform(parseTransformSpec('bin:./nope --flag', tmp))).rejects.toThrow(
      'transform bin:./nope --flag: program not found: ' + join(tmp, 'nope'),
    )
    await validateTransform(parseTransformSpec('bin:sh -c "cat"', tmp)) // PATH lookups are left to run time
  })
})

describe('transform specs', () => {
  test('paths resolve against the puffgres folder; bin: command lines split like a shell', () => {
    expect(parseTransformSpec('transforms/x.ts', '/p/puffgres')).toEqual({
      kind: 'module',
      path: '/p/puffgres/transforms/x.ts',
      label: 'transforms/x.ts',
    })
    expect(parseTransformSpec('bin:./bin/t --name "a b" \'c d\' e\\ f', '/p/puffgres')).toEqual({
      kind: 'command',
      argv: ['./bin/t', '--name', 'a b', 'c d', 'e f'],
      cwd: '/p/puffgres',
      label: 'bin:./bin/t --name "a b" \'c d\' e\\ f',
    })
    expect(splitCommandLine('  a   "" b ')).toEqual(['a', '', 'b'])
    expect(() => splitCommandLine('a "b')).toThrow('unclosed "')
    expect(() => parseTransformSpec('bin:  ', '/p')).toThrow('nothing after "bin:"')
  })
})

describe('per-event module runner', () => {
  test('runs each event, keeps the order, fills in the event id, passes ctx', async () => {
    const r = await createTransformRunner(fixture('uppercase.ts'), {
      mapping: 'items',
      log: silentLog,
      env: { GREETING: 'hi' },
    })
    const out = await r.run([ev(1, { name: 'a' }), ev(2, { name: 'b' }), ev(3), ev(4, { name: 'c', hidden: true })])
    expect(out).toEqual([
      { ok: true, action: { type: 'upsert', id: 1, attributes: { name: 'A', mapping: 'items', greeting: 'hi' } } },
      { ok: true, action: { type: 'upsert', id: 2, attributes: { name: 'B', mapping: 'items', greeting: 'hi' } } },
      { ok: true, action: { type: 'delete', id: 3 } },
      { ok: true, action: { type: 'skip' } },
    ])
    expect(await r.run([])).toEqual([])
    await r.close()
  })

  test('a throw, an invalid action or a timeout fails that event only', async () => {
    const r = await createTransformRunner(fixture('echo-action.ts'), { mapping: 'items', log: silentLog })
    const out = await r.run([
      ev(1, { action: { type: 'upsert', attributes: { price: 9.99 } } }),
      ev(2, { throw: 'boom' }),
      ev(42, { action: { type: 'upsert', attributes: { price: Number.NaN } } }),
      ev(4, { action: { type: 'skip' } }),
    ])
    expect(out[0]).toEqual({ ok: true, action: { type: 'upsert', id: 1, attributes: { price: 9.99 } } })
    expect(out[1]).toEqual({ ok: false, error: 'transform transforms/echo-action.ts threw for id 2: boom' })
    expect(out[2]).toEqual({
      ok: false,
      error:
        'transform transforms/echo-action.ts returned an invalid action for id 42: attributes.price: NaN is not a finite number',
    })
    expect(out[3]).toEqual({ ok: true, action: { type: 'skip' } })

    const slow = await createTransformRunner(fixture('hang.ts'), { mapping: 'items', log: silentLog, timeoutMs: 50 })
    const res = await slow.run([ev(1, {}), ev(2, { hang: true }), ev(3, {})])
    expect(res[0].ok).toBe(true)
    expect(res[1]).toEqual({ ok: false, error: 'transform transforms/hang.ts timed out after 50 ms for id 2' })
    expect(res[2].ok).toBe(true)
  })

  test('the original puffgres signature (event, id, ctx) with op and doc', async () => {
    const r = await createTransformRunner(fixture('original-style.ts'), { mapping: 'items', log: silentLog })
    const out = await r.run([ev(5, { id: 5, name: 'x' }), ev(6)])
    expect(out).toEqual([
      {
        ok: true,
        action: {
          type: 'upsert',
          id: 5,
          attributes: { name: 'x' },
          vector: [1, 0],
          distance_metric: 'cosine_distance',
        },
      },
      { ok: true, action: { type: 'delete', id: 6 } },
    ])
  })

  test('ctx.embed from many rows shares one request; without a provider it fails the event clearly', async () => {
    const embedder = createEmbedder({
      type: 'together',
      model: 'test-model',
      api_key: 'test-key',
      base_url: server.url,
    })
    server.requests.length = 0
    const r = await createTransformRunner(fixture('embed-each.ts'), { mapping: 'items', log: silentLog, embedder })
    const out = await r.run([ev(1, { text: 'one' }), ev(2, { text: 'two' }), ev(3, { text: 'three' })])
    expect(out.map((o) => o.ok && o.action.type === 'upsert' && o.action.vector)).toEqual(
      ['one', 'two', 'three'].map((t) => expectedVector(t)),
    )
    expect(server.requests).toHaveLength(1)
    // the provider down (after its retries): the event fails as retryable, so the caller retries instead of DLQ
    const flaky = createEmbedder(
      { type: 'together', model: 'test-model', api_key: 'test-key', base_url: server.url },
      { maxRetries: 0 },
    )
    server.failNext({ status: 503 })
    const down = await createTransformRunner(fixture('embed-each.ts'), {
      mapping: 'items',
      log: silentLog,
      embedder: flaky,
    })
    expect(await down.run([ev(9, { text: 'nine' })])).toEqual([{
      ok: false,
      error:
        'transform transforms/embed-each.ts threw for id 9: embeddings (together, test-model) failed after 1 attempts: HTTP 503: planned failure 503',
      retryable: true,
    }])
    const none = await createTransformRunner(fixture('embed-each.ts'), { mapping: 'items', log: silentLog })
    expect(await none.run([ev(1, { text: 'x' })])).toEqual([{
      ok: false,
      error:
        'transform transforms/embed-each.ts threw for id 1: mapping items: ctx.embed was called but no embedding provider is configured',
    }])
  })
})

describe('batch module runner', () => {
  test('one call per batch; a throw or a wrong-length result fails the whole batch', async () => {
    const r = await createTransformRunner(fixture('batch-echo.ts'), { mapping: 'items', log: silentLog })
    const ok = await r.run([ev(1, { action: { type: 'upsert', doc: { a: 1 } } }), ev(2, { action: { op: 'delete' } })])
    expect(ok).toEqual([
      { ok: true, action: { type: 'upsert', id: 1, attributes: { a: 1 } } },
      { ok: true, action: { type: 'delete', id: 2 } },
    ])
    const thrown = await r.run([ev(1, { action: { type: 'skip' } }), ev(2, { fail: true })])
    expect(thrown).toEqual([
      { ok: false, error: 'transform transforms/batch-echo.ts threw for a batch of 2 events: batch refused' },
      { ok: false, error: 'transform transforms/batch-echo.ts threw for a batch of 2 events: batch refused' },
    ])
    const short = await r.run([ev(1, { action: { type: 'skip' }, drop: true }), ev(2, { action: { type: 'skip' } })])
    expect(short.every((s) => !s.ok && s.error.includes('returned 1 actions for 2 events'))).toBe(true)
  })

  test('the original batch form destructuring { event, id }', async () => {
    const r = await createTransformRunner(fixture('original-batch.ts'), { mapping: 'items', log: silentLog })
    expect(await r.run([ev('a', { name: 'n' }), ev('b')])).toEqual([
      { ok: true, action: { type: 'upsert', id: 'a', attributes: { name: 'n' } } },
      { ok: true, action: { type: 'delete', id: 'b' } },
    ])
  })

  test('declarative embedding after a transform', async () => {
    const embedder = createEmbedder({ type: 'openai', model: 'test-model', api_key: 'test-key', base_url: server.url })
    const r = await createTransformRunner(fixture('uppercase.ts'), {
      mapping: 'items',
      log: silentLog,
      embedder,
      embedding: { source: 'name' },
    })
    const [out] = await r.run([ev(2, { name: 'lamp' })])
    expect(out).toMatchObject({
      ok: true,
      action: { id: 2, attributes: { name: 'LAMP' }, vector: expectedVector('lamp') },
    })
    await expect(
      createTransformRunner(fixture('uppercase.ts'), { mapping: 'items', log: silentLog, embedding: { source: 'x' } }),
    ).rejects.toThrow('mapping items: [mapping.embedding] needs an embedding provider')
  })
})

describe('identity runner (no transform)', () => {
  test('upserts the row (or the listed columns) without the id column; deletes on delete', async () => {
    const all = await createTransformRunner(undefined, { mapping: 'items', log: silentLog })
    expect(await all.run([ev(1, { id: 1, name: 'x', price: 2.5 }), ev(2)])).toEqual([
      { ok: true, action: { type: 'upsert', id: 1, attributes: { name: 'x', price: 2.5 } } },
      { ok: true, action: { type: 'delete', id: 2 } },
    ])
    const some = await createTransformRunner(undefined, { mapping: 'items', log: silentLog, columns: ['id', 'name'] })
    expect(await some.run([ev(1, { id: 1, name: 'x', price: 2.5 })])).toEqual([
      { ok: true, action: { type: 'upsert', id: 1, attributes: { name: 'x' } } },
    ])
    const [bad] = await all.run([ev(3, { $weird: 1 })])
    expect(bad).toEqual({
      ok: false,
      error:
        "mapping items returned an invalid action for id 3: attributes.$weird: attribute names cannot start with '$'",
    })
  })
})

describe('action validation', () => {
  const e = ev(42, {})
  const check = (raw: unknown): TransformResult => normalizeAction(raw, e, 'transform transforms/x.ts')
  const err = (raw: unknown) => {
    const r = check(raw)
    if (r.ok) throw new Error('expected a failure, got ' + JSON.stringify(r))
    return r.error.replace('transform transforms/x.ts returned an invalid action for id 42: ', '')
  }

  test('accepts the documented forms and spellings', () => {
    expect(check({ type: 'upsert', attributes: { a: 1, when: new Date(0), tags: ['x'], n: null } })).toMatchObject({
      ok: true,
      action: { id: 42, attributes: { a: 1, tags: ['x'], n: null } },
    })
    expect(check({ op: 'upsert', id: 'k', document: { a: 1 } })).toEqual({
      ok: true,
      action: { type: 'upsert', id: 'k', attributes: { a: 1 } },
    })
    expect(check({ type: 'upsert', id: 7n })).toEqual({ ok: true, action: { type: 'upsert', id: 7, attributes: {} } })
    expect(check({ type: 'upsert', attributes: { id: '42', u: undefined } })).toEqual({
      ok: true,
      action: { type: 'upsert', id: 42, attributes: {} },
    })
    expect(check({ type: 'delete', id: 9 })).toEqual({ ok: true, action: { type: 'delete', id: 9 } })
  })

  test('rejects, naming the field', () => {
    expect(err(undefined)).toBe("expected an action object like { type: 'upsert' | 'delete' | 'skip' }, got undefined")
    expect(err({ type: 'merge' })).toBe(`type: expected 'upsert', 'delete' or 'skip', got "merge"`)
    expect(err({ type: 'upsert', attributes: { $dist: 1 } })).toBe(
      "attributes.$dist: attribute names cannot start with '$'",
    )
    expect(err({ type: 'upsert', attributes: { _puffgres_version: 'x' } })).toBe(
      "attributes._puffgres_version: reserved for puffgres's row versions",
    )
    expect(err({ type: 'upsert', doc: { f: () => 1 } })).toBe('doc.f: a function cannot be stored')
    expect(err({ type: 'upsert', attributes: { xs: [1, Infinity] } })).toBe(
      'attributes.xs[1]: Infinity is not a finite number',
    )
    expect(err({ type: 'upsert', attributes: { id: 7 } })).toBe(
      "attributes.id: number differs from the document id 42; set the action's id",
    )
    expect(err({ type: 'upsert', attributes: {}, doc: {} })).toBe('attributes and doc: give only one of them')
    expect(err({ type: 'upsert', vector: [1, 'a'] })).toMatch(/^vector\.1: .*expected number/)
    expect(err({ type: 'upsert', vector: [1], attributes: { vector: [2] } })).toContain('the vector is given twice')
    expect(err({ type: 'upsert', id: -1 })).toBe(
      'id: expected a non-negative integer or a non-empty string of at most 64 bytes, got -1',
    )
    expect(err({ type: 'upsert', id: 'x'.repeat(65) })).toContain('string of at most 64 bytes, got "xxx')
    expect(err({ type: 'upsert', attributes: { ['a'.repeat(129)]: 1 } })).toContain('limited to 128 bytes')
    expect(err({ type: 'delete', attributes: {} })).toMatch(/attributes/)
    expect(err({ type: 'upsert', distance_metric: 'dot' })).toMatch(/^distance_metric: /)
    expect(err({ type: 'upsert', attribute: { a: 1 } })).toMatch(/attribute/)
  })
})

test('the hand-written fast path accepts only what the zod schemas accept', () => {
  // a seeded generator, so a failure reproduces
  let seed = 12345
  const rand = (n: number) => {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296 * n) | 0
  }
  const pick = <T>(xs: T[]): T => xs[rand(xs.length)]
  const pools: Record<string, unknown[]> = {
    type: ['upsert', 'upsert', 'delete', 'skip', 'merge', undefined],
    op: [undefined, undefined, undefined, 'upsert', 'delete', 'x'],
    id: [
      undefined,
      0,
      7,
      -1,
      1.5,
      2 ** 53,
      '',
      'a',
      'x'.repeat(21),
      'x'.repeat(64),
      'x'.repeat(65),
      'é'.repeat(32),
      'é'.repeat(33),
      5n,
      null,
    ],
    attributes: [undefined, {}, { a: 1 }, [], null, new Date(0), Object.create(null), 'x'],
    doc: [undefined, undefined, undefined, { b: 2 }, []],
    document: [undefined, undefined, undefined, { c: 3 }, 1],
    vector: [undefined, [], [1], [0.5, 2], [Number.NaN], ['a'], [Infinity], [1, null], 'v'],
    distance_metric: [undefined, undefined, 'cosine_distance', 'euclidean_squared', 'dot'],
    extra: [undefined, undefined, undefined, undefined, undefined, 1],
  }
  let fast = 0
  for (let n = 0; n < 20000; n++) {
    const obj: Record<string, unknown> = {}
    for (const [k, pool] of Object.entries(pools)) {
      const v = pick(pool)
      if (v !== undefined || rand(8) === 0) obj[k] = v
    }
    const type = obj.type ?? obj.op
    if (type !== 'upsert' && type !== 'delete') continue
    if (!plainShapeOk(obj, type)) continue
    fast++
    const schema = type === 'upsert' ? upsertSchema : deleteSchema
    const r = schema.safeParse(obj.type === undefined ? { ...obj, type } : obj)
    if (!r.success) {
      throw new Error(
        `fast path accepted what zod refuses: ${
          JSON.stringify(obj, (_k, v) => typeof v === 'bigint' ? `${v}n` : v)
        }: ${r.error.message}`,
      )
    }
  }
  console.log('fast', fast)
  expect(fast).toBeGreaterThan(100)
})
