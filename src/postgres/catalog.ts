// What the source database says about the tables puffgres reads.
import type postgres from 'postgres'

export interface TableInfo {
  oid: number
  schema: string
  table: string
  /** generated: a stored generated column (pgoutput before PostgreSQL 18, and 18 by default, does not send it) */
  columns: Array<{ name: string; typeOid: number; typeName: string; notNull: boolean; generated: boolean }>
  primaryKey: string[]
  /** d = default (primary key), n = nothing, f = full, i = index */
  replicaIdentity: 'd' | 'n' | 'f' | 'i'
  /** the columns PostgreSQL sends as the old key for updates and deletes */
  identityColumns: string[]
}

export async function tableInfo(sql: postgres.Sql, schema: string, table: string): Promise<TableInfo | undefined> {
  const [t] = await sql<{ oid: number; relreplident: string; relkind: string }[]>`
    SELECT c.oid::int AS oid, c.relreplident, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ${schema} AND c.relname = ${table} AND c.relkind IN ('r', 'p')`
  if (!t) return undefined
  const columns = await sql<
    { name: string; typeOid: number; typeName: string; notNull: boolean; generated: boolean }[]
  >`
    SELECT a.attname AS name, a.atttypid::int AS "typeOid", format_type(a.atttypid, a.atttypmod) AS "typeName",
           a.attnotnull AS "notNull", a.attgenerated <> '' AS generated
    FROM pg_attribute a WHERE a.attrelid = ${t.oid} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`
  const keyOf = async (where: string) =>
    (await sql.unsafe<{ name: string }[]>(
      `SELECT a.attname AS name FROM pg_index i
       JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
       WHERE i.indrelid = $1 AND ${where} ORDER BY k.ord`,
      [t.oid],
    )).map((r) => r.name)
  const primaryKey = await keyOf('i.indisprimary')
  const ident = t.relreplident as TableInfo['replicaIdentity']
  const identityColumns = ident === 'd'
    ? primaryKey
    : ident === 'i'
    ? await keyOf('i.indisreplident')
    : ident === 'f'
    ? columns.map((c) => c.name)
    : []
  return { oid: t.oid, schema, table, columns, primaryKey, replicaIdentity: ident, identityColumns }
}

/**
 * `JOIN LATERAL (…) b` for a query over `pg_attribute a`: `b.typname` is the column's base type, domains (over
 * domains too) resolved, as pgoutput's Type message names it; the backfill plan and the re-read by OID decode a domain
 * over int as an int, as the stream does.
 */
export function baseTypeJoin(sql: postgres.Sql) {
  return sql`JOIN LATERAL (
      WITH RECURSIVE d(oid, depth) AS (
        SELECT a.atttypid, 0 UNION ALL
        SELECT t.typbasetype, d.depth + 1 FROM d JOIN pg_type t ON t.oid = d.oid WHERE t.typtype = 'd'
      ) SELECT t.typname FROM d JOIN pg_type t ON t.oid = d.oid ORDER BY d.depth DESC LIMIT 1
    ) b ON true`
}
