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
import { parseWithBigints } from './client.ts'
import { restoreBigints } from './wire-ids.ts'

/**
 * Write requests a sink sends at once (sink.ts). Bun's fetch sends 256 requests at once and queues the rest, their
 * timeouts running, unless BUN_CONFIG_MAX_HTTP_REQUESTS (read when the process starts) allows more: on Bun the sink
 * keeps to that number (the npm launcher and the Homebrew formula set 1,024). Deno's fetch has no such limit: 1,024.
 * Over 1,000 tenants, 1,024 drained a backlog about a fifth faster than 256 (README "Performance").
 */
export const WRITES_IN_FLIGHT = { bun: 256, other: 1024 }

export function defaultWritesInFlight(env: Record<string, string | undefined>, bun = 'Bun' in globalThis): number {
  if (!bun) return WRITES_IN_FLIGHT.other
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
  apiKey: string
  timeoutMs: number
}

/** Where a client sends its requests, and with which key and timeout. */
export function writeEndpoint(client: Turbopuffer): WriteEndpoint {
  return { baseURL: client.baseURL.replace(/\/+$/, ''), apiKey: client.apiKey, timeoutMs: client.timeout }
}

/**
 * `POST /v2/namespaces/{namespace}` with `body` (JSON text, bigints marked: wire-ids.ts). Rejects as the SDK does: an APIError for an error status, an
 * APIConnectionTimeoutError after `timeoutMs`, an APIConnectionError for a network failure; aborts with `signal`,
 * which keeps no listener afterwards.
 */
export async function postWrite(
  endpoint: WriteEndpoint,
  namespace: string,
  body: string,
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
    let res: Response
    let text: string
    try {
      res = await fetch(`${endpoint.baseURL}/v2/namespaces/${namespace}`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${endpoint.apiKey}`,
          'content-type': 'application/json',
          accept: 'application/json',
        },
        body: restoreBigints(body),
        signal: ctl.signal,
      })
      text = await res.text()
    } catch (err) {
      // as the SDK reports them: the caller's abort as is, a timeout or a network failure as a connection error
      if (signal?.aborted) throw err
      if (timedOut) throw new APIConnectionTimeoutError()
      throw new APIConnectionError({ cause: err instanceof Error ? err : new Error(String(err)) })
    }
    if (!res.ok) {
      // as the SDK builds it: the parsed JSON error, else the text as the message
      const json = safeJson(text)
      throw APIError.generate(res.status, json, json === undefined ? text : undefined, res.headers)
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
