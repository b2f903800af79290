// Row events as the pipeline hands them to a transform (built by the pipeline's own builder).
import { deleteEvent, rowEvent as pipelineEvent } from '../../src/pipeline/row-event.ts'
import type { RowEvent } from '../../src/types.ts'

/** An event of a row of `public.<table>`: a delete has no new row, and its old row is the id. */
export function rowEvent(
  id: string | number,
  type: RowEvent['type'],
  row: Record<string, unknown> | undefined,
  at: { table: string; lsn: string; mapping: string },
): RowEvent {
  return type === 'delete'
    ? deleteEvent(id, 'public', at.table, at.mapping, at.lsn, { id })
    : pipelineEvent(type, id, 'public', at.table, at.mapping, at.lsn, row ?? {})
}
