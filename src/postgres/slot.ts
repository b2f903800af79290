// The replication slot as the server sees it: position, lag, retained WAL, the process streaming from it.
import type postgres from 'postgres'

export interface SlotState {
  slot: string
  exists: boolean
  active: boolean
  /** the walsender's backend pid while a consumer streams (pg_replication_slots.active_pid) */
  pid: number | null
  /** the client's address and application name while active */
  client: string | null
  confirmed_flush_lsn: string | null
  restart_lsn: string | null
  current_wal_lsn: string
  /** current WAL position minus the confirmed flush LSN */
  lag_bytes: number | null
  /** PostgreSQL's flush_lag for the walsender (how far behind in time its acknowledgements are); null when unknown */
  lag_seconds: number | null
  /** WAL kept on the server for this slot (current position minus restart_lsn) */
  retained_wal_bytes: number | null
  /** reserved / extended / unreserved / lost (pg_replication_slots.wal_status) */
  wal_status: string | null
}

export async function slotState(sql: postgres.Sql, slot: string): Promise<SlotState> {
  const [r] = await sql<
    {
      slot: string | null
      active: boolean | null
      pid: number | null
      client: string | null
      confirmed: string | null
      restart: string | null
      current: string
      lag_bytes: string | null
      lag_seconds: number | null
      retained: string | null
      wal_status: string | null
    }[]
  >`
    SELECT s.slot_name AS slot, s.active, s.active_pid AS pid,
           CASE WHEN r.pid IS NULL THEN NULL
                ELSE coalesce(r.application_name, '') || '@' || coalesce(host(r.client_addr), 'local') END AS client,
           s.confirmed_flush_lsn::text AS confirmed, s.restart_lsn::text AS restart,
           pg_current_wal_lsn()::text AS current,
           pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::text AS lag_bytes,
           extract(epoch FROM r.flush_lag)::float8 AS lag_seconds,
           pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::text AS retained,
           s.wal_status
    FROM (SELECT 1) one
    LEFT JOIN pg_replication_slots s ON s.slot_name = ${slot} AND s.database = current_database()
    LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid`
  const num = (v: string | null) => (v === null ? null : Math.max(0, Number(v)))
  return {
    slot,
    exists: r.slot !== null,
    active: r.active ?? false,
    pid: r.pid,
    client: r.client,
    confirmed_flush_lsn: r.confirmed,
    restart_lsn: r.restart,
    current_wal_lsn: r.current,
    lag_bytes: num(r.lag_bytes),
    lag_seconds: r.lag_seconds,
    retained_wal_bytes: num(r.retained),
    wal_status: r.wal_status,
  }
}
