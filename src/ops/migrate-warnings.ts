// What `migrate` can foresee about a mapped table and says before anything streams: how puffgres will handle shapes
// that logical replication treats specially. Each warning names the migration file and the table.
import type { Mapping } from '../config/load.ts'
import { neededColumns } from '../pipeline/routes.ts'
import type { TableShape } from '../source/mod.ts'

export function migrateWarnings(m: Mapping, table: TableShape): string[] {
  const where = `${m.file}: ${m.schema}.${m.table}`
  const warnings: string[] = []
  const needed = neededColumns(m)
  const generated = table.generated.filter((c) => !needed || needed.has(c))
  if (generated.length) {
    warnings.push(
      `${where}: generated column(s) ${generated.join(', ')} are not in the replication stream (PostgreSQL before ` +
        `18 never sends them; 18 only with publish_generated_columns): \`run\` re-reads each inserted or updated ` +
        `row by its id to get them (one query per batch and table)`,
    )
  }
  const nullable = m.idColumns.filter((c) => table.nullable.includes(c))
  if (nullable.length) {
    warnings.push(
      `${where}: mapping.id column(s) ${nullable.join(', ')} may be NULL: a row with a NULL id has no document ` +
        `(backfill skips and counts it, the stream does not write it); add NOT NULL if it never is`,
    )
  }
  if (table.partitioned) {
    warnings.push(
      `${where}: partitioned table: published through its root (publish_via_partition_root = true), so the changes ` +
        `of every partition stream as changes of ${m.schema}.${m.table}; a row moving between partitions arrives as a ` +
        `delete and an insert of the same id and ends as one document. TRUNCATE, DETACH PARTITION or DROP TABLE of ` +
        `one partition is not in the replication stream (only a TRUNCATE of ${m.schema}.${m.table} itself is): ` +
        `the documents of that partition's rows stay until \`puffgres verify --repair\` deletes them`,
    )
  }
  return warnings
}
