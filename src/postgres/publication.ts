// The publication the stream subscribes to: exactly the source tables of the active mappings.
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
    return `CREATE PUBLICATION ${ident(name)}${want.length ? ` FOR TABLE ${list(want)}` : ''}`
  }
  if (current.map(key).sort().join('\n') === want.map(key).join('\n')) return undefined
  if (!want.length) return `ALTER PUBLICATION ${ident(name)} DROP TABLE ${list(current)}`
  return `ALTER PUBLICATION ${ident(name)} SET TABLE ${list(want)}`
}

/** Makes publication `name` cover exactly `tables` (a `run` of some mappings keeps its own); true if it changed. */
export async function ensurePublication(sql: postgres.Sql, name: string, tables: TableName[]): Promise<boolean> {
  const change = publicationChange(name, await publicationTables(sql, name), tables)
  if (change) await sql.unsafe(change)
  return change !== undefined
}
