// Each file in transforms-example/ run through the real runners.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createEmbedder } from '../src/embeddings/embedder.ts'
import { isMember, parseMembership } from '../src/membership/mod.ts'
import { createTransformRunner } from '../src/pipeline/transform/mod.ts'
import { parseTransformSpec } from '../src/config/transform-spec.ts'
import type { Logger, RowEvent } from '../src/types.ts'
import { type EmbeddingServer, expectedVector, startEmbeddingServer } from './fixtures/transforms/embedding-server.ts'
import { rowEvent } from './harness/row-event.ts'

const EXAMPLES = fileURLToPath(new URL('../transforms-example', import.meta.url))
const log: Logger = { debug() {}, info() {}, warn() {}, error() {} }

const ev = (id: number, type: RowEvent['type'], row?: Record<string, unknown>): RowEvent =>
  rowEvent(id, type, row, { table: 't', lsn: '0/1', mapping: 'm' })

const runner = (file: string, extra: Partial<Parameters<typeof createTransformRunner>[1]> = {}) =>
  createTransformRunner(parseTransformSpec(file, EXAMPLES), { mapping: 'm', log, ...extra })

test('product.ts: published products get a searchText; drafts are skipped, unpublishing deletes', async () => {
  const r = await runner('product.ts')
  const chair = {
    id: 1,
    name: 'Oak Chair',
    brand: 'Woodly',
    category: 'Furniture',
    price: '129.90',
    stock: 3,
    tags: ['oak', 'dining'],
    description: 'Solid  oak,\nhand-finished.',
    status: 'published',
  }
  const out = await r.run([
    ev(1, 'insert', chair),
    ev(2, 'insert', { ...chair, id: 2, status: 'draft' }),
    ev(3, 'update', { ...chair, id: 3, status: 'archived' }),
    ev(4, 'delete'),
    ev(5, 'update', { ...chair, id: 5, price: null, stock: 0, tags: null, brand: null }),
  ])
  expect(out[0]).toEqual({
    ok: true,
    action: {
      type: 'upsert',
      id: 1,
      attributes: {
        name: 'Oak Chair',
        brand: 'Woodly',
        category: 'Furniture',
        price: 129.9,
        currency: 'USD',
        in_stock: true,
        tags: ['oak', 'dining'],
        searchText: 'oak chair woodly furniture oak dining solid oak, hand-finished.',
      },
    },
  })
  expect(out[1]).toEqual({ ok: true, action: { type: 'skip' } })
  expect(out[2]).toEqual({ ok: true, action: { type: 'delete', id: 3 } })
  expect(out[3]).toEqual({ ok: true, action: { type: 'delete', id: 4 } })
  expect(out[4]).toMatchObject({ ok: true, action: { attributes: { price: null, in_stock: false, tags: [] } } })
})

describe('batch-embeddings.ts', () => {
  let server: EmbeddingServer
  beforeAll(async () => {
    server = await startEmbeddingServer()
  })
  afterAll(() => server.close())

  test('embeds every text of a batch in one request', async () => {
    const embedder = createEmbedder({
      type: 'together',
      model: 'test-model',
      api_key: 'test-key',
      base_url: server.url,
    })
    const r = await runner('batch-embeddings.ts', { embedder })
    const out = await r.run([
      ev(1, 'insert', { title: 'First', body: 'one' }),
      ev(2, 'delete'),
      ev(3, 'update', { title: 'Third', body: null }),
      ev(4, 'insert', { title: null, body: '  ' }),
      ev(5, 'insert', { title: 'Fifth', body: 'five' }),
    ])
    expect(server.requests.map((q) => q.input)).toEqual([['First\n\none', 'Third', 'Fifth\n\nfive']])
    expect(out[0]).toEqual({
      ok: true,
      action: {
        type: 'upsert',
        id: 1,
        attributes: { title: 'First', chars: 10 },
        vector: expectedVector('First\n\none'),
        distance_metric: 'cosine_distance',
      },
    })
    expect(out[1]).toEqual({ ok: true, action: { type: 'delete', id: 2 } })
    expect(out[2]).toMatchObject({ ok: true, action: { vector: expectedVector('Third') } })
    expect(out[3]).toEqual({ ok: true, action: { type: 'upsert', id: 4, attributes: { title: null } } })
    expect(out[4]).toMatchObject({ ok: true, action: { vector: expectedVector('Fifth\n\nfive') } })
    // the same rows again: every text comes from the cache
    await r.run([ev(1, 'update', { title: 'First', body: 'one' })])
    expect(server.requests).toHaveLength(1)
  })
})

test('membership-plus-transform.ts with the predicate from its header', async () => {
  const predicate = parseMembership("status = 'published' AND deleted_at IS NULL")
  const rows = [
    { id: 1, status: 'published', deleted_at: null, title: 'In', body: 'word '.repeat(450), author: 'A' },
    { id: 2, status: 'draft', deleted_at: null, title: 'Draft', body: 'x' },
    { id: 3, status: 'published', deleted_at: new Date(0), title: 'Gone', body: 'x' },
  ]
  // the pipeline only hands members to the transform (and turns exits into deletes)
  const members = rows.filter((row) => isMember(predicate, row))
  expect(members.map((m) => m.id)).toEqual([1])
  const r = await runner('membership-plus-transform.ts')
  const out = await r.run([ev(1, 'insert', members[0]), ev(2, 'delete')])
  expect(out).toEqual([
    {
      ok: true,
      action: {
        type: 'upsert',
        id: 1,
        attributes: { title: 'In', author: 'A', word_count: 450, reading_minutes: 3, published_at: null },
      },
    },
    { ok: true, action: { type: 'delete', id: 2 } },
  ])
})

const cargo = spawnSync('cargo', ['--version'], { encoding: 'utf8' }).status === 0
if (!cargo) console.warn('skipping the Rust transform example: cargo is not installed')

test.skipIf(!cargo)('rust-transform: builds offline with no crates and runs through the bin: runner', async () => {
  const target = mkdtempSync(join(tmpdir(), 'puffgres-rust-'))
  try {
    const build = spawnSync('cargo', ['build', '--release', '--offline'], {
      cwd: join(EXAMPLES, 'rust-transform'),
      env: { ...process.env, CARGO_TARGET_DIR: target },
      encoding: 'utf8',
    })
    expect(build.stderr).not.toContain('error')
    expect(build.status).toBe(0)
    const bin = join(target, 'release', 'puffgres-rust-transform')
    const r = await createTransformRunner(parseTransformSpec(`bin:${bin}`, EXAMPLES), { mapping: 'articles', log })
    try {
      const events = [
        ev(1, 'insert', { id: 1, title: 'Hello, Wörld: "quoted"', body: 'one two\tthree', n: 12345678901234567890n }),
        ev(2, 'delete'),
        ev(3, 'update', { id: 3, title: '  ' }),
        ...Array.from({ length: 200 }, (_, i) => ev(100 + i, 'insert', { title: `Row ${i}`, body: 'a b' })),
      ]
      const out = await r.run(events)
      expect(out[0]).toEqual({
        ok: true,
        action: {
          type: 'upsert',
          id: 1,
          attributes: { title: 'Hello, Wörld: "quoted"', slug: 'hello-wörld-quoted', word_count: 3 },
        },
      })
      expect(out[1]).toEqual({ ok: true, action: { type: 'delete', id: 2 } })
      expect(out[2]).toEqual({ ok: true, action: { type: 'skip' } })
      expect(out.slice(3).map((o) => o.ok && o.action.type === 'upsert' && o.action.attributes.slug)).toEqual(
        Array.from({ length: 200 }, (_, i) => `row-${i}`),
      )
    } finally {
      await r.close()
    }
  } finally {
    rmSync(target, { recursive: true, force: true })
  }
})
