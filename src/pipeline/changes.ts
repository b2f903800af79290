// Decoded pgoutput changes → per-document intents for each mapping of the table (ARCHITECTURE.md invariant 5).
import type { Mapping } from '../config/load.ts'
import type { DeleteMessage, InsertMessage, Relation, Tuple, UpdateMessage } from '../postgres/pgoutput.ts'
import { decodeTuple } from '../postgres/values.ts'
import { formatLsn } from '../postgres/lsn.ts'
import type { Id, Row, RowEvent } from '../types.ts'
import { docId } from './docid.ts'

/** What the stream knows about one mapping while it runs. */
export interface MappingRoute {
  mapping: Mapping
  /** the membership predicate compiled; undefined: every row belongs */
  isMember?: (row: Row) => boolean
  /** columns the mapping reads (mapped, id, membership, embedding); undefined: all of them */
  needed?: Set<string>
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
  /** the update left needed TOASTed columns unchanged: re-read the row (by these key texts) before transforming */
  reread?: { relation: Relation; keyTexts: (string | null)[] }
  /**
   * the id columns as PostgreSQL printed them: a dead letter keeps them, so that a retry finds the row exactly (a
   * decoded timestamp has lost its microseconds)
   */
  keyTexts?: (string | null)[]
}

/** A change whose id cannot be read (NULL id column): it goes to the dead-letter queue. */
export interface BadChange {
  route: MappingRoute
  lsn: bigint
  event: unknown
  error: string
}

export interface TxnPosition {
  commitLsn: bigint
  version: string
}

function event(
  type: RowEvent['type'],
  id: Id,
  rel: Relation,
  route: MappingRoute,
  lsn: string,
  rows: { new?: Row; old?: Row },
): RowEvent {
  return { type, op: type, id, schema: rel.schema, table: rel.name, ...rows, lsn, mapping: route.mapping.name }
}

function keyTexts(rel: Relation, tuple: Tuple, idColumns: readonly string[]): (string | null)[] {
  return idColumns.map((c) => {
    const i = rel.columns.findIndex((col) => col.name === c)
    const v = tuple[i]
    return v?.kind === 'text' ? v.value : null
  })
}

/**
 * Turns one change into intents, calling `out` for each. Decodes each tuple once for all routes of the table.
 * Membership decides upsert or delete; an update that changes the id also deletes the old id.
 */
export function changeIntents(
  msg: InsertMessage | UpdateMessage | DeleteMessage,
  routes: readonly MappingRoute[],
  pos: TxnPosition,
  out: (i: Intent) => void,
  bad: (b: BadChange) => void,
): void {
  const rel = msg.relation
  const lsnText = formatLsn(pos.commitLsn)
  const base = { version: pos.version, lsn: pos.commitLsn }
  if (msg.tag === 'delete') {
    const oldTuple = msg.old ?? msg.key
    const old = oldTuple ? decodeTuple(rel.columns, oldTuple).row : {}
    for (const route of routes) {
      const id = docId(old, route.mapping.idColumns)
      if (id === undefined) {
        bad({ route, lsn: pos.commitLsn, event: { type: 'delete', old }, error: idError(route, rel, 'delete') })
        continue
      }
      const keys = oldTuple && keyTexts(rel, oldTuple, route.mapping.idColumns)
      out({
        route,
        id,
        kind: 'delete',
        event: event('delete', id, rel, route, lsnText, { old }),
        keyTexts: keys,
        ...base,
      })
    }
    return
  }
  const { row, unchanged } = decodeTuple(rel.columns, msg.new)
  const oldTuple = msg.tag === 'update' ? (msg.old ?? msg.key) : undefined
  const old = oldTuple ? decodeTuple(rel.columns, oldTuple).row : undefined
  for (const route of routes) {
    const m = route.mapping
    const needsReread = unchanged.length > 0 && unchanged.some((c) => !route.needed || route.needed.has(c))
    const id = docId(row, m.idColumns)
    if (id === undefined) {
      bad({ route, lsn: pos.commitLsn, event: { type: msg.tag, new: row }, error: idError(route, rel, msg.tag) })
      continue
    }
    const type = msg.tag
    if (old) {
      const oldId = docId(old, m.idColumns)
      // an id change: the old document goes (the new one is written below if the row belongs)
      if (oldId !== undefined && oldId !== id) {
        const keys = keyTexts(rel, oldTuple!, m.idColumns)
        out({
          route,
          id: oldId,
          kind: 'delete',
          event: event('delete', oldId, rel, route, lsnText, { old }),
          keyTexts: keys,
          ...base,
        })
      }
    }
    const keys = keyTexts(rel, msg.new, m.idColumns)
    if (needsReread) {
      out({
        route,
        id,
        kind: 'upsert',
        event: event(type, id, rel, route, lsnText, { new: row, old }),
        reread: { relation: rel, keyTexts: keys },
        keyTexts: keys,
        ...base,
      })
      continue
    }
    let member: boolean
    try {
      member = !route.isMember || route.isMember(row)
    } catch (e) {
      bad({ route, lsn: pos.commitLsn, event: { type, id, new: row }, error: `membership: ${(e as Error).message}` })
      continue
    }
    if (member) {
      out({
        route,
        id,
        kind: 'upsert',
        event: event(type, id, rel, route, lsnText, { new: row, old }),
        keyTexts: keys,
        ...base,
      })
    } else if (type === 'update') {
      // the row left the membership predicate (or never was in it): its document must not exist
      out({
        route,
        id,
        kind: 'delete',
        event: event('delete', id, rel, route, lsnText, { old: row }),
        keyTexts: keys,
        ...base,
      })
    }
  }
}

function idError(route: MappingRoute, rel: Relation, kind: string): string {
  return `mapping ${route.mapping.name}: ${kind} on ${rel.schema}.${rel.name} without a value for id column(s) ` +
    `${route.mapping.idColumns.join(', ')} (is the table's REPLICA IDENTITY enough? see puffgres migrate)`
}
