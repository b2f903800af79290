// The rows of a decoded backfill batch as intents (upserts at the page's version) and the dead letters of the rows
// that cannot become documents. Shared by the page writers of copy.ts (one namespace) and tenant-page-writer.ts (a
// namespace per tenant), so that a row becomes the same intent whichever writes it.
import type { Mapping } from '../config/load.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import { formatLsn } from '../postgres/lsn.ts'
import type { Intent } from '../pipeline/changes.ts'
import { type RowKey, rowKey, textKey } from '../pipeline/row-key.ts'
import { rowEvent } from '../pipeline/row-event.ts'
import { idProblem } from '../pipeline/docid.ts'
import { deadLetter } from '../pipeline/dead-letter.ts'
import type { RouteRuntime } from '../pipeline/writer.ts'
import { encodeVersion } from '../types.ts'
import type { Page, ReadPlan } from '../source/mod.ts'

/** What turns a page's rows into intents: the mapping, its read plan and its route. */
export interface PageIntentsCtx {
  m: Mapping
  plan: ReadPlan
  route: RouteRuntime
}

/**
 * The dead letter of a page's row that cannot become a document: its key is the one the stream builds for the row,
 * so its entry is the one the stream files for the row, and `dlq retry` finds the row.
 */
function badRow(ctx: PageIntentsCtx, key: RowKey, lsn: bigint, error: string): DeadLetter {
  const m = ctx.m
  return deadLetter(
    m.name,
    lsn,
    key,
    { type: 'insert', op: 'insert', id: key.id, mapping: m.name, new: key.values },
    error,
  )
}

/** A decoded batch's rows as upsert intents at the page's version, and the dead letters of the rows that fail. */
export function batchIntents(ctx: PageIntentsCtx, batch: Page): { intents: Intent[]; dead: DeadLetter[] } {
  const { m, plan, route } = ctx
  const lsn = batch.lsn
  const lsnText = formatLsn(lsn)
  const version = encodeVersion(lsn, 0)
  const keyColumns = plan.keyIndex.map((k) => plan.columns[k])
  const intents: Intent[] = []
  const dead: DeadLetter[] = []
  for (let i = 0; i < batch.rows.length; i++) {
    const row = batch.rows[i]
    const texts = batch.keys.map((k) => k[i])
    const key = rowKey(m, row, texts)
    const id = key.id
    if (id === undefined) {
      // a negative integer id (NULL ids are not paged): no turbopuffer id, so a dead letter naming the fix
      const error = `backfill of ${m.schema}.${m.table}: ${idProblem(row, m.idColumns)}`
      dead.push(badRow(ctx, textKey(m, keyColumns, texts), lsn, error))
      continue
    }
    intents.push({
      route,
      id,
      kind: 'upsert',
      version,
      lsn,
      event: rowEvent('insert', id, m.schema, m.table, m.name, lsnText, row),
      key,
    })
  }
  for (const b of batch.bad) {
    dead.push(badRow(ctx, textKey(m, keyColumns, b.keys), lsn, `backfill of ${m.schema}.${m.table}: ${b.error}`))
  }
  return { intents, dead }
}
