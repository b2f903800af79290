// The RowEvent a transform receives, built in one place for every path a row takes (the stream, backfill, re-reads,
// `dlq retry`, `verify`): the same keys in the same order, so a transform sees one shape (and V8 one hidden class).
import type { Id, Row, RowEvent } from '../types.ts'

/** An insert or update: the new row, and the old one when the change carries it. */
export function rowEvent(
  type: 'insert' | 'update',
  id: Id,
  schema: string,
  table: string,
  mapping: string,
  lsn: string,
  newRow: Row,
  old?: Row,
): RowEvent {
  return { type, op: type, id, schema, table, new: newRow, old, lsn, mapping }
}

/** A delete (or a row that left the membership): the old row, as far as it is known. */
export function deleteEvent(
  id: Id,
  schema: string,
  table: string,
  mapping: string,
  lsn: string,
  old: Row | undefined,
): RowEvent {
  return { type: 'delete', op: 'delete', id, schema, table, old, lsn, mapping }
}
