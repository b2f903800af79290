// Errors that say PostgreSQL cannot be reached right now (down, restarting, starting up, network), as opposed to
// errors that waiting does not fix. `run` waits through the first kind, even before it first streams.

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'EAI_AGAIN',
  // postgres.js
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
  'CONNECT_TIMEOUT',
])

// SQLSTATEs: admin_shutdown, crash_shutdown, cannot_connect_now (starting up, shutting down), too_many_connections
const SERVER_CODES = new Set(['57P01', '57P02', '57P03', '53300'])

/** True when `e` says PostgreSQL is unreachable for now (a retry later may succeed). */
export function isUnreachable(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code
  if (typeof code !== 'string') return false
  // class 08: connection exception
  return NETWORK_CODES.has(code) || SERVER_CODES.has(code) || code.startsWith('08')
}
