import type postgres from 'postgres'

/** Polls `check` until it returns a truthy value or `timeoutMs` passes (then throws with `what` and the last value). */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: T | undefined
  let error: unknown
  while (Date.now() < deadline) {
    try {
      last = await check()
      error = undefined
      if (last) return last
    } catch (e) {
      error = e
    }
    await new Promise((r) => setTimeout(r, everyMs))
  }
  throw new Error(`timed out waiting for ${what}${error ? `: ${(error as Error).message}` : ''}`)
}

/**
 * Waits until the stream's replication slot (`puffgres`) has confirmed everything committed so far. The target is the
 * WAL insert position, not pg_current_wal_lsn(): with synchronous_commit off the latter (written so far) can still be
 * below the last commit, and the slot would pass it before that commit is streamed.
 */
export async function waitForStreamPast(sql: postgres.Sql, what: string): Promise<void> {
  const [{ lsn }] = await sql`SELECT pg_current_wal_insert_lsn()::text AS lsn`
  await waitFor(
    what,
    async () =>
      (await sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok FROM pg_replication_slots
      WHERE slot_name = 'puffgres'`)[0]?.ok,
  )
}
