// Builds the official SDK client from puffgres's `[turbopuffer]` settings.
import process from 'node:process'
import { Turbopuffer } from '@turbopuffer/turbopuffer'
import { BIGINT_MARK, restoreBigints } from './wire-ids.ts'

export interface TurbopufferConfig {
  api_key?: string
  base_url?: string
  region?: string
}

/** The client settings of a loaded config's `[turbopuffer]` section. */
export function clientConfig(t: { apiKey: string; baseUrl?: string; region?: string }): TurbopufferConfig {
  return { api_key: t.apiKey, base_url: t.baseUrl, region: t.region }
}

export interface ClientSettings {
  /** request timeout in ms; a timed-out request is retried like a network error */
  timeoutMs?: number
  env?: Record<string, string | undefined>
}

const DEFAULT_BASE_URL = 'https://{region}.turbopuffer.com'

/**
 * Resolves the base URL: `base_url` (or TURBOPUFFER_BASE_URL) wins; a `{region}` placeholder in it (or in the default
 * URL) is filled from `region` (or TURBOPUFFER_REGION). A region next to a base URL without the placeholder is
 * ignored rather than an error (the SDK would throw): TURBOPUFFER_REGION is often set machine-wide, while a base
 * URL such as the local server's is explicit.
 */
export function resolveBaseUrl(config: TurbopufferConfig, env: Record<string, string | undefined> = process.env) {
  const base = config.base_url || env.TURBOPUFFER_BASE_URL || DEFAULT_BASE_URL
  const region = config.region || env.TURBOPUFFER_REGION
  if (!base.includes('{region}')) return base
  if (!region) {
    throw new Error(
      'turbopuffer: no region: set [turbopuffer] region (or TURBOPUFFER_REGION), e.g. "gcp-us-central1", ' +
        'or [turbopuffer] base_url',
    )
  }
  if (!/^[A-Za-z0-9-]+$/.test(region)) {
    throw new Error(`turbopuffer: region "${region}" is not a region name (letters, digits and "-")`)
  }
  return base.replace('{region}', region)
}

/**
 * The SDK serializes bodies with JSON.stringify, which cannot write a bigint: write-plan.ts marks them instead. It
 * parses answers with JSON.parse, which rounds integers beyond 2^53: those are marked in the answer's text and
 * turned into bigints by `unmarkBigints` (uint ids and int attributes read back exactly).
 */
const fetchWithBigints: typeof fetch = async (input, init) => {
  if (init && typeof init.body === 'string') init = { ...init, body: restoreBigints(init.body) }
  const res = await fetch(input, init)
  if (!res.ok || !(res.headers.get('content-type') ?? '').includes('json')) return res
  const text = await res.text()
  return new Response(LONG_INTEGER.test(text) ? markBigIntegers(text) : text, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  })
}

/** An answer's JSON text parsed, integers beyond 2^53 marked first (see fetchWithBigints). */
export function parseWithBigints(text: string): unknown {
  return JSON.parse(LONG_INTEGER.test(text) ? markBigIntegers(text) : text)
}

/** an integer literal long enough to be beyond 2^53, where a JSON value can be */
const LONG_INTEGER = /[:,[]\s*-?\d{16,}\s*[,\]}]/

/** In a JSON text, integers beyond ±(2^53−1) outside strings become `"\u0000bigint:N"` (see BIGINT_MARK). */
export function markBigIntegers(json: string): string {
  let out = ''
  let from = 0
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i)
    if (c === 0x22) {
      // skip the string
      for (i++; i < json.length && json.charCodeAt(i) !== 0x22; i++) if (json.charCodeAt(i) === 0x5c) i++
      continue
    }
    if (c !== 0x2d && (c < 0x30 || c > 0x39)) continue
    let j = i + 1
    while (j < json.length && /[0-9.eE+-]/.test(json[j])) j++
    const token = json.slice(i, j)
    if (/^-?\d{16,}$/.test(token) && !Number.isSafeInteger(Number(token))) {
      out += json.slice(from, i) + JSON.stringify(BIGINT_MARK + token)
      from = j
    }
    i = j - 1
  }
  return from === 0 ? json : out + json.slice(from)
}

/** Marked integers (markBigIntegers) in a parsed answer's row → bigints, in place; returns the row. */
export function unmarkBigints<T extends Record<string, unknown>>(row: T): T {
  const unmark = (v: unknown): unknown =>
    typeof v === 'string' && v.startsWith(BIGINT_MARK)
      ? BigInt(v.slice(BIGINT_MARK.length))
      : Array.isArray(v)
      ? v.map(unmark)
      : v
  for (const k of Object.keys(row)) (row as Record<string, unknown>)[k] = unmark(row[k])
  return row
}

export function createClient(config: TurbopufferConfig, settings: ClientSettings = {}): Turbopuffer {
  const env = settings.env ?? process.env
  const apiKey = config.api_key || env.TURBOPUFFER_API_KEY
  if (!apiKey) throw new Error('turbopuffer: no API key: set [turbopuffer] api_key (or TURBOPUFFER_API_KEY)')
  const baseURL = resolveBaseUrl(config, env)
  try {
    new URL(baseURL)
  } catch {
    throw new Error(`turbopuffer: base_url "${baseURL}" is not a URL`)
  }
  return new Turbopuffer({
    apiKey,
    baseURL,
    // region is already part of baseURL; passing null stops the SDK from reading TURBOPUFFER_REGION itself
    region: null,
    // the sink retries without a limit and with its own backoff; SDK retries would multiply with ours
    maxRetries: 0,
    timeout: settings.timeoutMs ?? 120_000,
    // our logger reports retries and failures; the SDK's console output would duplicate them
    logLevel: 'off',
    fetch: fetchWithBigints,
  })
}
