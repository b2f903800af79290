// What the source database says about the tables puffgres reads.
import type postgres from 'postgres'
import type { ColumnType } from './read-rows.ts'
import { FIRST_NON_BUILTIN_OID } from '../postgres/type-oids.ts'

/**
 * A column as the catalog describes it: the one reader of a table's columns for the stream's table shapes, the read
 * plan, the routes, `migrate` and `doctor` (docs/ARCHITECTURE.md, invariant 12).
 */
export interface CatalogColumn extends ColumnType {
  /** the column's type as a cast names it, typmod included (`character(10)`: a bare `character` is char(1)) */
  castType: string
  typmod: number
  notNull: boolean
  /** a stored generated column (pgoutput before PostgreSQL 18, and 18 by default, does not send it) */
  generated: boolean
}

/**
 * The live columns of the table with this OID, in table order. `typeName` means what it means everywhere (a
 * ColumnType's, pgoutput's Type message's): set only for non-builtin types, the base type's name for a domain (over
 * domains too), so a domain is its base type on every path (decoding, attribute types, membership).
 */
export async function catalogColumns(sql: postgres.Sql, oid: number): Promise<CatalogColumn[]> {
  const cols = await sql<
    {
      name: string
      typeOid: number
      typname: string
      castType: string
      typmod: number
      notNull: boolean
      generated: boolean
    }[]
  >`
    SELECT a.attname AS name, a.atttypid::int AS "typeOid", b.typname,
           format_type(a.atttypid, a.atttypmod) AS "castType", a.atttypmod AS typmod,
           a.attnotnull AS "notNull", a.attgenerated <> '' AS generated
    FROM pg_attribute a
    ${baseTypeJoin(sql)}
    WHERE a.attrelid = ${oid} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`
  return cols.map(({ typname, ...c }) => c.typeOid >= FIRST_NON_BUILTIN_OID ? { ...c, typeName: typname } : c)
}

/** A column's ColumnType (what decoding and attribute types read), without the catalog's other facts. */
export function columnType(c: CatalogColumn): ColumnType {
  return c.typeName === undefined
    ? { name: c.name, typeOid: c.typeOid, typmod: c.typmod }
    : { name: c.name, typeOid: c.typeOid, typeName: c.typeName, typmod: c.typmod }
}

export interface TableInfo {
  oid: number
  schema: string
  table: string
  columns: CatalogColumn[]
  primaryKey: string[]
  /** d = default (primary key), n = nothing, f = full, i = index */
  replicaIdentity: 'd' | 'n' | 'f' | 'i'
  /** the columns PostgreSQL sends as the old key for updates and deletes */
  identityColumns: string[]
}

/** A table found by name: the one lookup of `schema.table` (a plain or partitioned table; a view is none). */
export interface TableRef {
  oid: number
  /** `pg_class.reltuples`: -1 (or 0 before PostgreSQL 14) when the table was never analyzed */
  reltuples: number
  relreplident: string
}

/** The table `schema.table` (relkind r or p); undefined when there is none. */
export async function findTable(sql: postgres.Sql, schema: string, table: string): Promise<TableRef | undefined> {
  const [t] = await sql<TableRef[]>`
    SELECT c.oid::int AS oid, c.reltuples::float8 AS reltuples, c.relreplident FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ${schema} AND c.relname = ${table} AND c.relkind IN ('r', 'p')`
  return t
}

/**
 * The columns of each valid, non-partial unique index of the table with this OID (the primary key's included), each
 * index's as a set (in no particular order): whether some index covers the id columns is what the read plan asks.
 */
export async function uniqueIndexColumns(sql: postgres.Sql, oid: number): Promise<string[][]> {
  const rows = await sql<{ cols: string[] }[]>`
    SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey) k(attnum) JOIN pg_attribute a
                 ON a.attrelid = i.indrelid AND a.attnum = k.attnum) AS cols
    FROM pg_index i WHERE i.indrelid = ${oid} AND i.indisunique AND i.indpred IS NULL AND i.indisvalid`
  return rows.map((r) => r.cols)
}

export async function tableInfo(sql: postgres.Sql, schema: string, table: string): Promise<TableInfo | undefined> {
  const t = await findTable(sql, schema, table)
  if (!t) return undefined
  const columns = await catalogColumns(sql, t.oid)
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
 * domains too) resolved, as pgoutput's Type message names it; the read plan and the re-read by OID decode a domain
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
