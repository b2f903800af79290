// A WAL position that can version rows read after it (backfill pages, DLQ retries, verify repairs).
import type postgres from 'postgres'
import type { Logger } from '../types.ts'
import { parseLsn } from './lsn.ts'

/**
 * Returns L = the current WAL insert position, after waiting until every transaction in progress at that moment
 * has ended. A snapshot taken after this call then sees every commit whose LSN is below L, and every commit it does
 * not see is streamed with a version above L: rows read after it can carry version L (docs/ARCHITECTURE.md, invariant 2)
 * without losing to, or wrongly beating, a streamed change.
 *
 * The transactions in progress are the snapshot's xip list plus the xids from its xmax up to a fresh xid of our
 * own (a snapshot does not list running xids at or above its xmax). Like creating a replication slot, this waits
 * for long-running transactions; it says so in the log after a few seconds.
 */
export async function stableLsn(sql: postgres.Sql, opts: { log?: Logger; pollMs?: number } = {}): Promise<bigint> {
  const [r] = await sql<{ lsn: string; xip: string[]; xmax: string; me: string }[]>`
    SELECT pg_current_wal_insert_lsn()::text AS lsn,
           ARRAY(SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) x) AS xip,
           pg_snapshot_xmax(pg_current_snapshot())::text AS xmax,
           pg_current_xact_id()::text AS me`
  const lsn = parseLsn(r.lsn)
  let running = [...r.xip]
  for (let x = BigInt(r.xmax); x < BigInt(r.me); x++) running.push(x.toString())
  const started = Date.now()
  let warned = false
  while (running.length) {
    const rows = await sql<{ xid: string }[]>`
      SELECT x AS xid FROM unnest(${running}::text[]) x WHERE pg_xact_status(x::xid8) = 'in progress'`
    running = rows.map((x) => x.xid)
    if (!running.length) break
    if (!warned && Date.now() - started > 5000) {
      warned = true
      opts.log?.warn('waiting for transactions that were open when the read began to end', { xids: running.join(',') })
    }
    await new Promise((res) => setTimeout(res, opts.pollMs ?? 10))
  }
  return lsn
}
