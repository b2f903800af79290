// Failures to reach or use turbopuffer, in one line naming the URL (never the key) and saying what to check.
import { APIConnectionError, APIError } from '@turbopuffer/turbopuffer'

/** Undefined when the error is not about reaching turbopuffer or being allowed to (a rejected document, say). */
export function explainTurbopufferError(err: unknown, baseUrl: string): string | undefined {
  const where = `turbopuffer at ${baseUrl}`
  if (err instanceof APIConnectionError) {
    const cause = causeChain(err)
    const code = cause.map((c) => c.code).find(Boolean) ?? ''
    const text = cause.map((c) => c.message).filter(Boolean).join(': ')
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || /getaddrinfo|dns|lookup|resolve/i.test(text)) {
      return `cannot reach ${where}: host not found (DNS); check [turbopuffer] region (e.g. "gcp-us-central1") ` +
        `or base_url (TURBOPUFFER_REGION / TURBOPUFFER_BASE_URL)`
    }
    if (code === 'ECONNREFUSED' || /refused/i.test(text)) {
      return `cannot reach ${where}: connection refused; check [turbopuffer] base_url (TURBOPUFFER_BASE_URL) ` +
        `and that the server runs`
    }
    return `cannot reach ${where}: ${text || err.message}; check [turbopuffer] base_url / region and the network`
  }
  // the sink's TurbopufferRequestError for a 401/403 (it stops rather than retrying), or the SDK's own error
  const e = err as { name?: string; status?: number; fatal?: boolean }
  const refusedKey = err instanceof APIError || (e?.name === 'TurbopufferRequestError' && e.fatal)
  if (refusedKey && (e.status === 401 || e.status === 403)) {
    return `${where} refused the API key (HTTP ${e.status}); check [turbopuffer] api_key (TURBOPUFFER_API_KEY)` +
      ` and that the key belongs to this region's organization`
  }
  if (err instanceof APIError && err.status === 404 && !/namespace/i.test(err.message)) {
    return `${where} answered 404 Not Found; check [turbopuffer] region / base_url (TURBOPUFFER_REGION)`
  }
  return undefined
}

function causeChain(err: unknown): Array<{ code?: string; message?: string }> {
  const out: Array<{ code?: string; message?: string }> = []
  let e = err as { cause?: unknown; code?: string; message?: string } | undefined
  for (let i = 0; e && typeof e === 'object' && i < 6; i++) {
    out.push({ code: e.code, message: e.message })
    e = e.cause as typeof e
  }
  return out
}
