// Reading values of a SQL_ASCII database as the bytes it holds. Such a database stores whatever bytes it is given;
// a session with client_encoding UTF8 (the pool's) fails a whole query or COPY on the first value that is not UTF-8
// ("invalid byte sequence for encoding"), so one bad row would fail every read of its page or batch. On a session set
// to SQL_ASCII nothing is converted: the readers decode each value as UTF-8 themselves and fail that value alone.
import type postgres from 'postgres'

const known = new WeakMap<postgres.Sql, Promise<boolean>>()

/** Whether the database is SQL_ASCII (asked once per pool). */
export function isSqlAscii(sql: postgres.Sql): Promise<boolean> {
  let ascii = known.get(sql)
  if (!ascii) {
    ascii = sql`SELECT current_setting('server_encoding') = 'SQL_ASCII' AS ascii`.then(([r]) => r.ascii as boolean)
    // a failed question is asked again next time
    ascii.catch(() => known.delete(sql))
    known.set(sql, ascii)
  }
  return ascii
}

/**
 * Runs `fn` on a reserved connection whose values arrive as the database's bytes: in a SQL_ASCII database the
 * session is set to client_encoding SQL_ASCII for the call, elsewhere it is left alone (UTF8 is already raw).
 */
export async function reserveRawBytes<T>(
  sql: postgres.Sql,
  fn: (conn: postgres.ReservedSql) => Promise<T>,
  /** isSqlAscii(sql), when the caller already has it */
  known?: boolean,
): Promise<T> {
  const ascii = known ?? await isSqlAscii(sql)
  const conn = await sql.reserve()
  try {
    if (!ascii) return await fn(conn)
    await conn.unsafe(`SET client_encoding = 'SQL_ASCII'`)
    try {
      return await fn(conn)
    } finally {
      await conn.unsafe('RESET client_encoding')
    }
  } finally {
    conn.release()
  }
}
