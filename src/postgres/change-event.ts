// The decode stage's output: a pgoutput insert, update or delete turned into a change event — the table, and each
// row it carries decoded (only the columns asked for) with the texts of its key columns. The pipeline
// sees these events, never a pgoutput tuple (docs/ARCHITECTURE.md, "Data flow").
import type { DeleteMessage, InsertMessage, Relation, RelationColumn, Tuple, UpdateMessage } from './pgoutput.ts'
import { decodeColumns } from './values.ts'
import type { Row } from '../types.ts'

/** The table of a change, as its relation message described it when the change was made. */
export type ChangedTable = Pick<Relation, 'oid' | 'schema' | 'name'> & { columns: readonly RelationColumn[] }

/** What to decode of a table's rows (resolved once per relation message for all the mappings of the table). */
export interface ColumnNeeds {
  /** the columns any reader needs; undefined: every column */
  only: ReadonlySet<string> | undefined
  /** the id columns: the only timestamps whose text is kept (values.ts decodeColumns) */
  ids: ReadonlySet<string>
}

/** One row of a change, decoded. */
export class DecodedRow {
  constructor(
    /** the decoded values of the needed columns (a value that could not be decoded is left out: see errors) */
    readonly row: Row,
    /** needed columns whose TOASTed value the change left out (unchanged by an update) */
    readonly unchanged: readonly string[],
    /** column → why its value could not be decoded */
    readonly errors: ReadonlyMap<string, string>,
    private readonly columns: readonly RelationColumn[],
    private readonly tuple: Tuple,
  ) {}

  /**
   * The values of `names` as PostgreSQL printed them (null: NULL or not sent): read once per mapping for the row's
   * key (pipeline/row-key.ts), whose texts find the row exactly where a decoded timestamp has lost its microseconds.
   */
  textsOf(names: readonly string[]): (string | null)[] {
    return names.map((c) => {
      const v = this.tuple[this.columns.findIndex((col) => col.name === c)]
      return v?.kind === 'text' ? v.value : null
    })
  }
}

/** A decoded insert, update or delete. */
export interface TableChange {
  type: 'insert' | 'update' | 'delete'
  table: ChangedTable
  /** the new row (insert, update) */
  new?: DecodedRow
  /** the old row of an update or delete, when the change carries one: its key columns, or all of it (`oldIsRow`) */
  old?: DecodedRow
  /** `old` is the whole row (REPLICA IDENTITY FULL), not only the key columns */
  oldIsRow: boolean
  /** roughly what the change costs in memory as decoded (values, plus a little per column) */
  bytes: number
}

/** Decodes a pgoutput change: only the columns `needs` names, each tuple once for every reader. */
export function decodeChange(msg: InsertMessage | UpdateMessage | DeleteMessage, needs: ColumnNeeds): TableChange {
  const table = msg.relation
  const oldTuple = msg.tag === 'insert' ? undefined : (msg.old ?? msg.key)
  const newTuple = msg.tag === 'delete' ? undefined : msg.new
  return {
    type: msg.tag,
    table,
    new: newTuple && decodeRow(table.columns, newTuple, needs),
    old: oldTuple && decodeRow(table.columns, oldTuple, needs),
    oldIsRow: msg.tag !== 'insert' && msg.old !== undefined,
    bytes: tupleBytes(newTuple ?? oldTuple!),
  }
}

function decodeRow(columns: readonly RelationColumn[], tuple: Tuple, needs: ColumnNeeds): DecodedRow {
  const { row, unchanged, errors } = decodeColumns(columns, tuple, needs.only, needs.ids)
  return new DecodedRow(row, unchanged, errors, columns, tuple)
}

function tupleBytes(tuple: Tuple): number {
  let n = 64
  for (const v of tuple) n += 16 + (v.kind === 'text' || v.kind === 'binary' ? v.value.length : 0)
  return n
}
