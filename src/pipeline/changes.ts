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
  /** the id columns' types as a cast names them (`timestamp with time zone`, `character(10)`): re-reads by key */
  keyTypes: string[]
  /** stored generated columns the mapping reads: when a Relation lacks them (pgoutput does not publish them), re-read */
  generated?: readonly { name: string; typeOid: number; typeName?: string }[]
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
  /** the change's relation and the tuple holding the row's key (stream): its key texts are read from them on demand */
  relation?: Relation
  tuple?: Tuple
  /** the key texts where there is no tuple (backfill; only for keys whose decoded values do not find the row) */
  keyTexts?: (string | null)[]
}

/** The stored generated columns the route reads that the relation (as pgoutput sent it) lacks. */
export function unpublishedGenerated(route: MappingRoute, rel: Relation) {
  return route.generated?.filter((g) => !rel.columns.some((c) => c.name === g.name)) ?? []
}

/**
 * The id columns of an intent's row as PostgreSQL printed them, if known: they find the row exactly (a decoded
 * timestamp has lost its microseconds). Read only when needed: for a re-read, or kept by a dead letter.
 */
export function intentKeyTexts(i: Intent): (string | null)[] | undefined {
  return i.keyTexts ?? (i.relation && i.tuple && keyTexts(i.relation, i.tuple, i.route.mapping.idColumns))
}

/** What a dead letter keeps of an intent's event: the event, and the key texts that find its row again. */
export function deadLetterEvent(i: Intent): unknown {
  const keyTexts = intentKeyTexts(i)
  return keyTexts ? { ...i.event, key_texts: keyTexts } : i.event
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
  const base = { version: pos.version, lsn: pos.commitLsn, relation: rel }
  if (msg.tag === 'delete') {
    const oldTuple = msg.old ?? msg.key
    const old = oldTuple ? decodeTuple(rel.columns, oldTuple).row : {}
    for (const route of routes) {
      const id = docId(old, route.mapping.idColumns)
      if (id === undefined) {
        bad({ route, lsn: pos.commitLsn, event: { type: 'delete', old }, error: idError(route, rel, 'delete') })
        continue
      }
      out({
        route,
        id,
        kind: 'delete',
        event: event('delete', id, rel, route, lsnText, { old }),
        tuple: oldTuple,
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
    const needsReread = (unchanged.length > 0 && unchanged.some((c) => !route.needed || route.needed.has(c))) ||
      unpublishedGenerated(route, rel).length > 0
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
        out({
          route,
          id: oldId,
          kind: 'delete',
          event: event('delete', oldId, rel, route, lsnText, { old }),
          tuple: oldTuple,
          ...base,
        })
      }
    }
    const tuple = msg.new
    if (needsReread) {
      const e = event(type, id, rel, route, lsnText, { new: row, old })
      out({ route, id, kind: 'upsert', event: e, reread: true, tuple, ...base })
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
      out({ route, id, kind: 'upsert', event: event(type, id, rel, route, lsnText, { new: row, old }), tuple, ...base })
    } else if (type === 'update') {
      // the row left the membership predicate (or never was in it): its document must not exist
      const e = event('delete', id, rel, route, lsnText, { old: row })
      out({ route, id, kind: 'delete', event: e, tuple, ...base })
    }
  }
}

function idError(route: MappingRoute, rel: Relation, kind: string): string {
  return `mapping ${route.mapping.name}: ${kind} on ${rel.schema}.${rel.name} without a value for id column(s) ` +
    `${route.mapping.idColumns.join(', ')} (is the table's REPLICA IDENTITY enough? see puffgres migrate)`
}
