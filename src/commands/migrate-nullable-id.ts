// `migrate`'s warning about id columns that may be NULL: such a row cannot be a document (issue 13 item 7).
import type { Mapping } from '../config/load.ts'
import type { TableInfo } from '../postgres/catalog.ts'

/** One warning per nullable id column of the mapping's table; [] when every id column is NOT NULL. */
export function nullableIdWarnings(m: Mapping, t: TableInfo): string[] {
  const nullable = m.idColumns.filter((c) => t.columns.some((col) => col.name === c && !col.notNull))
  return nullable.map((c) =>
    `${m.file}: mapping.id column "${c}" of ${m.schema}.${m.table} is nullable: a row whose id is NULL cannot be ` +
    `a document (it goes to the dead-letter queue)` +
    (t.replicaIdentity === 'f' ? '' : `, and an update that sets it to NULL leaves the old document behind unless ` +
      `the table has REPLICA IDENTITY FULL`)
  )
}
