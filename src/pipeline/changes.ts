// Decoded changes (postgres/change-event.ts) → per-document intents for each mapping of the table
// (docs/ARCHITECTURE.md, invariant 5).
import type { Mapping } from '../config/load.ts'
import type { ChangedTable, ColumnNeeds, DecodedRow, TableChange } from '../postgres/change-event.ts'
import { formatLsn } from '../postgres/lsn.ts'
import { copyRow } from '../postgres/values.ts'
import type { Id, Row, RowEvent } from '../types.ts'
import { deleteEvent, rowEvent } from './row-event.ts'
import { docId, idProblem } from './docid.ts'
import { deadLetter } from './dead-letter.ts'
import { type RowKey, rowKey } from './row-key.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import { membershipFailure } from '../membership/mod.ts'
import type { ColumnType } from './schema.ts'
import { rowNamespace } from './row-namespace.ts'

/** What the stream knows about one mapping while it runs. */
export interface MappingRoute {
  mapping: Mapping
  /** the membership predicate compiled; undefined: every row belongs */
  isMember?: (row: Row) => boolean
  /** columns the mapping reads (mapped, id, membership, embedding); undefined: all of them */
  needed?: Set<string>
  /** the source table's OID when it was read from the catalog: the stream follows it through renames */
  relid?: number
  /** the id columns' types as a cast names them (`timestamp with time zone`, `character(10)`): re-reads by key */
  keyTypes: string[]
  /** the source table's columns when the route was built (the catalog's): types for the schema of the writes */
  columns?: readonly ColumnType[]
}

/** One document's wanted state after a change. */
export interface Intent {
  route: MappingRoute
  id: Id
  kind: 'upsert' | 'delete'
  event: RowEvent
  /** encoded version (types.ts encodeVersion) */
  version: string
  /** commit LSN of the change */
  lsn: bigint
  /** the update left needed TOASTed columns unchanged: re-read the row (by its key texts) before transforming */
  reread?: true
  /** the row's key (row-key.ts): its id columns' texts, which find it again (re-reads, dead letters), and its id */
  key: RowKey
  /** the source table's OID (stream): re-reads find the table by it, whatever its name is now */
  relid?: number
  /** the table's columns when the change was made (stream): types for the schema of the writes */
  columns?: readonly ColumnType[]
  /**
   * a namespace per tenant: namespaces the row must leave before this write (its old values' namespace on a tenant
   * move, an earlier collapsed change's, a dead letter's), each a versioned delete sent first
   * (pipeline/intent-namespace.ts)
   */
  leave?: string[]
  /**
   * a namespace per tenant with a transform: the values the row had in namespaces it leaves that its own old values
   * do not give (changes collapsed into this one, intent-namespace.ts carryLeaves): the transform's document id
   * of each is deleted there (leaves.ts)
   */
  leftRows?: Row[]
  /**
   * the namespace written to when the row's values at hand cannot name it (backfill's re-check of a page deletes
   * rows known by their keys, in the namespace the page wrote them to); otherwise the row's values decide
   */
  namespace?: string
}

/** The dead letter of an intent: its row key, its event (the document id `id` when the transform named another). */
export function intentDeadLetter(i: Intent, error: string, id: Id = i.id): DeadLetter {
  // a tenant move's old namespace goes with it: `dlq retry` sends that delete first; and the values the row had there
  // that its event does not hold, for a transform to name the document to delete (leaves.ts)
  const event = !i.leave?.length
    ? i.event
    : i.leftRows?.length
    ? { ...i.event, [LEAVE_NAMESPACES]: i.leave, [LEFT_ROWS]: i.leftRows }
    : { ...i.event, [LEAVE_NAMESPACES]: i.leave }
  return deadLetter(i.route.mapping.name, i.lsn, i.key, event, error, id)
}

/** The key of a dead letter's event holding the namespaces the row had to leave (a tenant move's old namespace). */
export const LEAVE_NAMESPACES = 'leave_namespaces'
/** The key of a dead letter's event holding the row's values in the namespaces it had to leave (Intent.leftRows). */
export const LEFT_ROWS = 'left_rows'

export interface TxnPosition {
  commitLsn: bigint
  version: string
}

// the commit LSN as text, for each change's event: a transaction's changes share it, so the last one is kept
let lastLsn = -1n
let lastLsnText = ''

function lsnTextOf(lsn: bigint): string {
  if (lsn !== lastLsn) {
    lastLsnText = formatLsn(lsn)
    lastLsn = lsn
  }
  return lastLsnText
}

/**
 * The routes of one source table as the stream knows it now (from its latest relation message): built once per
 * relation message (tableRoutes), used for every change of the table until the next one.
 */
export interface TableRoutes {
  routes: readonly MappingRoute[]
  /** what a change of the table decodes for all of them at once */
  needs: ColumnNeeds
  /** routes that read a column pgoutput does not send (generated): every insert and update of theirs is re-read */
  rereadAll: ReadonlySet<MappingRoute>
  /** the table's columns for the schema of the writes: the relation message's, and generated ones from the catalog */
  columns: readonly ColumnType[]
  /** routes whose id columns the table's replica identity does not hold (identityCovers), found once per relation */
  uncovered: ReadonlySet<MappingRoute>
}

/**
 * A table's routes for its relation message: `generated` are, per route, the columns it needs that pgoutput does
 * not send (typed from the catalog); `columns` the relation message's columns.
 */
export function tableRoutes(
  routes: readonly MappingRoute[],
  columns: readonly (ColumnType & { isKey: boolean })[],
  generated: ReadonlyMap<MappingRoute, readonly ColumnType[]> = new Map(),
): TableRoutes {
  const all = routes.some((r) => !r.needed)
  const needs = {
    only: all ? undefined : new Set(routes.flatMap((r) => [...r.needed!])),
    ids: new Set(routes.flatMap((r) => r.mapping.idColumns)),
  }
  const missing = [...generated.values()].flat().filter((g, k, list) =>
    !columns.some((c) => c.name === g.name) && list.findIndex((x) => x.name === g.name) === k
  )
  return {
    routes,
    needs,
    rereadAll: new Set(generated.keys()),
    columns: missing.length ? [...columns, ...missing] : columns,
    uncovered: new Set(routes.filter((r) => !identityCovers({ columns }, r.mapping))),
  }
}

/** The decode failures among the columns a route reads, as one reason; undefined when there are none. */
function brokenFor(
  route: MappingRoute,
  errors: ReadonlyMap<string, string>,
  columns?: readonly string[],
): string | undefined {
  if (!errors.size) return undefined
  const reasons: string[] = []
  for (const [column, error] of errors) {
    if (columns ? columns.includes(column) : !route.needed || route.needed.has(column)) {
      reasons.push(`column "${column}": ${error}`)
    }
  }
  return reasons.length ? `cannot decode ${reasons.join('; ')}` : undefined
}

/**
 * Turns one decoded change into intents, calling `out` for each. Membership decides upsert or delete; an update
 * that changes the id also deletes the old id. A row a route cannot read (a value that cannot be decoded, no id)
 * goes to `bad` for that route alone; the stream goes on.
 */
export function changeIntents(
  change: TableChange,
  table: TableRoutes,
  pos: TxnPosition,
  out: (i: Intent) => void,
  bad: (d: DeadLetter) => void,
): void {
  const rel = change.table
  const relid = rel.oid
  const columns = table.columns
  const lsnText = lsnTextOf(pos.commitLsn)
  const version = pos.version
  const lsn = pos.commitLsn
  const failed = (route: MappingRoute, key: RowKey, event: Record<string, unknown>, error: string, quiet?: true) => {
    const d = deadLetter(route.mapping.name, lsn, key, event, error)
    bad(quiet ? { ...d, quiet } : d)
  }
  /**
   * a document's upsert or delete at this change's position, its event naming `row` (a delete's: the row it had);
   * every intent has the same fields (`reread`, `leave`, `leftRows` undefined when not set), and nothing else is
   * allocated per row
   */
  const emit = (
    route: MappingRoute,
    kind: Intent['kind'],
    id: Id,
    key: RowKey,
    row: Row,
    old?: Row,
    leave?: string[],
    reread?: true,
  ) => {
    const name = route.mapping.name
    const event = kind === 'delete'
      ? deleteEvent(id, rel.schema, rel.name, name, lsnText, row)
      : rowEvent(change.type as 'insert' | 'update', id, rel.schema, rel.name, name, lsnText, row, old)
    // a row that moves and leaves the membership at once: its delete's event has the new values, and a transform
    // names the document it had in the namespace it leaves by its old ones (leaves.ts)
    const leftRows = kind === 'delete' && leave && old ? [old] : undefined
    out({ route, id, kind, event, key, version, lsn, relid, columns, reread, leave, leftRows })
  }
  /** the key of a decoded row for a route: its id columns' texts, and its id (none when they cannot be decoded) */
  const keyOf = (route: MappingRoute, decoded: DecodedRow, values: Row): RowKey => {
    const m = route.mapping
    const id = brokenFor(route, decoded.errors, m.idColumns)
      ? undefined
      : docId(values, m.idColumns, m.idType === 'string')
    return rowKey(m, values, decoded.textsOf(m.idColumns), id)
  }
  const oldDecoded = change.old
  // one decoded row for all routes, but each transform gets its own copy: a transform may mutate its event
  const shared = table.routes.length > 1
  const own = (route: MappingRoute, r: Row | undefined) => shared && route.mapping.transform && r ? copyRow(r) : r
  if (change.type === 'delete') {
    const { row: oldRow, errors } = oldDecoded!
    for (const route of table.routes) {
      const old = own(route, oldRow)!
      // a delete needs only the id: other columns that cannot be decoded are left out of the event
      const broken = brokenFor(route, errors, route.mapping.idColumns)
      const key = keyOf(route, oldDecoded!, old)
      if (broken) {
        failed(route, key, { type: 'delete', old }, `delete on ${rel.schema}.${rel.name}: ${broken}`)
        continue
      }
      const id = key.id
      const unrouted = id === undefined ? undefined : tenantNotInIdentity(rel, change.oldIsRow, route.mapping, 'delete')
      if (unrouted) {
        failed(route, key, { type: 'delete', id, old }, unrouted)
        continue
      }
      if (id === undefined) {
        // a row whose id was NULL never had a document: nothing to delete
        const missing = notInIdentity(rel, change.oldIsRow, route)
        if (missing) bad(deadLetter(route.mapping.name, lsn, undefined, { type: 'delete', old }, missing))
        continue
      }
      emit(route, 'delete', id, key, old)
    }
    return
  }
  const decoded = change.new!
  const { unchanged, errors } = decoded
  const type = change.type
  for (const route of table.routes) {
    const row = own(route, decoded.row)!
    const old = own(route, oldDecoded?.row)
    const m = route.mapping
    const needsReread = table.rereadAll.has(route) ||
      (unchanged.length > 0 && unchanged.some((c) => !route.needed || route.needed.has(c)))
    const broken = brokenFor(route, errors)
    const key = keyOf(route, decoded, row)
    const id = key.id
    // the old row's key, when the change carries it (a key change, REPLICA IDENTITY FULL)
    const oldKey = old && keyOf(route, oldDecoded!, old)
    const oldId = oldKey?.id
    // a tenant move: the old values name another namespace, which the row leaves first (invariant 11)
    const leave = m.namespaceTemplate && old ? movedFrom(m, old, row) : undefined
    // an id change whose old values lack a placeholder column (the identity lost it after migrate): the old document's
    // namespace is unknown; a dead letter keeps it (its retry deletes in every namespace), not a delete nowhere
    const unrouted = oldId !== undefined && oldId !== id
      ? tenantNotInIdentity(rel, change.oldIsRow, m, 'update')
      : undefined
    if (unrouted) failed(route, oldKey!, { type: 'delete', id: oldId, old }, unrouted)
    else if (oldId !== undefined && oldId !== id) {
      // an id change, or an id set to NULL: the old document goes (the new one is written below if it can be)
      emit(route, 'delete', oldId, oldKey!, old!)
    }
    if (broken) {
      failed(route, key, { type, id, new: row }, `${type} on ${rel.schema}.${rel.name}: ${broken}`)
      continue
    }
    if (id === undefined) {
      // a row without an id cannot be a document; its old document, if the change names it, was deleted above
      if (oldId === undefined) {
        failed(route, key, { type, new: row }, noIdError(route, rel, type, row, oldDecoded !== undefined))
      }
      continue
    }
    if (type === 'update' && oldId === undefined && table.uncovered.size && table.uncovered.has(route)) {
      // the id may have changed without the change saying from what: the old document, if any, cannot be deleted.
      // The new one is still written; the dead letter keeps the fix (docs/ARCHITECTURE.md, invariants 1 and 5)
      failed(route, key, { type, id, new: row }, identityError(rel, m), true)
    }
    if (needsReread) {
      emit(route, 'upsert', id, key, row, old, leave, true)
      continue
    }
    let member: boolean
    try {
      member = !route.isMember || route.isMember(row)
    } catch (e) {
      // with the id and key texts, as every dead letter of a row: `dlq retry` finds the row by them
      failed(route, key, { type, id, new: row }, membershipFailure(e))
      continue
    }
    if (member) {
      emit(route, 'upsert', id, key, row, old, leave)
    } else if (type === 'update') {
      // the row left the membership predicate (or never was in it): its document must not exist
      emit(route, 'delete', id, key, row, old, leave)
    }
  }
}

/** The table's replica identity (as its relation message flags it) holds every id column of the mapping. */
export function identityCovers(
  rel: { columns: readonly { name: string; isKey: boolean }[] },
  m: Pick<Mapping, 'idColumns' | 'namespaceTemplate'>,
): boolean {
  return identityColumnsOf(m).every((c) => rel.columns.find((col) => col.name === c)?.isKey)
}

/** The columns the old values of an update or delete must carry: the id's, and a tenant template's placeholders. */
export function identityColumnsOf(m: Pick<Mapping, 'idColumns' | 'namespaceTemplate'>): string[] {
  const tenant = m.namespaceTemplate?.columns.filter((c) => !m.idColumns.includes(c)) ?? []
  return tenant.length ? [...m.idColumns, ...tenant] : m.idColumns
}

/** The namespace the row's old values name, when it is not the one its new values name (a tenant move). */
function movedFrom(m: Mapping, old: Row, row: Row): string[] | undefined {
  const before = rowNamespace(m, old)
  // old values that name no namespace (NULL): the row had no document to move
  if (!before.ok) return undefined
  const after = rowNamespace(m, row)
  return after.ok && after.namespace === before.namespace ? undefined : [before.namespace]
}

/** Why a delete cannot find the row's tenant namespace: placeholder columns outside the replica identity. */
function tenantNotInIdentity(
  rel: ChangedTable,
  wholeRow: boolean,
  m: Mapping,
  kind: 'delete' | 'update',
): string | undefined {
  if (!m.namespaceTemplate || wholeRow) return undefined
  const outside = m.namespaceTemplate.columns.filter((c) => !rel.columns.find((col) => col.name === c)?.isKey)
  if (!outside.length) return undefined
  const table = `${rel.schema}.${rel.name}`
  return `mapping ${m.name}: ${kind} on ${table} without a value for ${outside.join(', ')} (namespace ` +
    `"${m.namespace}"): not in the table's REPLICA IDENTITY, so the row's namespace is unknown and its document ` +
    `stays; fix: ALTER TABLE ${table} REPLICA IDENTITY FULL (see puffgres migrate), then \`puffgres dlq retry\``
}

/** The dead letter's reason for an update whose old id the replica identity does not carry. */
export function identityError(rel: Pick<ChangedTable, 'schema' | 'name'>, m: Mapping): string {
  const table = `${rel.schema}.${rel.name}`
  if (m.namespaceTemplate && identityColumnsOf(m).length > m.idColumns.length) {
    return `mapping ${m.name}: update on ${table}: the table's REPLICA IDENTITY does not include ` +
      `${identityColumnsOf(m).join(', ')} (the id and the namespace "${m.namespace}"), so an update that changed ` +
      `them leaves the old document; fix: ALTER TABLE ${table} REPLICA IDENTITY FULL, then ` +
      `\`puffgres verify ${m.name} --repair\``
  }
  return `mapping ${m.name}: update on ${table}: the table's REPLICA IDENTITY does not include id column(s) ` +
    `${m.idColumns.join(', ')}, so an update that changed the id leaves the old id's document; fix: ALTER TABLE ` +
    `${table} REPLICA IDENTITY DEFAULT (with a primary key on the id) or ALTER TABLE ${table} REPLICA IDENTITY ` +
    `FULL, then \`puffgres verify ${m.name} --repair\``
}

/** Why a delete carries no id: its id columns are not in the replica identity. undefined: the id was NULL. */
function notInIdentity(rel: ChangedTable, wholeRow: boolean, route: MappingRoute): string | undefined {
  if (wholeRow) return undefined
  const outside = route.mapping.idColumns.filter((c) => !rel.columns.find((col) => col.name === c)?.isKey)
  if (!outside.length) return undefined
  return `mapping ${route.mapping.name}: delete on ${rel.schema}.${rel.name} without a value for id column(s) ` +
    `${outside.join(', ')}: they are not in the table's REPLICA IDENTITY (see puffgres migrate)`
}

function noIdError(route: MappingRoute, rel: ChangedTable, kind: string, row: Row, hadOld: boolean): string {
  const m = route.mapping
  if (m.idColumns.every((c) => row[c] !== null && row[c] !== undefined)) {
    // a value turbopuffer cannot take as an id (a negative integer)
    return `mapping ${m.name}: ${kind} on ${rel.schema}.${rel.name}: ${idProblem(row, m.idColumns)}`
  }
  const cols = route.mapping.idColumns.join(', ')
  const what =
    `mapping ${route.mapping.name}: ${kind} on ${rel.schema}.${rel.name} with NULL in id column(s) ${cols}: ` +
    `a row without an id cannot be a document`
  if (kind !== 'update') return what
  return what + (hadOld ? '' : `; its old document, if it had one, stays (the change does not carry the old id: ` +
    `ALTER TABLE ${rel.schema}.${rel.name} REPLICA IDENTITY FULL would)`)
}
