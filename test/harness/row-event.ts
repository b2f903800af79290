// Row events as the pipeline hands them to a transform.
import type { RowEvent } from '../../src/types.ts'

/** An event of a row of `public.<table>`: a delete has no new row, and its old row is the id. */
export function rowEvent(
  id: string | number,
  type: RowEvent['type'],
  row: Record<string, unknown> | undefined,
  at: { table: string; lsn: string; mapping: string },
): RowEvent {
  return {
    type,
    op: type,
    id,
    schema: 'public',
    table: at.table,
    new: type === 'delete' ? undefined : row,
    old: type === 'delete' ? { id } : undefined,
    lsn: at.lsn,
    mapping: at.mapping,
  }
}
