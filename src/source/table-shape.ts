// A table as it is *now*, found by OID: its current name and columns. The stream follows a mapped table by OID
// (docs/ARCHITECTURE.md invariant 9): after a DROP COLUMN or a rename, the columns of the stream's relation message
// are out of date, and a re-read built from them would fail on every replay.
import type postgres from 'postgres'
import type { ColumnType } from './read-rows.ts'
import { catalogColumns, columnType } from './catalog.ts'

export interface TableShape {
  oid: number
  schema: string
  table: string
  /**
   * every live column, in table order; typeName only for non-builtin types, the base type's for a domain (as
   * pgoutput's Type messages name them)
   */
  columns: ColumnType[]
  /** stored generated columns: pgoutput does not send them (before PostgreSQL 18, and after it by default) */
  generated: string[]
  /** columns without NOT NULL */
  nullable: string[]
  /** relkind 'p': a partitioned table (streamed through its root: publish_via_partition_root) */
  partitioned: boolean
}

/** The table with this OID as it is now; undefined when it was dropped. */
export async function tableByOid(sql: postgres.Sql, oid: number): Promise<TableShape | undefined> {
  const [t] = await sql<{ schema: string; table: string; relkind: string }[]>`
    SELECT n.nspname AS schema, c.relname AS table, c.relkind FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ${oid}`
  if (!t) return undefined
  const cols = await catalogColumns(sql, oid)
  return {
    oid,
    schema: t.schema,
    table: t.table,
    columns: cols.map(columnType),
    generated: cols.filter((c) => c.generated).map((c) => c.name),
    nullable: cols.filter((c) => !c.notNull).map((c) => c.name),
    partitioned: t.relkind === 'p',
  }
}

/**
 * The stored generated columns of a table that a mapping needs (`needed` undefined: all columns), with their types;
 * undefined when there are none. pgoutput does not send them, so changes of such a table are re-read by key.
 */
export function generatedNeeded(shape: TableShape | undefined, needed: ReadonlySet<string> | undefined) {
  if (!shape) return undefined
  const cols = shape.columns.filter((c) => shape.generated.includes(c.name) && (!needed || needed.has(c.name)))
  return cols.length ? cols : undefined
}
