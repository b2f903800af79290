// The HTTP face of the local server: routing, auth, body limits and decoding, error bodies like turbopuffer's.
import { ApiError, badRequest, show } from './errors.ts'
import { parseJson, toJson } from './json.ts'
import { violation } from './rules.ts'
import { checkFailRate, checkLatency, type Faults, type FaultScope, type LocalServerStats } from './faults.ts'
import { checkJitter, drawDelayMs } from './latency.ts'
import { newMeta } from './namespace.ts'
import { runQuery } from './query.ts'
import { checkNamespaceName, type Store } from './store.ts'
import { applySchema, planWrite } from './write.ts'
import type { WriteBudget } from '../turbopuffer/write-budget.ts'
import type { ByFilterLimits } from './by-filter.ts'

export interface ApiOptions {
  /** when set, only this key is accepted; otherwise any non-empty bearer key is */
  apiKey?: string
  maxBodyBytes: number
  /** documents one delete_by_filter / patch_by_filter may change (src/local/by-filter.ts) */
  byFilterLimits?: ByFilterLimits
  /** turbopuffer's per-namespace write limit, emulated: writes beyond it get 429 with retry-after-ms (none: off) */
  budget?: WriteBudget
}

type Handler = (req: Request) => Promise<Response>

const JSON_HEADERS = { 'content-type': 'application/json' }

function reply(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(toJson(body), { status, headers: { ...JSON_HEADERS, ...headers } })
}

function errorReply(e: ApiError): Response {
  return reply(e.status, { status: 'error', error: e.message }, e.headers)
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export function createHandler(store: Store, faults: Faults, stats: LocalServerStats, opts: ApiOptions): Handler {
  const count = (res: Response) => {
    stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1
    return res
  }
  return async (req) => {
    const url = new URL(req.url)
    if (url.pathname.startsWith('/_admin/')) {
      try {
        return await admin(req, url.pathname, faults, stats)
      } catch (e) {
        return errorReply(e instanceof ApiError ? e : badRequest((e as Error).message))
      }
    }
    stats.requests++
    try {
      const delay = drawDelayMs(faults.latencyMs, faults.jitterMs)
      if (delay > 0) await sleep(delay)
      return count(await api(req, url))
    } catch (e) {
      if (e instanceof ApiError) return count(errorReply(e))
      console.error('local turbopuffer server: internal error:', e)
      return count(errorReply(new ApiError(500, `internal error: ${(e as Error).message}`)))
    }
  }

  async function api(req: Request, url: URL): Promise<Response> {
    const auth = req.headers.get('authorization') ?? ''
    const key = /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim()
    if (!key) throw new ApiError(401, 'missing API key: send "Authorization: Bearer <key>"')
    if (opts.apiKey !== undefined && key !== opts.apiKey) throw new ApiError(401, 'invalid API key')

    const method = req.method
    const path = url.pathname
    if (path === '/v1/namespaces') {
      allow(method, 'GET')
      return reply(200, listNamespaces(url.searchParams))
    }
    const m = /^\/v([12])\/namespaces\/([^/]+)(?:\/([a-z_]+))?$/.exec(path)
    if (!m) throw new ApiError(404, `unknown endpoint ${method} ${path}`)
    const [, version, rawName, action] = m
    let name: string
    try {
      name = decodeURIComponent(rawName)
    } catch {
      throw badRequest(`invalid namespace name ${show(rawName)}`)
    }
    checkNamespaceName(name)
    const route = `v${version}/${action ?? ''}`

    if (route === 'v2/') {
      if (method === 'DELETE') {
        store.drop(name)
        return reply(200, { status: 'OK' })
      }
      allow(method, 'POST')
      stats.writes++
      const { body, bytes } = await readJson(req)
      const wait = opts.budget?.admit(name, bytes) ?? 0
      if (wait > 0) {
        throw new ApiError(
          429,
          `write rate limit exceeded for namespace ${show(name)}: at most ` +
            `${opts.budget!.bytesPerSecond / 1e6} MB/s (retry after ${wait} ms)`,
          { 'retry-after-ms': String(wait) },
        )
      }
      const injected = faults.take(true)
      if (injected) {
        stats.injectedFailures++
        throw injected
      }
      const plan = planWrite(store.get(name), body, bytes, (n) => store.get(n), opts.byFilterLimits)
      store.commit(name, plan.meta, plan.put, plan.deleted)
      stats.writesAcknowledged++
      stats.rowsUpserted += plan.response.rows_upserted as number
      stats.rowsPatched += plan.response.rows_patched as number
      stats.rowsDeleted += plan.response.rows_deleted as number
      return reply(200, plan.response)
    }
    const injected = faults.take(false)
    if (injected) {
      stats.injectedFailures++
      throw injected
    }
    switch (route) {
      case 'v2/query': {
        allow(method, 'POST')
        stats.queries++
        const { body } = await readJson(req)
        return reply(200, runQuery(store.require(name), body))
      }
      case 'v2/metadata':
        allow(method, 'GET')
        return reply(200, metadata(name))
      case 'v1/metadata':
        // pinning settings have no meaning locally; accept them and answer with the metadata
        allow(method, 'PATCH')
        await readJson(req)
        return reply(200, metadata(name))
      case 'v1/schema': {
        if (method === 'GET') return reply(200, store.require(name).describeSchema())
        allow(method, 'POST')
        const { body } = await readJson(req)
        const ns = store.get(name)
        const meta = ns ? structuredClone(ns.meta) : newMeta()
        applySchema(meta, body)
        meta.updatedAt = new Date().toISOString()
        return reply(200, store.commit(name, meta, [], []).describeSchema())
      }
      case 'v1/hint_cache_warm':
        allow(method, 'GET')
        store.require(name)
        return reply(200, { status: 'ACCEPTED', message: 'the local server keeps everything in memory' })
      default:
        throw new ApiError(404, `unknown endpoint ${method} ${path}`)
    }
  }

  function metadata(name: string) {
    const ns = store.require(name)
    let bytes = 0
    for (const d of ns.docs.values()) bytes += JSON.stringify(d).length
    return {
      approx_logical_bytes: bytes,
      approx_row_count: ns.docs.size,
      created_at: ns.meta.createdAt,
      updated_at: ns.meta.updatedAt,
      encryption: { mode: 'default' },
      index: { status: 'up-to-date' },
      schema: ns.describeSchema(),
    }
  }

  function listNamespaces(params: URLSearchParams) {
    const prefix = params.get('prefix') ?? ''
    const cursor = params.get('cursor') ?? ''
    const sizeText = params.get('page_size')
    const size = sizeText === null ? 100 : Number(sizeText)
    if (!Number.isInteger(size) || size < 1 || size > 1000) {
      throw badRequest(`invalid page_size ${show(sizeText)}: expected an integer from 1 to 1000`)
    }
    // names() is sorted, so the cursor is simply the last name of the previous page; a page costs a binary search
    // and its own length, not a pass over every namespace
    const names = store.names()
    const from = cursor > prefix ? cursor : prefix
    let lo = 0
    let hi = names.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (names[mid] < from || (names[mid] === cursor && cursor !== '')) lo = mid + 1
      else hi = mid
    }
    const page: string[] = []
    let more = false
    for (let i = lo; i < names.length && names[i].startsWith(prefix); i++) {
      if (page.length === size) {
        more = true
        break
      }
      page.push(names[i])
    }
    const out: Record<string, unknown> = { namespaces: page.map((id) => ({ id })) }
    if (more) out.next_cursor = page[page.length - 1]
    return out
  }

  async function readJson(req: Request): Promise<{ body: Record<string, unknown>; bytes: number }> {
    const raw = await readLimited(req, opts.maxBodyBytes)
    let text: string
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(raw)
    } catch {
      throw new ApiError(422, 'failed to decode request body: not valid UTF-8')
    }
    let body: unknown
    try {
      body = parseJson(text)
    } catch (e) {
      throw new ApiError(422, `failed to decode request body as JSON: ${(e as Error).message}`)
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw badRequest('invalid request body: expected a JSON object')
    }
    return { body: body as Record<string, unknown>, bytes: raw.length }
  }
}

function allow(method: string, expected: string) {
  if (method !== expected) throw new ApiError(405, `method ${method} not allowed here (expected ${expected})`)
}

function tooLarge(limit: number): ApiError {
  return violation('request-size', `request body too large: the limit is ${limit} bytes`)
}

/** Reads the body (gunzipping `content-encoding: gzip`), refusing more than `limit` bytes either way. */
async function readLimited(req: Request, limit: number): Promise<Uint8Array> {
  const declared = Number(req.headers.get('content-length') ?? NaN)
  if (declared > limit) throw tooLarge(limit)
  if (!req.body) return new Uint8Array(0)
  const encoding = (req.headers.get('content-encoding') ?? 'identity').trim().toLowerCase()
  if (encoding === 'identity' && Number.isInteger(declared)) {
    // a declared length within the limit: the body cannot be longer, read at once (a stream reader costs more than
    // the rest of a small write: many tenants, many small requests)
    try {
      return new Uint8Array(await req.arrayBuffer())
    } catch (e) {
      throw badRequest(`could not read the request body: ${e}`)
    }
  }
  let stream: ReadableStream<Uint8Array> = req.body
  if (encoding === 'gzip') {
    stream = stream.pipeThrough(new DecompressionStream('gzip') as unknown as TransformStream<Uint8Array, Uint8Array>)
  } else if (encoding !== 'identity') throw badRequest(`unsupported content-encoding ${show(encoding)}`)
  const chunks: Uint8Array[] = []
  let total = 0
  const reader = stream.getReader()
  try {
    while (true) {
      const { done, value } = await reader.read()
      if (done) break
      total += value.length
      if (total > limit) {
        reader.cancel().catch(() => {})
        throw tooLarge(limit)
      }
      chunks.push(value)
    }
  } catch (e) {
    if (e instanceof ApiError) throw e
    throw badRequest(`could not read the request body${encoding === 'gzip' ? ' (bad gzip data?)' : ''}: ${e}`)
  }
  const out = new Uint8Array(total)
  let off = 0
  for (const c of chunks) {
    out.set(c, off)
    off += c.length
  }
  return out
}

async function admin(req: Request, path: string, faults: Faults, stats: LocalServerStats): Promise<Response> {
  const body = req.method === 'POST' ? await req.json().catch(() => ({})) as Record<string, any> : {}
  switch (`${req.method} ${path}`) {
    case 'GET /_admin/stats':
      return reply(200, stats)
    case 'POST /_admin/fail-next':
      faults.failNext(body.count ?? 1, body.status ?? 500, body.retry_after_ms, (body.scope ?? 'writes') as FaultScope)
      return reply(200, { status: 'OK' })
    case 'POST /_admin/latency':
      faults.latencyMs = checkLatency(body.ms)
      if (body.jitter_ms !== undefined) faults.jitterMs = checkJitter(body.jitter_ms)
      return reply(200, { status: 'OK' })
    case 'POST /_admin/fail-rate':
      faults.failRate = checkFailRate(body.rate)
      return reply(200, { status: 'OK' })
    default:
      throw new ApiError(404, `unknown admin endpoint ${req.method} ${path}`)
  }
}
