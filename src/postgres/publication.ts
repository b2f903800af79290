// The publication the stream subscribes to: exactly the source tables of the active mappings, published through
// their partition roots (publish_via_partition_root = true): a partitioned table's changes then arrive as changes of
// the table the mapping names, whichever partition holds the row (without it they name the partitions, and the
// publication lists partitions, not the table).
import type postgres from 'postgres'
import { ident, qualified } from './connect.ts'

export interface TableName {
  schema: string
  table: string
}

const key = (t: TableName) => `${t.schema}.${t.table}`

/** The tables of publication `name`, or undefined when it does not exist. */
export async function publicationTables(sql: postgres.Sql, name: string): Promise<TableName[] | undefined> {
  const [p] = await sql`SELECT 1 FROM pg_publication WHERE pubname = ${name}`
  if (!p) return undefined
  return await sql<TableName[]>`
    SELECT schemaname AS schema, tablename AS table FROM pg_publication_tables WHERE pubname = ${name}
    ORDER BY 1, 2`
}

/** The statement that makes publication `name` cover exactly `tables`, or undefined when it already does. */
export function publicationChange(name: string, current: TableName[] | undefined, tables: TableName[]) {
  const want = [...new Map(tables.map((t) => [key(t), t])).values()].sort((a, b) => key(a).localeCompare(key(b)))
  const list = (ts: TableName[]) => ts.map((t) => qualified(t.schema, t.table)).join(', ')
  if (current === undefined) {
    return `CREATE PUBLICATION ${ident(name)}${want.length ? ` FOR TABLE ${list(want)}` : ''}` +
      ' WITH (publish_via_partition_root = true)'
  }
  if (current.map(key).sort().join('\n') === want.map(key).join('\n')) return undefined
  if (!want.length) return `ALTER PUBLICATION ${ident(name)} DROP TABLE ${list(current)}`
  return `ALTER PUBLICATION ${ident(name)} SET TABLE ${list(want)}`
}

/** Whether publication `name` publishes partitioned tables through their root; undefined when it does not exist. */
export async function publicationViaRoot(sql: postgres.Sql, name: string): Promise<boolean | undefined> {
  const [p] = await sql<
    { viaroot: boolean }[]
  >`SELECT pubviaroot AS viaroot FROM pg_publication WHERE pubname = ${name}`
  return p?.viaroot
}

/**
 * The statement that makes an existing publication publish through partition roots, when one of `tables` is
 * partitioned and it does not yet (a publication created by an older puffgres, or by hand).
 */
export async function viaRootChange(
  sql: postgres.Sql,
  name: string,
  tables: TableName[],
): Promise<string | undefined> {
  if ((await publicationViaRoot(sql, name)) !== false) return undefined
  if (!(await partitioned(sql, tables)).length) return undefined
  return `ALTER PUBLICATION ${ident(name)} SET (publish_via_partition_root = true)`
}

/** The partitioned tables among `tables`. */
export async function partitioned(sql: postgres.Sql, tables: TableName[]): Promise<TableName[]> {
  if (!tables.length) return []
  const rows = await sql<TableName[]>`
    SELECT n.nspname AS schema, c.relname AS table FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'p' AND (n.nspname || '.' || c.relname) IN ${sql(tables.map(key))}`
  return rows
}

/** Makes publication `name` cover exactly `tables` (a `run` of some mappings keeps its own); true if it changed. */
export async function ensurePublication(sql: postgres.Sql, name: string, tables: TableName[]): Promise<boolean> {
  const change = publicationChange(name, await publicationTables(sql, name), tables)
  if (change) await sql.unsafe(change)
  return change !== undefined
}

/** Whether publication `name` publishes the table with relation OID `oid` now (by table list, schema or all tables). */
export async function publishesRelation(sql: postgres.Sql, name: string, oid: number): Promise<boolean> {
  const [r] = await sql`
    SELECT 1 FROM pg_publication_tables t
    JOIN pg_namespace n ON n.nspname = t.schemaname
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename
    WHERE t.pubname = ${name} AND c.oid = ${oid}`
  return r !== undefined
}
