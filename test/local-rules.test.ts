// Conformance of the local server with turbopuffer's write rules: for every rule of src/local/rules.ts, writes that
// break it are refused whole (status and message as the service answers) and the nearest writes that keep it are
// accepted, all through the official SDK. A rule without a case here fails the suite.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Turbopuffer from '@turbopuffer/turbopuffer'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { LIMITS, type RuleId, WRITE_RULES } from '../src/local/rules.ts'

let server: LocalServer
let small: LocalServer
let limited: LocalServer
let tpuf: Turbopuffer
let tpufSmall: Turbopuffer
let tpufLimited: Turbopuffer
const SMALL_BODY = 64 * 1024
/** the by-filter limits of the `limited` server, lowered from turbopuffer's 5,000,000 / 50,000 */
const BY_FILTER = { deleteRows: 3, patchRows: 2 }

beforeAll(async () => {
  server = await startLocalServer()
  small = await startLocalServer({ maxBodyBytes: SMALL_BODY })
  limited = await startLocalServer({ byFilterLimits: BY_FILTER })
  tpuf = new Turbopuffer({ apiKey: 'k', baseURL: server.url, maxRetries: 0 })
  tpufSmall = new Turbopuffer({ apiKey: 'k', baseURL: small.url, maxRetries: 0 })
  tpufLimited = new Turbopuffer({ apiKey: 'k', baseURL: limited.url, maxRetries: 0 })
})
afterAll(async () => {
  await server.stop()
  await small.stop()
  await limited.stop()
})

// deno-lint-ignore no-explicit-any
type Body = any
/** an integer written into the JSON exactly as given (the SDK serializes with JSON.stringify) */
const big = (digits: string): unknown => (JSON as unknown as { rawJSON(s: string): unknown }).rawJSON(digits)
const text = (bytes: number, ch = 'a') => ch.repeat(bytes)
const attrs = (n: number, prefix = 'a') => Object.fromEntries(Array.from({ length: n }, (_, i) => [prefix + i, i]))

/** eight attributes whose values fill a document: 8 × 8 MiB = 64 MiB */
const EIGHT = Array.from({ length: 8 }, (_, i) => 't' + i)
let fullValue: string | undefined
const full = () => Object.fromEntries(EIGHT.map((k) => [k, fullValue ??= text(LIMITS.valueBytes)]))

interface Write {
  body: Body
  /** another namespace than the case's own */
  namespace?: string
  /** fields the reply of an accepted write must have */
  reply?: Record<string, unknown>
}
interface Case {
  /** writes applied first, to the case's namespace */
  setup?: Body[]
  refused: Array<Write & { error: RegExp }>
  accepted: Write[]
  /** checks on the case's namespace once everything ran */
  after?: (docs: Array<Record<string, unknown>>) => void
  /** the server with a lowered body limit */
  small?: boolean
  /** the server with lowered by-filter limits (BY_FILTER) */
  limited?: boolean
}

const CASES: Record<RuleId, Case> = {
  'filterable-value-size': {
    setup: [{
      schema: { body: { type: 'string', filterable: false }, fts: { type: 'string', full_text_search: true } },
    }],
    refused: [
      // one offending row refuses the whole request, the good row included
      {
        body: { upsert_rows: [{ id: 1, title: 'ok' }, { id: 2, title: text(4097) }] },
        error: /4097 bytes, the limit is 4096/,
      },
      { body: { upsert_rows: [{ id: 3, title: text(2049, 'é') }] }, error: /"title": 4098 bytes/ },
      { body: { upsert_rows: [{ id: 4, tags: ['x', text(4097)] }] }, error: /filterable attribute "tags": 4097 bytes/ },
      { body: { upsert_columns: { id: [5], title: [text(5000)] } }, error: /"title": 5000 bytes/ },
      { body: { patch_rows: [{ id: 1, title: text(4097) }] }, error: /"title": 4097 bytes/ },
      {
        body: { upsert_rows: [{ id: 6, t: text(4097) }], schema: { t: { type: 'string', filterable: true } } },
        error: /"t": 4097 bytes/,
      },
      {
        // full-text search with an explicit filterable: true is indexed for filtering too
        body: {
          upsert_rows: [{ id: 7, ft: text(4097) }],
          schema: { ft: { type: 'string', full_text_search: true, filterable: true } },
        },
        error: /"ft": 4097 bytes/,
      },
    ],
    accepted: [
      { body: { upsert_rows: [{ id: 1, title: text(4096), tags: [text(4096), 'y'] }] } },
      { body: { upsert_rows: [{ id: 2, title: text(2048, 'é'), body: text(100_000), fts: text(100_000) }] } },
      {
        body: {
          upsert_rows: [{ id: 3, long: [text(100_000)] }],
          schema: { long: { type: '[]string', filterable: false } },
        },
      },
    ],
    after: (docs) => {
      expect(docs.map((d) => d.id)).toEqual([1, 2, 3])
      expect((docs[1].body as string).length).toBe(100_000)
    },
  },
  'id-type-mixed': {
    setup: [{ upsert_rows: [{ id: 1 }] }],
    refused: [
      { body: { upsert_rows: [{ id: 2 }, { id: 'two' }] }, error: /^mixing id types is not supported/ },
      // the case: one big id sent as a string among uint ids
      { body: { upsert_rows: [{ id: '9007199254740993' }] }, error: /^mixing id types is not supported/ },
      { body: { deletes: ['1'] }, error: /^mixing id types is not supported/ },
      { body: { schema: { id: 'string' } }, error: /^mixing id types is not supported/ },
      {
        namespace: 'rule-uuid-ids',
        body: { schema: { id: 'uuid' }, upsert_rows: [{ id: 'not-a-uuid' }] },
        error: /^mixing id types is not supported: the namespace has uuid ids/,
      },
    ],
    accepted: [
      { body: { upsert_rows: [{ id: 2 }, { id: big('9007199254740993') }] } },
      { body: { schema: { id: 'uint' } } },
    ],
    after: (docs) => expect(docs.map((d) => d.id)).toEqual([1, 2, 9007199254740993n]),
  },
  'uint-id': {
    refused: [
      { body: { upsert_rows: [{ id: -1 }] }, error: /invalid id -1: numeric ids must be unsigned integers/ },
      { body: { upsert_rows: [{ id: 1.5 }] }, error: /invalid id 1.5/ },
      { body: { upsert_rows: [{ id: big('18446744073709551616') }] }, error: /invalid id 18446744073709551616/ },
      { body: { deletes: [big('-9223372036854775808')] }, error: /invalid id -9223372036854775808/ },
      { body: { upsert_rows: [{ id: true }] }, error: /ids must be unsigned integers, UUIDs or strings/ },
    ],
    accepted: [
      {
        body: {
          upsert_rows: [{ id: 0 }, { id: big('9007199254740993') }, { id: big('18446744073709551615') }],
        },
      },
      // 2^53 and 2^53+1 are two documents, not one
      { body: { upsert_rows: [{ id: big('9007199254740992') }] } },
    ],
    after: (docs) =>
      expect(docs.map((d) => d.id)).toEqual([0, 9007199254740992n, 9007199254740993n, 18446744073709551615n]),
  },
  'string-id': {
    refused: [
      { body: { upsert_rows: [{ id: text(65) }] }, error: /string ids are at most 64 bytes/ },
      { body: { upsert_rows: [{ id: text(33, 'é') }] }, error: /string ids are at most 64 bytes/ },
      { body: { upsert_rows: [{ id: '' }] }, error: /string ids must not be empty/ },
    ],
    accepted: [{ body: { upsert_rows: [{ id: text(64) }, { id: text(32, 'é') }] } }],
  },
  'duplicate-id': {
    refused: [
      { body: { upsert_rows: [{ id: 1 }, { id: 1 }] }, error: /duplicate id 1 in one request/ },
      { body: { upsert_rows: [{ id: 2, v: 'x' }], deletes: [2] }, error: /duplicate id 2/ },
      { body: { patch_rows: [{ id: 3 }], upsert_columns: { id: [3] } }, error: /duplicate id 3/ },
    ],
    accepted: [{ body: { upsert_rows: [{ id: 1 }, { id: 2 }], deletes: [3] } }],
  },
  'attribute-type': {
    setup: [{ upsert_rows: [{ id: 1, price: 5, name: 'a', on: true }], schema: { n: 'uint', at: 'datetime' } }],
    refused: [
      // 5 pinned int: a later 9.99 fails, as on the service
      { body: { upsert_rows: [{ id: 2, price: 9.99 }] }, error: /"price": cannot change type int to float/ },
      { body: { upsert_rows: [{ id: 2, name: 7 }] }, error: /"name": cannot change type string to int/ },
      { body: { patch_rows: [{ id: 1, on: 'yes' }] }, error: /"on": cannot change type bool to string/ },
      { body: { upsert_rows: [{ id: 2, n: -1 }] }, error: /"n" of type uint: -1/ },
      {
        body: { upsert_rows: [{ id: 2, price: big('9223372036854775808') }] },
        error: /of type int: 9223372036854775808/,
      },
      { body: { upsert_rows: [{ id: 2, at: 'yesterday' }] }, error: /"at": cannot change type datetime to string/ },
      // inside one request too: the first row pins the type
      {
        body: { upsert_rows: [{ id: 2, fresh: 1 }, { id: 3, fresh: 'x' }] },
        error: /cannot change type int to string/,
      },
    ],
    accepted: [
      {
        body: {
          upsert_rows: [
            { id: 2, price: big('9223372036854775807'), n: big('18446744073709551615'), at: '2024-01-02T03:04:05Z' },
            { id: 3, price: big('-9223372036854775808'), name: null },
          ],
        },
      },
    ],
    after: (docs) => {
      expect(docs[1]).toEqual({
        id: 2,
        price: 9223372036854775807n,
        n: 18446744073709551615n,
        at: '2024-01-02T03:04:05Z',
      })
      expect(docs[2].price).toBe(-9223372036854775808n)
    },
  },
  'schema-type-change': {
    setup: [{ upsert_rows: [{ id: 1, qty: 5 }] }],
    refused: [
      {
        body: { schema: { qty: 'string' }, upsert_rows: [{ id: 2, qty: 'x' }] },
        error: /cannot change type int to string/,
      },
      { body: { schema: { qty: { type: '[]int' } } }, error: /"qty": cannot change type int to \[\]int/ },
    ],
    // the same type again (with other options) is not a change
    accepted: [{ body: { schema: { qty: { type: 'int', filterable: true } }, upsert_rows: [{ id: 2, qty: 6 }] } }],
  },
  'array-element-type': {
    refused: [
      {
        body: { upsert_rows: [{ id: 1, j: [1, 'two', 3.5] }] },
        error: /"j": an array holds one element type, got int and string/,
      },
      { body: { upsert_rows: [{ id: 1, j: [1, 2.5] }] }, error: /one element type, got int and float/ },
      { body: { upsert_rows: [{ id: 1, j: ['a', true] }] }, error: /one element type/ },
    ],
    accepted: [
      { body: { upsert_rows: [{ id: 1, j: [1, 2, 3], s: ['a', 'b'], e: [] }] } },
      { body: { upsert_rows: [{ id: 2, f: [1, 2.5] }], schema: { f: '[]float' } } },
    ],
  },
  'nested-value': {
    refused: [
      { body: { upsert_rows: [{ id: 1, j: [[1, 2], [3]] }] }, error: /"j": nested arrays are not attribute values/ },
      { body: { upsert_rows: [{ id: 1, j: { a: 1 } }] }, error: /"j": objects are not attribute values/ },
      { body: { upsert_rows: [{ id: 1, j: [{ a: 1 }] }] }, error: /"j": objects are not attribute values/ },
    ],
    accepted: [{ body: { upsert_rows: [{ id: 1, j: '{"a":1}', k: '[[1,2]]' }] } }],
  },
  'attribute-name': {
    refused: [
      {
        body: { upsert_rows: [{ id: 1, $x: 1 }] },
        error: /invalid attribute name "\$x": names must not start with '\$'/,
      },
      { body: { upsert_rows: [{ id: 1, [text(129)]: 1 }] }, error: /at most 128 bytes/ },
      { body: { upsert_rows: [{ id: 1, [text(65, 'é')]: 1 }] }, error: /at most 128 bytes/ },
      { body: { upsert_rows: [{ id: 1, '': 1 }] }, error: /names must not be empty/ },
      { body: { schema: { $y: 'int' } }, error: /names must not start with '\$'/ },
    ],
    accepted: [{ body: { upsert_rows: [{ id: 1, [text(128)]: 1, [text(64, 'é')]: 2, 'x$': 3 }] } }],
  },
  'attribute-count': {
    setup: [{ upsert_rows: [{ id: 1, ...attrs(256) }] }],
    refused: [
      { body: { upsert_rows: [{ id: 2, one_more: 1 }] }, error: /too many attributes: 257, at most 256 per namespace/ },
      { body: { schema: { one_more: 'int' } }, error: /at most 256 per namespace/ },
    ],
    accepted: [{ body: { upsert_rows: [{ id: 2, a0: 1, a255: 2 }] } }],
  },
  'value-size': {
    setup: [{ schema: { big: { type: 'string', filterable: false }, bigs: { type: '[]string', filterable: false } } }],
    refused: [
      {
        body: { upsert_rows: [{ id: 1, big: text(LIMITS.valueBytes + 1) }] },
        error: /"big": 8388609 bytes, the limit is 8388608/,
      },
      {
        body: { upsert_rows: [{ id: 1, bigs: [text(LIMITS.valueBytes / 2), text(LIMITS.valueBytes / 2 + 1)] }] },
        error: /"bigs": 8388609 bytes/,
      },
      {
        body: { upsert_rows: [{ id: 1, nums: new Array(LIMITS.valueBytes / 8 + 1).fill(1) }] },
        error: /"nums": 8388616 bytes/,
      },
    ],
    accepted: [{ body: { upsert_rows: [{ id: 1, big: text(LIMITS.valueBytes), nums: new Array(1000).fill(1) }] } }],
  },
  'document-size': {
    // eight values of 8 MiB, each within value-size, make exactly 64 MiB
    setup: [{ schema: Object.fromEntries(EIGHT.map((k) => [k, { type: 'string', filterable: false }])) }],
    refused: [
      {
        body: { upsert_rows: [{ id: 1, ...full(), n: 1 }] },
        error: /^invalid document 1: 67108872 bytes, the limit is 67108864$/,
      },
      {
        body: { upsert_rows: [{ id: 3, ...full(), vector: [0.5] }], distance_metric: 'cosine_distance' },
        error: /^invalid document 3: 67108868 bytes/,
      },
      { body: { patch_rows: [{ id: 1, ...full(), n: 1 }] }, error: /^invalid document 1: 67108872 bytes/ },
    ],
    accepted: [
      { body: { upsert_rows: [{ id: 1, ...full() }] } },
      {
        body: {
          upsert_rows: [{ id: 2, ...full(), t7: text(LIMITS.valueBytes - 4), vector: [0.5] }],
          distance_metric: 'cosine_distance',
        },
      },
    ],
    after: (docs) => expect(docs.map((d) => d.id)).toEqual([1, 2]),
  },
  'request-size': {
    small: true,
    refused: [
      {
        body: { upsert_rows: [{ id: 1, t: text(SMALL_BODY) }], schema: { t: { type: 'string', filterable: false } } },
        error: /request body too large: the limit is 65536 bytes/,
      },
    ],
    accepted: [
      {
        body: {
          upsert_rows: [{ id: 1, t: text(SMALL_BODY - 200) }],
          schema: { t: { type: 'string', filterable: false } },
        },
      },
    ],
  },
  'vector-dimensions': {
    setup: [{ upsert_rows: [{ id: 1, vector: [1, 2, 3] }], distance_metric: 'cosine_distance' }],
    refused: [
      { body: { upsert_rows: [{ id: 2, vector: [1, 2, 3, 4] }] }, error: /4 dimensions, the namespace has 3/ },
      { body: { schema: { vector: '[4]f32' } }, error: /the namespace has 3 dimensions/ },
      {
        namespace: 'rule-vector-max',
        body: { upsert_rows: [{ id: 1, vector: new Array(10753).fill(0.5) }], distance_metric: 'cosine_distance' },
        error: /10753 dimensions, at most 10752/,
      },
      {
        namespace: 'rule-vector-max-b64',
        body: { upsert_rows: [{ id: 1, vector: btoa('\0'.repeat(4 * 10753)) }], distance_metric: 'cosine_distance' },
        error: /10753 dimensions, at most 10752/,
      },
      { namespace: 'rule-vector-max-schema', body: { schema: { vector: '[10753]f32' } }, error: /10753 dimensions/ },
    ],
    accepted: [
      { body: { upsert_rows: [{ id: 2, vector: [3, 2, 1] }] } },
      {
        namespace: 'rule-vector-max',
        body: { upsert_rows: [{ id: 1, vector: new Array(10752).fill(0.5) }], distance_metric: 'cosine_distance' },
      },
    ],
  },
  'by-filter-limit': {
    limited: true,
    setup: [{ upsert_rows: [1, 2, 3, 4, 5, 6].map((id) => ({ id, g: 'a' })) }],
    refused: [
      { body: { delete_by_filter: ['g', 'Eq', 'a'] }, error: /^delete_by_filter matched 6 documents, more than the 3/ },
      {
        body: { delete_by_filter: ['g', 'Eq', 'a'], delete_by_filter_allow_partial: false },
        error: /set delete_by_filter_allow_partial to true and repeat the request while rows_remaining is true/,
      },
      {
        body: { patch_by_filter: { filters: ['g', 'Eq', 'a'], patch: { p: 1 } } },
        error: /^patch_by_filter matched 6 documents, more than the 2 one request may patch/,
      },
      {
        // the delete_by_filter runs first (2 deleted), the patch then matches 4: the whole request is refused,
        // the delete and the upsert included
        body: {
          delete_by_filter: ['id', 'Lte', 2],
          patch_by_filter: { filters: ['g', 'Eq', 'a'], patch: { p: 1 } },
          upsert_rows: [{ id: 9, g: 'b' }],
        },
        error: /^patch_by_filter matched 4 documents/,
      },
    ],
    accepted: [
      {
        body: { delete_by_filter: ['g', 'Eq', 'a'], delete_by_filter_allow_partial: true },
        reply: { rows_deleted: 3, rows_remaining: true },
      },
      {
        body: { patch_by_filter: { filters: ['g', 'Eq', 'a'], patch: { p: 1 } }, patch_by_filter_allow_partial: true },
        reply: { rows_patched: 2, rows_remaining: true },
      },
      {
        // within the limit: no allow_partial needed, nothing remains
        body: { patch_by_filter: { filters: ['And', [['g', 'Eq', 'a'], ['p', 'Eq', null]]], patch: { p: 2 } } },
        reply: { rows_patched: 1, rows_remaining: false },
      },
      { body: { delete_by_filter: ['id', 'In', [7, 8, 9]] }, reply: { rows_deleted: 0, rows_remaining: false } },
    ],
    // allow_partial takes the first documents by id
    after: (docs) => expect(docs).toEqual([{ id: 4, g: 'a', p: 1 }, { id: 5, g: 'a', p: 1 }, { id: 6, g: 'a', p: 2 }]),
  },
  'by-filter-shape': {
    setup: [{ upsert_rows: [{ id: 1, g: 'a' }] }],
    refused: [
      { body: { patch_by_filter: { filters: ['g', 'Eq', 'a'] } }, error: /expected \{"filters": \[...\], "patch"/ },
      { body: { patch_by_filter: { patch: { x: 1 } } }, error: /^invalid patch_by_filter: expected/ },
      { body: { patch_by_filter: { filters: ['g', 'Eq', 'a'], patch: { id: 2 } } }, error: /cannot change "id"/ },
      {
        body: { patch_by_filter: { filters: ['g', 'Eq', 'a'], patch: { x: 1 }, limit: 5 } },
        error: /invalid patch_by_filter: unknown field "limit"/,
      },
      {
        body: { delete_by_filter: ['g', 'Eq', 'a'], delete_by_filter_allow_partial: 'yes' },
        error: /^invalid delete_by_filter_allow_partial: expected true or false, got "yes"/,
      },
      {
        body: { patch_by_filter: { filters: ['g', 'Eq', 'a'], patch: { x: 1 } }, patch_by_filter_allow_partial: 1 },
        error: /^invalid patch_by_filter_allow_partial/,
      },
    ],
    accepted: [
      {
        body: { patch_by_filter: { filters: ['g', 'Eq', 'a'], patch: { x: 1 } }, patch_by_filter_allow_partial: false },
        reply: { rows_patched: 1 },
      },
      {
        body: { delete_by_filter: ['g', 'Eq', 'zzz'], delete_by_filter_allow_partial: true },
        reply: { rows_deleted: 0 },
      },
    ],
    after: (docs) => expect(docs).toEqual([{ id: 1, g: 'a', x: 1 }]),
  },
  'patch-vector': {
    setup: [{ upsert_rows: [{ id: 1, vector: [1, 0], t: 'a' }], distance_metric: 'cosine_distance' }],
    refused: [
      { body: { patch_rows: [{ id: 1, vector: [0, 1] }] }, error: /^invalid patch of document 1: a vector cannot be/ },
      { body: { patch_columns: { id: [1], vector: [[0, 1]] } }, error: /a vector cannot be patched/ },
      {
        body: { patch_by_filter: { filters: ['t', 'Eq', 'a'], patch: { vector: [0, 1] } } },
        error: /^invalid patch_by_filter: a vector cannot be patched/,
      },
    ],
    // a patch of the attributes keeps the stored vector (how an unchanged embedding is never paid for twice)
    accepted: [
      { body: { patch_rows: [{ id: 1, t: 'b' }] }, reply: { rows_patched: 1 } },
      { body: { patch_by_filter: { filters: ['t', 'Eq', 'b'], patch: { u: 1 } } }, reply: { rows_patched: 1 } },
    ],
    after: (docs) => expect(docs).toEqual([{ id: 1, vector: [1, 0], t: 'b', u: 1 }]),
  },
  'namespace-name': {
    refused: [
      { namespace: 'has space', body: { upsert_rows: [{ id: 1 }] }, error: /invalid namespace name 'has space'/ },
      { namespace: 'a/b', body: { upsert_rows: [{ id: 1 }] }, error: /invalid namespace name 'a\/b'/ },
      { namespace: text(129, 'n'), body: { upsert_rows: [{ id: 1 }] }, error: /use 1 to 128 characters/ },
    ],
    accepted: [
      { namespace: 'Az09-_.x', body: { upsert_rows: [{ id: 1 }] } },
      { namespace: text(128, 'n'), body: { upsert_rows: [{ id: 1 }] } },
    ],
  },
}

/** What the SDK throws for a refused write: status and the service's error body. */
async function refusal(p: Promise<unknown>): Promise<{ status: number; body: { status?: string; error?: string } }> {
  try {
    await p
  } catch (e) {
    // deno-lint-ignore no-explicit-any
    const err = e as any
    return { status: err.status, body: err.error ?? {} }
  }
  throw new Error('expected the write to be refused')
}

describe('turbopuffer write rules (src/local/rules.ts)', () => {
  test('every case belongs to a rule of the table', () => {
    expect(Object.keys(CASES).sort()).toEqual(Object.keys(WRITE_RULES).sort())
  })

  for (const rule of Object.values(WRITE_RULES)) {
    test(`${rule.id}: refused with ${rule.status}, nearest writes accepted`, async () => {
      const c = CASES[rule.id as RuleId]
      if (!c) throw new Error(`rule ${rule.id} has no conformance case in test/local-rules.test.ts`)
      expect(c.refused.length).toBeGreaterThan(0)
      expect(c.accepted.length).toBeGreaterThan(0)
      const srv = c.small ? small : c.limited ? limited : server
      const client = c.small ? tpufSmall : c.limited ? tpufLimited : tpuf
      const own = `rule-${rule.id}`
      for (const body of c.setup ?? []) await client.namespace(own).write(body)
      for (const w of c.refused) {
        const name = w.namespace ?? own
        const before = srv.documents(name)
        const r = await refusal(client.namespace(name).write(w.body))
        const what = `${rule.id}: ${JSON.stringify(w.body).slice(0, 120)}`
        expect({ what, status: r.status, status_field: r.body.status }).toEqual({
          what,
          status: rule.status,
          status_field: 'error',
        })
        expect(r.body.error ?? '').toMatch(w.error)
        // refused whole: nothing of the request was applied
        expect(srv.documents(name)).toEqual(before)
      }
      for (const w of c.accepted) {
        const r = await client.namespace(w.namespace ?? own).write(w.body)
        expect(r.status).toBe('OK')
        if (w.reply) expect({ body: w.body, reply: r }).toMatchObject({ body: w.body, reply: w.reply })
      }
      c.after?.(srv.documents(own))
    })
  }

  test('the request limit defaults to 512 MiB and cannot be raised', async () => {
    expect(LIMITS.requestBytes).toBe(512 * 1024 * 1024)
    await expect(startLocalServer({ maxBodyBytes: LIMITS.requestBytes + 1 })).rejects.toThrow(/maxBodyBytes/)
  })

  test('big integers are answered exactly by queries', async () => {
    const ns = tpuf.namespace('rule-big-query')
    await ns.write({ upsert_rows: [{ id: big('18446744073709551615') as number, n: big('9007199254740993') }] })
    const res = await fetch(`${server.url}/v2/namespaces/rule-big-query/query`, {
      method: 'POST',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: '{"rank_by":["id","asc"],"top_k":10,"include_attributes":true,"filters":["n","Eq",9007199254740993]}',
    })
    expect(await res.text()).toContain('"id":18446744073709551615,"n":9007199254740993')
  })
})

test("README's local-server section lists every rule as the table words it", () => {
  const readme = readFileSync(join(import.meta.dirname!, '..', 'README.md'), 'utf8')
  for (const r of Object.values(WRITE_RULES)) {
    const line = `- \`${r.id}\` (${r.status}): ${r.description}`
    if (!readme.includes(line)) throw new Error(`README.md does not list the rule ${r.id} as: ${line}`)
  }
})

test('big integers survive a restart of a server with a data dir', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'puffgres-rules-'))
  try {
    const first = await startLocalServer({ dataDir: dir })
    const client = new Turbopuffer({ apiKey: 'k', baseURL: first.url, maxRetries: 0 })
    await client.namespace('big').write({
      upsert_rows: [{ id: big('18446744073709551615') as number, n: big('-9223372036854775808') }, { id: 1, n: 2 }],
    })
    await first.stop()
    const second = await startLocalServer({ dataDir: dir })
    try {
      expect(second.documents('big')).toEqual([{ id: 1, n: 2 }, {
        id: 18446744073709551615n,
        n: -9223372036854775808n,
      }])
    } finally {
      await second.stop()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
