// `puffgres dlq retry`: re-runs transform + sink for dead-lettered rows against their *current* state in PostgreSQL
// and removes an entry only when that write succeeded (a retried old event never regresses a newer document).
import type postgres from 'postgres'
import type { Config } from '../config/load.ts'
import { currentStateIntents, recheckWritten } from '../pipeline/row-identity.ts'
import { keyIdText, storedKey } from '../pipeline/row-key.ts'
import { sweepRacedRows, writeIntents } from '../pipeline/writer.ts'
import { rowDocumentsMode } from '../config/row-documents.ts'
import { type Intent, LEAVE_NAMESPACES, LEFT_ROWS } from '../pipeline/changes.ts'
import { intentNamespace } from '../pipeline/intent-namespace.ts'
import { NAMESPACE_NAME } from '../config/row-documents.ts'
import type { DeadLetter, DlqEntry } from '../postgres/dlq.ts'
import { deleteDeadLetters, recordRetryFailure } from '../postgres/dlq.ts'
import { stableLsn } from '../postgres/stable-lsn.ts'
import type { Sink } from '../turbopuffer/types.ts'
import { listMappingNamespaces } from '../turbopuffer/mapping-namespaces.ts'
import { idKey, type Logger, type Row } from '../types.ts'
import { findMapping, type MappingRuntime, openMapping } from './mapping-runtime.ts'
import { keyTextRefused } from '../source/mod.ts'
import { MembershipError, membershipFailure } from '../membership/mod.ts'

export interface RetryOutcome {
  id: string
  mapping: string
  doc_id: string | null
  ok: boolean
  /** what was written: the row's current state (upsert), its absence (delete), or nothing (the transform skipped) */
  action?: 'upsert' | 'delete'
  error?: string
}

/** The namespaces a dead-lettered tenant move had to leave, as its event recorded them (LEAVE_NAMESPACES). */
function leftNamespaces(entry: DlqEntry): string[] {
  const list = (entry.event as Record<string, unknown> | null)?.[LEAVE_NAMESPACES]
  return Array.isArray(list) ? list.filter((n): n is string => typeof n === 'string' && NAMESPACE_NAME.test(n)) : []
}

/**
 * The values a dead-lettered tenant move had in the namespaces it had to leave: its event's old row, and those of
 * changes collapsed into it (LEFT_ROWS). A transform names the document to delete there by them (leaves.ts); the row
 * read now names the one it has now.
 */
function leftRows(entry: DlqEntry): Row[] {
  const event = entry.event as Record<string, unknown> | null
  const rows = [event?.old, ...Array.isArray(event?.[LEFT_ROWS]) ? event[LEFT_ROWS] as unknown[] : []]
  return rows.filter((r): r is Row => typeof r === 'object' && r !== null && !Array.isArray(r))
}

/** A tenant mapping's namespaces, listed once per retry run (a delete that names no tenant looks in each). */
const listed = new WeakMap<MappingRuntime, Promise<string[]>>()
function namespacesOf(sink: Sink, rt: MappingRuntime): Promise<string[]> {
  let list = listed.get(rt)
  if (!list) listed.set(rt, list = listMappingNamespaces(sink, rt.mapping))
  return list
}

/**
 * Retries entries one mapping at a time. Each entry: L = stableLsn() first, then the row is read as it is now and
 * written (upsert if it exists and is a member, else delete) with version L through the stream's writer. Success
 * removes the entry; failure records one more attempt with the new error.
 */
export async function retryDeadLetters(
  config: Config,
  sql: postgres.Sql,
  sink: Sink,
  entries: DlqEntry[],
  log: Logger,
): Promise<RetryOutcome[]> {
  const out: RetryOutcome[] = []
  const byMapping = new Map<string, DlqEntry[]>()
  for (const e of entries) byMapping.set(e.mapping, [...(byMapping.get(e.mapping) ?? []), e])
  for (const [name, list] of byMapping) {
    let rt: MappingRuntime
    try {
      rt = await openMapping(config, sql, log, findMapping(config, name))
    } catch (err) {
      const error = `cannot retry: ${(err as Error).message}`
      for (const e of list) {
        await recordRetryFailure(sql, e.id, error)
        out.push({ id: e.id, mapping: name, doc_id: e.doc_id, ok: false, error })
      }
      continue
    }
    try {
      for (const e of list) out.push(await retryOne(sql, sink, rt, e, log))
    } finally {
      await rt.close()
    }
  }
  return out
}

async function retryOne(
  sql: postgres.Sql,
  sink: Sink,
  rt: MappingRuntime,
  entry: DlqEntry,
  log: Logger,
): Promise<RetryOutcome> {
  const base = { id: entry.id, mapping: entry.mapping, doc_id: entry.doc_id }
  const fail = async (error: string): Promise<RetryOutcome> => {
    await recordRetryFailure(sql, entry.id, error)
    log.warn('dead-letter retry failed', { mapping: entry.mapping, id: entry.doc_id, entry: entry.id, error })
    return { ...base, ok: false, error }
  }
  // the key the stream or backfill stored: its texts find the row exactly (older entries: the decoded values)
  const key = storedKey(rt.mapping, rt.plan.columns, entry.event, entry.doc_id)
  if (key?.id === undefined) {
    const columns = rt.mapping.idColumns.join(', ')
    const named = key && keyIdText(key)
    return await fail(
      named === undefined
        ? `cannot retry: the event has no value for id column(s) ${columns} (clear it instead)`
        : `cannot retry: key ${named} of id column(s) ${columns} gives no document id (a negative integer, or a ` +
          `value that cannot be decoded); clear it instead`,
    )
  }
  // L before the read: a change committed after it is streamed with a higher version and wins over this write
  const lsn = await stableLsn(sql, { log })
  // the id was checked above, so there is an intent unless the row has a value that cannot be decoded
  const unreadable: DeadLetter[] = []
  let intent: Intent | undefined
  try {
    ;[intent] = await currentStateIntents(sql, rt.route, rt.plan.columns, [key], lsn, unreadable)
  } catch (err) {
    // the row's membership cannot be evaluated (e.g. its column was dropped): the entry stays, saying so as the
    // stream said it (`membership: …`), instead of ending the whole retry with a stack trace
    if (err instanceof MembershipError) return await fail(membershipFailure(err))
    // a key its id columns' types refuse names no row: a document id filed as a row's (older versions of verify
    // --repair filed the refused delete of a document a transform named so); it fails alone, the others go on
    if (keyTextRefused(err)) {
      const m = rt.mapping
      return await fail(
        `cannot retry: ${keyIdText(key)} is no key of ${m.schema}.${m.table} (${(err as Error).message}); ` +
          `\`puffgres verify ${m.name} --repair\` deletes a document no row makes, then \`puffgres dlq clear --id ${entry.id}\``,
      )
    }
    throw err
  }
  if (!intent) return await fail(unreadable[0]?.error ?? 'cannot retry: the row cannot be read')
  // a tenant move's dead letter: the row leaves the namespace it moved out of first (pipeline/intent-namespace.ts)
  const leave = leftNamespaces(entry)
  if (leave.length) {
    intent.leave = leave
    const rows = leftRows(entry)
    if (rows.length) intent.leftRows = rows
  }
  if (intent.kind === 'delete' && rt.mapping.namespaceTemplate && !intentNamespace(intent).ok) {
    // a delete whose values name no tenant (its placeholder columns were outside the replica identity): the document
    // is looked for in every namespace of the mapping, deleted at L wherever it is (a later write there is newer)
    let all: string[]
    try {
      all = await namespacesOf(sink, rt)
    } catch (err) {
      listed.delete(rt)
      return await fail(`cannot list the namespaces of ${rt.mapping.namespace}: ${(err as Error).message}`)
    }
    const [first, ...rest] = all
    if (first !== undefined) {
      intent.namespace = first
      intent.leave = [...new Set([...leave, ...rest])].filter((n) => n !== first)
    }
  }
  const dead: DeadLetter[] = []
  let summary
  const deps = { sink, sql, log }
  try {
    summary = await writeIntents([intent], dead, deps)
    if (intent.kind === 'upsert' && !summary.deadLettered && rowDocumentsMode(rt.mapping)) {
      // chunks a newer version of the row, streamed before this write landed, lacks (docs/ARCHITECTURE.md, invariant 11)
      const at = intentNamespace(intent)
      if (at.ok) await sweepRacedRows(sink, at.namespace, [String(intent.id)], intent.version)
    }
    // the row may have been deleted while it was transformed and its streamed delete applied before this upsert
    // (an embedding call takes seconds): look again, and delete what is gone (docs/ARCHITECTURE.md invariant 2)
    if (intent.kind === 'upsert' && !summary.deadLettered) {
      // where it was written: a tenant move meanwhile is deleted there (its streamed delete may have landed first)
      const at = intentNamespace(intent)
      const writtenTo = at.ok ? new Map([[idKey(intent.id), at.namespace]]) : undefined
      const deleted = await recheckWritten(rt.route, rt.plan.columns, [key], deps, writtenTo)
      // that delete's failure is a dead letter of its own (the writer recorded it on this entry)
      if (deleted?.deadLettered) {
        return { ...base, ok: false, error: 'the row was deleted meanwhile; its delete failed' }
      }
    }
  } catch (err) {
    return await fail((err as Error).message)
  }
  if (summary.deadLettered) {
    // the writer has already recorded the failure on the entry of this mapping and document (attempts + 1, error);
    // an entry for another document id (a transform that renames ids) is counted here
    if (!dead.some((d) => d.docId === entry.doc_id)) await recordRetryFailure(sql, entry.id, dead[0].error)
    log.warn('dead-letter retry failed', {
      mapping: entry.mapping,
      id: entry.doc_id,
      entry: entry.id,
      error: dead[0].error,
    })
    return { ...base, ok: false, error: dead[0].error }
  }
  if (!await deleteDeadLetters(sql, { id: entry.id, unchanged: entry })) {
    // a newer failure of the row was filed on the entry while this retry wrote: it stays, for the next retry
    log.warn('dead-letter entry kept: the row failed again while it was retried', {
      mapping: entry.mapping,
      id: entry.doc_id,
      entry: entry.id,
    })
    return { ...base, ok: false, error: 'the row failed again while it was retried; the entry is kept' }
  }
  log.info('dead-letter entry retried', {
    mapping: entry.mapping,
    id: entry.doc_id,
    entry: entry.id,
    write: intent.kind,
  })
  return { ...base, ok: true, action: intent.kind }
}
