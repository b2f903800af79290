// Row identity: which document a row is (docid.ts), how to find the row again (its key texts), and what its document
// must be now (re-read by key, then upsert or delete). One path for every writer that brings documents to their
// rows' current state: the stream (an update that left TOASTed columns out, a row with generated columns), backfill's
// re-check, `dlq retry` and `verify --repair` (docs/ARCHITECTURE.md invariants 2, 5 and 9).
//
// Versions. Current-state writes carry encodeVersion(L) for an L = stableLsn() taken before the rows are read: every
// commit the read does not see is streamed with a higher version, so they never beat a newer streamed change. But a
// delete leaves no tombstone: a row deleted after the read, whose streamed delete lands before this upsert, would
// come back. So whoever writes current state outside the stream re-checks its keys after writing
// (`recheckWritten`): rows gone or no longer members by then get a delete at a later R = stableLsn().
import type postgres from 'postgres'
import type { DeadLetter } from '../postgres/dlq.ts'
import { formatLsn } from '../postgres/lsn.ts'
import { type ColumnType, readRowsByKey, tableByOid, undecodable } from '../source/mod.ts'
import { stableLsn } from '../postgres/stable-lsn.ts'
import type { Mapping } from '../config/load.ts'
import { encodeVersion, type Logger, type Row } from '../types.ts'
import { type Intent, intentDeadLetter, type MappingRoute } from './changes.ts'
import { deadLetter } from './dead-letter.ts'
import { docId, idKey } from './docid.ts'
import type { DocumentKey, RowKey } from './row-key.ts'
import { membershipFailure } from '../membership/mod.ts'
import { deleteEvent, rowEvent } from './row-event.ts'
import { deleteOf } from './leaves.ts'
import { intentNamespace } from './intent-namespace.ts'
import { type RouteRuntime, writeIntents, type WriterDeps, type WriteSummary } from './writer.ts'

export { docId, idKey }

/** Where the rows are read: a table and the columns to read. */
export interface RowSource {
  schema: string
  table: string
  columns: readonly ColumnType[]
}

/**
 * The table with only the columns the route needs (all of them when it does not say), as the read plan selects
 * them: a re-read then needs no more privileges than backfill, and does not fetch big columns no mapping uses.
 */
function neededOf(route: MappingRoute, table: RowSource): RowSource {
  const needed = route.needed
  if (!needed) return table
  const ids = route.mapping.idColumns
  return { ...table, columns: table.columns.filter((c) => needed.has(c.name) || ids.includes(c.name)) }
}

/** The referenced rows as they are now, by idKey of their document id. */
export async function readCurrent(
  sql: postgres.Sql,
  route: MappingRoute,
  source: RowSource,
  keys: readonly (readonly (string | null)[])[],
): Promise<Map<string, Row>> {
  const m = route.mapping
  if (!keys.length) return new Map()
  const rows = await readRowsByKey(sql, source, source.columns, m.idColumns, route.keyTypes, keys)
  const found = new Map<string, Row>()
  for (const r of rows) {
    // an id that cannot be decoded (only if the key texts that found the row could not be): no document to match
    const id = docId(r, m.idColumns, m.idType === 'string')
    if (id !== undefined) found.set(idKey(id), r)
  }
  return found
}

/** Why a re-read row cannot be used whole (`re-read of t: cannot decode …`), or undefined when it can. */
function undecodableRow(m: Mapping, row: Row): string | undefined {
  const reason = undecodable(row)
  return reason === undefined ? undefined : `re-read of ${m.schema}.${m.table}: ${reason}`
}

/** What the document of an existing row must be: an upsert when it is a member. Throws what membership throws. */
export function decide(route: MappingRoute, row: Row): 'upsert' | 'delete' {
  return !route.isMember || route.isMember(row) ? 'upsert' : 'delete'
}

/**
 * The delete of a row's document at `lsn` (its current state is: gone, or not a member); `old`: the row as its
 * delete event names it (the key's values unless given).
 */
export function deleteIntent(route: MappingRoute, key: DocumentKey, lsn: bigint, old = key.values): Intent {
  const m = route.mapping
  const event = deleteEvent(key.id, m.schema, m.table, m.name, formatLsn(lsn), old)
  return { route, id: key.id, kind: 'delete', version: encodeVersion(lsn, 0), lsn, event, key }
}

/**
 * Reads each referenced row as it is now and returns one intent per reference (same order), versioned with `lsn`
 * (taken before this read): an upsert when the row exists and is a member, else a delete of its id. `undefined` for
 * a reference without a usable id, and for a row with a value that cannot be decoded (its dead letter goes to
 * `dead` when given: the other rows go on).
 */
export async function currentStateIntents(
  sql: postgres.Sql,
  route: RouteRuntime,
  columns: readonly ColumnType[],
  keys: readonly RowKey[],
  lsn: bigint,
  dead?: DeadLetter[],
): Promise<(Intent | undefined)[]> {
  const m = route.mapping
  const texts = keys.flatMap((k) => k.id === undefined ? [] : [k.texts])
  const found = await readCurrent(sql, route, { schema: m.schema, table: m.table, columns }, texts)
  return keys.map((key): Intent | undefined => {
    const id = key.id
    if (id === undefined) return undefined
    const row = found.get(idKey(id))
    if (row) {
      const error = undecodableRow(m, row)
      if (error) {
        const event = { type: 'insert', op: 'insert', id, mapping: m.name, old: key.values }
        dead?.push(deadLetter(m.name, lsn, key, event, error))
        return undefined
      }
    }
    if (row && decide(route, row) === 'upsert') {
      const event = rowEvent('insert', id, m.schema, m.table, m.name, formatLsn(lsn), row)
      return { route, id, kind: 'upsert', version: encodeVersion(lsn, 0), lsn, event, key }
    }
    return deleteIntent(route, { ...key, id }, lsn, row ?? key.values)
  })
}

/**
 * After current-state upserts of `refs` were written: deletes, at R = stableLsn(), the documents of the rows that
 * have gone or left the membership since they were read (their streamed delete may have landed before the upsert,
 * which then brought the document back). Undefined when every row is still there.
 */
export async function recheckWritten(
  route: RouteRuntime,
  columns: readonly ColumnType[],
  keys: readonly RowKey[],
  deps: WriterDeps,
  writtenTo?: ReadonlyMap<string, string>,
): Promise<WriteSummary | undefined> {
  if (!keys.length) return undefined
  const lsn = await stableLsn(deps.sql, { log: deps.log })
  const intents: Intent[] = []
  for (const i of await currentStateIntents(deps.sql, route, columns, keys, lsn)) {
    if (!i) continue
    // a namespace per tenant: where the upsert went (`writtenTo`, idKey of the id → namespace)
    const written = writtenTo?.get(idKey(i.id))
    if (i.kind === 'delete') {
      if (written !== undefined) i.namespace = written
      intents.push(i)
      continue
    }
    // the row moved to another tenant meanwhile: the stream's delete in the namespace written to may have landed
    // before this upsert (no tombstone), which brought a copy back there; it goes at `lsn` (a later write is newer)
    const now = intentNamespace(i)
    if (written !== undefined && (!now.ok || now.namespace !== written)) {
      const gone = deleteIntent(route, { ...i.key, id: i.id }, lsn, i.event.new ?? i.key.values)
      gone.namespace = written
      intents.push(gone)
    }
  }
  if (!intents.length) return undefined
  deps.log.debug('re-check: rows gone, out of the predicate or moved to another tenant since they were read', {
    mapping: route.mapping.name,
    rows: intents.length,
  })
  return await writeIntents(intents, [], deps)
}

/**
 * The stream's re-read: replaces each intent marked `reread` (its change lacks needed columns: unchanged TOAST
 * values, generated columns) by its row as it is now, found by the table's OID with the columns the table has now.
 * A row that is gone is dropped (a later change of the stream deleted it, and that delete will be applied); a row
 * whose membership cannot be evaluated goes to `dead`.
 */
export async function rereadIntents(
  sql: postgres.Sql,
  intents: Intent[],
  dead: DeadLetter[],
  log?: Logger,
): Promise<Intent[]> {
  const need = intents.filter((i) => i.reread)
  if (!need.length) return intents
  const groups = new Map<string, Intent[]>()
  for (const i of need) {
    const k = `${i.route.mapping.name}\u0000${i.relid!}`
    // push, not spread: a batch is re-read whole when its table has a generated column (spreading was quadratic)
    const list = groups.get(k)
    if (list) list.push(i)
    else groups.set(k, [i])
  }
  const replaced = new Map<Intent, Intent | undefined>()
  /** the whole group cannot be re-read: each change waits in the DLQ with `error`; its document keeps its version */
  const deadLetterAll = (group: Intent[], error: string) => {
    for (const i of group) {
      dead.push(intentDeadLetter(i, error))
      replaced.set(i, undefined)
    }
  }
  for (const group of groups.values()) {
    const route = group[0].route
    const m = route.mapping
    // the table as it is now, by OID: the relation message's name and columns may be out of date (DROP COLUMN, renames)
    const table = await tableByOid(sql, group[0].relid!)
    if (!table) {
      // dropped since (DROP TABLE): the row's current state is gone with it, and the change lacks values the
      // document needs; a dead letter says so (stream/dropped-tables.ts tells what to do with the mapping)
      deadLetterAll(
        group,
        `re-read: table ${m.schema}.${m.table} was dropped before the row could be read again (its change ` +
          `lacked unchanged TOAST or generated column values): the document keeps its earlier version`,
      )
      continue
    }
    const lost = m.idColumns.filter((c) => !table.columns.some((col) => col.name === c))
    if (lost.length) {
      // an id column renamed or dropped since: these rows cannot be found by key; they wait in the DLQ, the stream goes on
      deadLetterAll(
        group,
        `re-read: id column(s) ${lost.join(', ')} no longer in ${table.schema}.${table.table} (renamed or ` +
          `dropped): give the mapping its new id in a new migration version`,
      )
      continue
    }
    const found = await readCurrent(sql, route, neededOf(route, table), group.map((i) => i.key.texts))
    for (const i of group) {
      const row = found.get(idKey(i.id))
      if (!row) {
        // gone: its streamed delete follows; a tenant move's old namespace is known only here, so the row leaves it:
        // a delete of its old values (the namespace they name, and the id a transform gives them), not the change's
        // event, which a transform (or none) makes an upsert of the new values in the old namespace
        replaced.set(i, i.leave?.length ? { ...deleteOf(i, i.event.old ?? i.event.new), reread: undefined } : undefined)
        continue
      }
      const error = undecodableRow(m, row)
      if (error) {
        dead.push(intentDeadLetter(i, error))
        replaced.set(i, undefined)
        continue
      }
      let kind: 'upsert' | 'delete'
      try {
        kind = decide(route, row)
      } catch (e) {
        dead.push(intentDeadLetter(i, membershipFailure(e)))
        replaced.set(i, undefined)
        continue
      }
      // an inserted row that is not a member never had a document (a later change that made it one is streamed)
      if (kind === 'delete' && i.event.type === 'insert') {
        replaced.set(i, undefined)
        continue
      }
      replaced.set(i, {
        ...i,
        reread: undefined,
        kind,
        // the row was read with the table's columns as they are now: its write schema is typed from them too
        columns: table.columns,
        event: kind === 'upsert'
          ? { ...i.event, new: row }
          : deleteEvent(i.id, i.event.schema, i.event.table, i.event.mapping, i.event.lsn, row),
        // a move out of the membership: the delete's event has the values read now, and a transform names the
        // document the row had in the namespace it leaves by its old ones (leaves.ts)
        leftRows: kind === 'delete' && i.leave?.length && i.event.old ? [...i.leftRows ?? [], i.event.old] : i.leftRows,
      })
    }
  }
  log?.debug('re-read rows whose change lacked needed columns', { rows: need.length })
  return intents.flatMap((i) => {
    if (!replaced.has(i)) return [i]
    const r = replaced.get(i)
    return r ? [r] : []
  })
}
