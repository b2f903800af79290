// Failures to reach or use PostgreSQL, in one line naming host, port, database and user (never the password) and
// saying what to check. Used by cli.ts's error handler and by `puffgres doctor`.

export interface PostgresTarget {
  host: string
  port: number
  database: string
  user: string
}

/** host, port, database and user of a connection string, as postgres.js reads it (defaults included). */
export function postgresTarget(url: string, env: Record<string, string | undefined> = {}): PostgresTarget {
  let u: URL | undefined
  try {
    u = new URL(url)
  } catch { /* not a URL: defaults */ }
  const user = decodeURIComponent(u?.username || '') || env.PGUSER || env.USER || 'postgres'
  const hostParam = u?.searchParams.get('host')
  return {
    host: u?.hostname?.replace(/^\[|\]$/g, '') || hostParam || env.PGHOST || 'localhost',
    port: Number(u?.port || env.PGPORT || 5432),
    database: decodeURIComponent((u?.pathname ?? '').replace(/^\//, '')) || env.PGDATABASE || user,
    user,
  }
}

/** `PostgreSQL at host:port (database "d", user "u")` */
export function describeTarget(t: PostgresTarget): string {
  return `PostgreSQL at ${t.host}:${t.port} (database "${t.database}", user "${t.user}")`
}

const TLS_CODES = /^(ERR_TLS|ERR_SSL|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO_|CERT_|ERR_INVALID_CERT|HOSTNAME_MISMATCH)/

/**
 * One line for an error that means "cannot connect to, or not allowed to use, this PostgreSQL"; undefined for any
 * other error (a failing query, say), which the caller reports as it is.
 */
export function explainPostgresError(err: unknown, url: string): string | undefined {
  if (!err || typeof err !== 'object') return undefined
  // the replication stream wraps the connection's error (ReplicationError, cause)
  const cause = (err as { cause?: unknown }).cause
  const inner = cause && typeof cause === 'object' ? explainPostgresError(cause, url) : undefined
  if (inner) return inner
  const e = err as { code?: unknown; message?: unknown; hostname?: string }
  const code = String(e.code ?? '')
  const message = String(e.message ?? '')
  const t = postgresTarget(url)
  const at = describeTarget(t)
  const where = 'the connection string ([postgres] connection_string / DATABASE_URL)'
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME' || /getaddrinfo/.test(message)) {
    return `cannot reach ${at}: host "${e.hostname ?? t.host}" not found (DNS); check the host in ${where}`
  }
  if (code === 'ECONNREFUSED') {
    return `cannot reach ${at}: connection refused; check that PostgreSQL runs there and listens on port ${t.port} ` +
      `(listen_addresses, firewall) and the host and port in ${where}`
  }
  if (code === 'CONNECT_TIMEOUT' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    return `cannot reach ${at}: no answer (${code}); check the host and port in ${where}, and that no firewall ` +
      `or network rule blocks the connection`
  }
  const closed = code === 'ECONNRESET' || code === 'CONNECTION_CLOSED' || code === 'CONNECTION_ENDED'
  if (closed && wantsTls(url)) {
    return `cannot reach ${at}: the TLS handshake failed (${code}), the server may not offer TLS; check sslmode in ` +
      `${where} (sslmode=disable for a server without TLS) and the server's ssl setting`
  }
  if (closed) {
    return `the connection to ${at} was closed (${code}); check the server's log (a restart?) and that port ` +
      `${t.port} is PostgreSQL's`
  }
  if (TLS_CODES.test(code) || /\b(SSL|TLS|certificate)\b/i.test(message) && !/^[0-9A-Z]{5}$/.test(code)) {
    return `cannot reach ${at}: TLS failed (${firstLine(message) || code}); check sslmode in ${where} ` +
      `(sslmode=require encrypts without checking the certificate) and the server's SSL settings`
  }
  if (code === '28P01') {
    return `${at} rejected the password for user "${t.user}"; check the user and password in ${where}`
  }
  if (code === '3D000') {
    return `database "${t.database}" does not exist on PostgreSQL at ${t.host}:${t.port}; create it or fix the ` +
      `database name in ${where}`
  }
  if ((code === '28000' || code === '42501') && /replication|walsender|WAL sender/i.test(message)) {
    return `user "${t.user}" may not use replication on ${at}: ${firstLine(message)}; grant it with ` +
      `ALTER ROLE "${t.user}" WITH REPLICATION (managed services: their replication role, e.g. rds_replication)`
  }
  if (code === '28000') {
    return `${at} refused the connection: ${firstLine(message)}; check pg_hba.conf (or the provider's allowed ` +
      `hosts) and the user in ${where}`
  }
  if (code === '53300') {
    return `${at} has no free connection slots (${firstLine(message)}); raise max_connections or close clients`
  }
  return undefined
}

/** sslmode=require/verify-ca/verify-full or ssl=true/require: postgres.js insists on TLS. */
function wantsTls(url: string): boolean {
  try {
    const q = new URL(url).searchParams
    return /^(require|verify-ca|verify-full)$/.test(q.get('sslmode') ?? '') ||
      /^(true|require)$/.test(q.get('ssl') ?? '')
  } catch {
    return false
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0].trim()
}

/**
 * Failures that retrying cannot fix (password, pg_hba, missing database, no replication privilege): the stream
 * stops with them instead of reconnecting forever. Looks through `cause` (the replication stream wraps errors).
 */
export function isPermanentPostgresFailure(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0; e && i < 4; e = e.cause as any, i++) {
    if (['28P01', '28000', '3D000'].includes(String(e.code))) return true
    if (e.code === '42501' && /replication|walsender|WAL sender/i.test(String((e as Error).message))) return true
  }
  return false
}
