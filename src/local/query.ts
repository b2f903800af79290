// Queries: filter (narrowed by an equality lookup when possible), rank (exact vector distance, attributes, id), project,
// aggregate.
import { compareScalars } from './compare.ts'
import { badRequest, show } from './errors.ts'
import { candidateKeys } from './candidates.ts'
import { compileFilter } from './filter.ts'
import { compareIds } from './ids.ts'
import type { Doc, Namespace } from './namespace.ts'
import { orderKey } from './schema.ts'
import { distance, encodeVectorBase64, parseVector } from './vectors.ts'

export const MAX_TOP_K = 10_000

const QUERY_KEYS = new Set([
  'aggregate_by',
  'compute_attributes',
  'consistency',
  'distance_metric',
  'exclude_attributes',
  'filters',
  'group_by',
  'include_attributes',
  'limit',
  'rank_by',
  'top_k',
  'vector_encoding',
])
const MULTI_KEYS = new Set(['queries', 'consistency', 'rerank_by', 'vector_encoding'])

type Row = Record<string, unknown>

/** Runs a query body (single, or multi-query with `queries`) and returns the response body. */
export function runQuery(ns: Namespace, body: Record<string, unknown>): Record<string, unknown> {
  const started = performance.now()
  let out: Record<string, unknown>
  if ('queries' in body) {
    checkKeys(body, MULTI_KEYS, 'multi-query')
    if (body.rerank_by !== undefined) throw badRequest('rerank_by is not supported by the local turbopuffer server')
    if (!Array.isArray(body.queries) || body.queries.length === 0) {
      throw badRequest('invalid multi-query: "queries" must be a non-empty list')
    }
    if (body.queries.length > 16) throw badRequest('invalid multi-query: at most 16 queries')
    checkConsistency(body.consistency)
    const results = body.queries.map((q) => {
      if (typeof q !== 'object' || q === null || Array.isArray(q)) throw badRequest('invalid query: expected an object')
      if ('consistency' in q || 'vector_encoding' in q) {
        throw badRequest('invalid multi-query: consistency and vector_encoding go on the outer request')
      }
      return runOne(ns, { ...q, vector_encoding: body.vector_encoding } as Record<string, unknown>)
    })
    out = { results }
  } else {
    out = runOne(ns, body)
  }
  const ms = performance.now() - started
  return {
    ...out,
    billing: { billable_logical_bytes_queried: 0, billable_logical_bytes_returned: 0 },
    performance: {
      approx_namespace_size: ns.docs.size,
      cache_hit_ratio: 1,
      cache_temperature: 'hot',
      exhaustive_search_count: ns.docs.size,
      query_execution_ms: ms,
      server_total_ms: ms,
    },
  }
}

function checkKeys(body: Record<string, unknown>, allowed: Set<string>, what: string) {
  for (const k of Object.keys(body)) {
    if (!allowed.has(k)) throw badRequest(`invalid ${what}: unknown field ${show(k)}`)
  }
}

function checkConsistency(c: unknown) {
  if (c === undefined) return
  const level = (c as { level?: unknown })?.level
  if (typeof c !== 'object' || c === null || (level !== undefined && level !== 'strong' && level !== 'eventual')) {
    throw badRequest(`invalid consistency ${show(c)}: expected {"level": "strong"|"eventual"}`)
  }
}

function runOne(ns: Namespace, q: Record<string, unknown>): Record<string, unknown> {
  checkKeys(q, QUERY_KEYS, 'query')
  checkConsistency(q.consistency)
  if (q.group_by !== undefined) throw badRequest('group_by is not supported by the local turbopuffer server')
  if (q.compute_attributes !== undefined) {
    throw badRequest('compute_attributes is not supported by the local turbopuffer server')
  }
  const encoding = q.vector_encoding ?? 'float'
  if (encoding !== 'float' && encoding !== 'base64') {
    throw badRequest(`invalid vector_encoding ${show(encoding)}: expected "float" or "base64"`)
  }
  let docs: Doc[]
  if (q.filters !== undefined && q.filters !== null) {
    const pred = compileFilter(q.filters, ns.meta.schema, ns.meta.idType)
    // an equality lookup first when the filter allows one (src/local/candidates.ts)
    const keys = candidateKeys(q.filters, ns, ns.meta.schema)
    docs = keys ? [...keys].map((k) => ns.docs.get(k)!).sort((a, b) => compareIds(a.id, b.id)) : ns.sorted()
    docs = docs.filter((d) => pred(d, null))
  } else docs = ns.sorted()
  const out: Record<string, unknown> = {}
  if (q.aggregate_by !== undefined) out.aggregations = aggregate(docs, q.aggregate_by)
  if (q.rank_by === undefined) {
    if (q.aggregate_by === undefined) throw badRequest('invalid query: rank_by is required unless aggregate_by is set')
    return out
  }
  const limit = topK(q)
  const ranked = rank(ns, docs, q.rank_by, q.distance_metric)
  const project = projector(q.include_attributes, q.exclude_attributes, encoding === 'base64')
  out.rows = ranked.slice(0, limit).map(({ doc, dist }) => {
    const row = project(doc)
    if (dist !== undefined) row.$dist = dist
    return row
  })
  return out
}

function topK(q: Record<string, unknown>): number {
  let k: unknown = q.top_k ?? 10
  if (q.limit !== undefined) {
    if (q.top_k !== undefined) throw badRequest('invalid query: give either top_k or limit, not both')
    if (typeof q.limit === 'object' && q.limit !== null) {
      const l = q.limit as { total?: unknown; per?: unknown }
      if (l.per !== undefined) throw badRequest('limit.per is not supported by the local turbopuffer server')
      k = l.total
    } else k = q.limit
  }
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k > MAX_TOP_K) {
    throw badRequest(`invalid limit ${show(k)}: expected an integer from 0 to ${MAX_TOP_K}`)
  }
  return k
}

interface Ranked {
  doc: Doc
  dist?: number
}

function rank(ns: Namespace, docs: Doc[], rankBy: unknown, metricParam: unknown): Ranked[] {
  if (!Array.isArray(rankBy) || rankBy.length < 2) throw badRequest(`invalid rank_by ${show(rankBy)}`)
  if (rankBy[1] === 'ANN' || rankBy[1] === 'kNN') {
    if (rankBy[0] !== 'vector') {
      throw badRequest(`invalid rank_by: only the "vector" attribute can be ranked by ${rankBy[1]} here`)
    }
    if (Array.isArray(rankBy[2]) && Array.isArray(rankBy[2][0])) {
      throw badRequest('multi-vector rank_by is not supported by the local turbopuffer server')
    }
    const target = parseVector(rankBy[2], 'query vector')
    if (ns.meta.dims === undefined) throw badRequest('invalid rank_by: this namespace has no vectors')
    if (target.length !== ns.meta.dims) {
      throw badRequest(`invalid query vector: ${target.length} dimensions, the namespace has ${ns.meta.dims}`)
    }
    if (metricParam !== undefined && metricParam !== ns.meta.distanceMetric) {
      throw badRequest(`invalid distance_metric ${show(metricParam)}: the namespace uses ${ns.meta.distanceMetric}`)
    }
    const metric = ns.meta.distanceMetric ?? 'cosine_distance'
    return docs
      .filter((d) => d.vector !== undefined)
      .map((doc) => ({ doc, dist: distance(metric, target, doc.vector!) }))
      .sort((a, b) => a.dist - b.dist || compareIds(a.doc.id, b.doc.id))
  }
  const keys: Array<[string, 1 | -1]> = []
  const orders = Array.isArray(rankBy[0]) ? rankBy : [rankBy]
  for (const o of orders) {
    if (!Array.isArray(o) || o.length !== 2 || typeof o[0] !== 'string' || (o[1] !== 'asc' && o[1] !== 'desc')) {
      if (Array.isArray(o) && (o[1] === 'BM25' || ['Sum', 'Max', 'Product'].includes(o[0]))) {
        throw badRequest('full-text rank_by (BM25) is not supported by the local turbopuffer server')
      }
      throw badRequest(`invalid rank_by ${show(rankBy)}: expected [attribute, "asc"|"desc"] or a vector ANN`)
    }
    if (o[0] === 'vector') throw badRequest('invalid rank_by: vectors cannot be ordered by value')
    keys.push([o[0], o[1] === 'asc' ? 1 : -1])
  }
  // `docs` is in id order and the sort is stable, so ties stay ordered by id.
  return docs.map((doc) => ({ doc })).sort((a, b) => {
    for (const [attr, dir] of keys) {
      const c = compareAttr(ns, attr, a.doc, b.doc)
      if (c !== 0) return c * dir
    }
    return 0
  })
}

/** Orders two documents by one attribute; null (missing) sorts before every value. */
function compareAttr(ns: Namespace, attr: string, a: Doc, b: Doc): number {
  if (attr === 'id') return compareIds(a.id, b.id)
  const type = Object.hasOwn(ns.meta.schema, attr) ? ns.meta.schema[attr].type : undefined
  const x = Object.hasOwn(a, attr) ? a[attr] ?? null : null
  const y = Object.hasOwn(b, attr) ? b[attr] ?? null : null
  if (x === null || y === null) return x === y ? 0 : x === null ? -1 : 1
  const c = compareScalars(orderKey(type, x), orderKey(type, y))
  return Number.isNaN(c) ? 0 : c
}

function projector(include: unknown, exclude: unknown, base64: boolean): (doc: Doc) => Row {
  const isList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string')
  if (include !== undefined && typeof include !== 'boolean' && !isList(include)) {
    throw badRequest(`invalid include_attributes ${show(include)}: expected true, false or a list of names`)
  }
  if (exclude !== undefined && !isList(exclude)) {
    throw badRequest(`invalid exclude_attributes ${show(exclude)}: expected a list of names`)
  }
  const vec = (v: unknown) => (base64 && Array.isArray(v) ? encodeVectorBase64(v) : v)
  return (doc) => {
    const row: Row = { id: doc.id }
    let names: string[]
    if (isList(include)) names = include
    else if (include === true || exclude !== undefined) names = Object.keys(doc)
    else names = []
    for (const name of names) {
      if (name === 'id' || (exclude as string[] | undefined)?.includes(name)) continue
      if (Object.hasOwn(doc, name)) row[name] = name === 'vector' ? vec(doc[name]) : doc[name]
    }
    return row
  }
}

function aggregate(docs: Doc[], spec: unknown): Record<string, unknown> {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw badRequest(`invalid aggregate_by ${show(spec)}: expected {"label": ["Count"]}`)
  }
  const out: Record<string, unknown> = {}
  for (const [label, agg] of Object.entries(spec)) {
    if (!Array.isArray(agg)) throw badRequest(`invalid aggregate_by.${label}: ${show(agg)}`)
    if (agg[0] === 'Count' && agg.length === 1) out[label] = docs.length
    else if (agg[0] === 'Count' && typeof agg[1] === 'string') {
      out[label] = docs.filter((d) => Object.hasOwn(d, agg[1]) && d[agg[1]] !== null).length
    } else if (agg[0] === 'Sum' && typeof agg[1] === 'string') {
      out[label] = docs.reduce((s, d) => s + (typeof d[agg[1]] === 'number' ? d[agg[1]] as number : 0), 0)
    } else throw badRequest(`invalid aggregate_by.${label}: ${show(agg)} (supported: Count, Sum)`)
  }
  return out
}
