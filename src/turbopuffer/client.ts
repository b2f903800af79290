// Builds the official SDK client from puffgres's `[turbopuffer]` settings.
import process from 'node:process'
import { Turbopuffer } from '@turbopuffer/turbopuffer'
import { restoreBigints } from './write-plan.ts'

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

/** The SDK serializes bodies with JSON.stringify, which cannot write a bigint: write-plan.ts marks them instead. */
const fetchWithBigints: typeof fetch = (input, init) => {
  if (init && typeof init.body === 'string') init = { ...init, body: restoreBigints(init.body) }
  return fetch(input, init)
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
