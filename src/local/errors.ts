// Errors the local server answers with, shaped like turbopuffer's: `{"status":"error","error":"…"}`.

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
    this.name = 'ApiError'
  }
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, message)
}

export function notFound(namespace: string): ApiError {
  return new ApiError(404, `namespace '${namespace}' was not found`)
}

/** How a value reads in an error message: short, JSON-like. */
export function show(value: unknown): string {
  let s: string
  try {
    s = JSON.stringify(value) ?? String(value)
  } catch {
    s = String(value)
  }
  return s.length > 80 ? s.slice(0, 77) + '...' : s
}
