// One write request sent with fetch itself rather than through the SDK. With a namespace per tenant a batch is one
// request per namespace it touches (thousands a second under a backlog), and the SDK's work per request (merging
// options, building headers, formatting a debug record that is never logged, copying the answer into a new
// Response to parse it) was about a third of `run`'s JavaScript time (scripts/bench/tenants.ts). The request, the
// errors (the SDK's APIError, so that retry.ts classifies them alike) and the bigint handling are the same.
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  type NamespaceWriteResponse,
  type Turbopuffer,
} from '@turbopuffer/turbopuffer'
import process from 'node:process'
import { parseWithBigints } from './client.ts'
import { KeepAlivePool } from './keep-alive.ts'
import { restoreBigints } from './wire-ids.ts'

/**
 * Write requests a sink sends at once (sink.ts): 1,024. Only writes through Bun's fetch (a proxy, PUFFGRES_HTTP=fetch)
 * keep to its limit: 256 at once, the rest queued with their timeouts running, unless BUN_CONFIG_MAX_HTTP_REQUESTS
 * (read when the process starts) allows more (the npm launcher and the Homebrew formula set 1,024). Over 1,000
 * tenants, 1,024 drained a backlog about a fifth faster than 256 (README "Performance").
 */
export const WRITES_IN_FLIGHT = { bun: 256, other: 1024 }

export function defaultWritesInFlight(
  env: Record<string, string | undefined>,
  bun = 'Bun' in globalThis,
  ownConnections = false,
): number {
  // writes over keep-alive.ts's connections are not fetch's: its limit does not hold them back
  if (!bun || ownConnections) return WRITES_IN_FLIGHT.other
  return bunMaxHttpRequests(env) ?? WRITES_IN_FLIGHT.bun
}

/**
 * The requests Bun's fetch sends at once as Bun itself reads BUN_CONFIG_MAX_HTTP_REQUESTS (a decimal integer from 1
 * to 65535, a leading `+` and `_` between digits allowed); undefined when unset or refused, and then Bun keeps its
 * 256. Read otherwise (Number: "70000", "1e3", " 1024"), the sink would send more at once than Bun does, and the rest
 * would wait in Bun's queue with their timeouts running.
 */
export function bunMaxHttpRequests(env: Record<string, string | undefined>): number | undefined {
  const text = env.BUN_CONFIG_MAX_HTTP_REQUESTS
  if (text === undefined || !/^\+?\d(?:[\d_]*\d)?$/.test(text)) return undefined
  const n = Number(text.replace(/[+_]/g, ''))
  return n >= 1 && n <= 65535 ? n : undefined
}

export interface WriteEndpoint {
  /** the service's base URL, without a trailing slash */
  baseURL: string
  timeoutMs: number
  /** every write's headers (writeHeaders), made once */
  headers: Record<string, string>
  /** on Bun: connections kept open between writes (keep-alive.ts), else fetch's own */
  pool?: KeepAlivePool
}

/**
 * Where a client sends its requests, with which headers (its key) and timeout. On Bun the writes keep their own
 * connections open (keep-alive.ts: Bun's fetch keeps 64 idle; the sink sets the pool's size to its writes in flight),
 * unless ownConnections says no.
 */
export function writeEndpoint(
  client: Turbopuffer,
  env: Record<string, string | undefined> = process.env,
  bun = 'Bun' in globalThis,
): WriteEndpoint {
  const baseURL = client.baseURL.replace(/\/+$/, '')
  const endpoint: WriteEndpoint = {
    baseURL,
    timeoutMs: client.timeout,
    headers: writeHeaders(client.apiKey),
  }
  if (bun && ownConnections(baseURL, env)) endpoint.pool = new KeepAlivePool(baseURL, WRITES_IN_FLIGHT.other)
  return endpoint
}

/** The headers of a write request. */
export function writeHeaders(apiKey: string): Record<string, string> {
  return { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', accept: 'application/json' }
}

/** Whether writes to `baseURL` may go over keep-alive.ts's connections: no proxy, not turned off, a bare origin. */
export function ownConnections(baseURL: string, env: Record<string, string | undefined>): boolean {
  if (env.PUFFGRES_HTTP === 'fetch') return false
  const proxy = ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY'].some((k) => env[k] || env[k.toLowerCase()])
  if (proxy) return false
  try {
    const url = new URL(baseURL)
    return (url.protocol === 'http:' || url.protocol === 'https:') && !url.username && !url.password &&
      (url.pathname === '/' || url.pathname === '')
  } catch {
    return false
  }
}

/**
 * `POST /v2/namespaces/{namespace}` with `body` (JSON text, or the pieces of it in order: write-plan.ts
 * writeBodyParts; bigints marked: wire-ids.ts). Rejects as the SDK does: an APIError for an error status, an
 * APIConnectionTimeoutError after `timeoutMs`, an APIConnectionError for a network failure; aborts with `signal`,
 * which keeps no listener afterwards.
 */
export async function postWrite(
  endpoint: WriteEndpoint,
  namespace: string,
  body: string | readonly string[],
  signal?: AbortSignal,
): Promise<NamespaceWriteResponse> {
  const ctl = new AbortController()
  const onAbort = () => ctl.abort(signal!.reason)
  if (signal?.aborted) ctl.abort(signal.reason)
  signal?.addEventListener('abort', onAbort, { once: true })
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    ctl.abort()
  }, endpoint.timeoutMs)
  try {
    let res: { ok: boolean; status: number; headers: Headers | Record<string, string> }
    let text: string
    const headers = endpoint.headers
    try {
      const path = `/v2/namespaces/${namespace}`
      if (endpoint.pool) {
        const sent = typeof body === 'string' ? restoreBigints(body) : body.map(restoreBigints)
        const a = await endpoint.pool.request('POST', path, headers, sent, ctl.signal)
        res = { ok: a.status >= 200 && a.status < 300, status: a.status, headers: a.headers }
        text = a.text
      } else {
        const r = await fetch(`${endpoint.baseURL}${path}`, {
          method: 'POST',
          headers,
          body: restoreBigints(typeof body === 'string' ? body : body.join('')),
          signal: ctl.signal,
        })
        res = r
        text = await r.text()
      }
    } catch (err) {
      // as the SDK reports them: the caller's abort as is, a timeout or a network failure as a connection error
      if (signal?.aborted) throw err
      if (timedOut) throw new APIConnectionTimeoutError()
      throw new APIConnectionError({ cause: err instanceof Error ? err : new Error(String(err)) })
    }
    if (!res.ok) {
      // as the SDK builds it: the parsed JSON error, else the text as the message
      const json = safeJson(text)
      const headers = res.headers instanceof Headers ? res.headers : new Headers(res.headers)
      throw APIError.generate(res.status, json, json === undefined ? text : undefined, headers)
    }
    return (text ? parseWithBigints(text) : {}) as NamespaceWriteResponse
  } finally {
    clearTimeout(timer)
    signal?.removeEventListener('abort', onAbort)
  }
}

function safeJson(text: string): object | undefined {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
