// The rows of a decoded backfill batch as intents (upserts at the page's version) and the dead letters of the rows
// that cannot become documents. Shared by the page writers of copy.ts (one namespace) and tenant-page.ts (a
// namespace per tenant), so that a row becomes the same intent whichever writes it.
import { OID } from '../postgres/values.ts'
import type { Mapping } from '../config/load.ts'
import type { DeadLetter } from '../postgres/dlq.ts'
import { formatLsn } from '../postgres/lsn.ts'
import type { Intent } from '../pipeline/changes.ts'
import { keyRow, rowDocId } from '../pipeline/row-identity.ts'
import { rowEvent } from '../pipeline/row-event.ts'
import { idProblem } from '../pipeline/docid.ts'
import { deadLetter } from '../pipeline/dead-letter.ts'
import type { RouteRuntime } from '../pipeline/writer.ts'
import { encodeVersion } from '../types.ts'
import type { Page, ReadPlan } from '../source/mod.ts'

/** Types whose decoded values PostgreSQL reads back as the same key (numbers, texts, uuid, date, bool). */
const EXACT_KEY_TYPES = new Set<number>([
  OID.int2,
  OID.int4,
  OID.int8,
  OID.oid,
  OID.text,
  OID.varchar,
  OID.bpchar,
  OID.name,
  OID.uuid,
  OID.numeric,
  OID.date,
  OID.bool,
])

/** What turns a page's rows into intents: the mapping, its read plan and its route. */
export interface PageIntentsCtx {
  m: Mapping
  plan: ReadPlan
  route: RouteRuntime
}

/**
 * The dead letter of a page's row that cannot become a document: its id columns decoded from their texts as the
 * stream decodes them, so its entry is the one the stream files for the row, and `dlq retry` finds the row.
 */
export function badRow(ctx: PageIntentsCtx, texts: string[], lsn: bigint, error: string): DeadLetter {
  const { m, plan } = ctx
  const key = keyRow(plan.keyIndex.map((k) => plan.columns[k]), m.idColumns, texts)
  const id = rowDocId(m, key)
  return deadLetter(m.name, lsn, { texts, id }, { type: 'insert', op: 'insert', id, mapping: m.name, new: key }, error)
}

/** A decoded batch's rows as upsert intents at the page's version, and the dead letters of the rows that fail. */
export function batchIntents(ctx: PageIntentsCtx, batch: Page): { intents: Intent[]; dead: DeadLetter[] } {
  const { m, plan, route } = ctx
  const lsn = batch.lsn
  const lsnText = formatLsn(lsn)
  const version = encodeVersion(lsn, 0)
  // a dead letter's retry finds its row by the decoded key values when they print back exactly; otherwise (a
  // timestamp decoded to milliseconds, bytea as base64, ...) each intent carries its key texts
  const exactKeys = plan.keyIndex.every((k) => EXACT_KEY_TYPES.has(plan.columns[k].typeOid))
  const intents: Intent[] = []
  const dead: DeadLetter[] = []
  for (let i = 0; i < batch.rows.length; i++) {
    const row = batch.rows[i]
    const id = rowDocId(m, row)
    if (id === undefined) {
      // a negative integer id (NULL ids are not paged): no turbopuffer id, so a dead letter naming the fix
      const error = `backfill of ${m.schema}.${m.table}: ${idProblem(row, m.idColumns)}`
      dead.push(badRow(ctx, batch.keys.map((k) => k[i]), lsn, error))
      continue
    }
    intents.push({
      route,
      id,
      kind: 'upsert',
      version,
      lsn,
      event: rowEvent('insert', id, m.schema, m.table, m.name, lsnText, row),
      keyTexts: exactKeys ? undefined : batch.keys.map((k) => k[i]),
    })
  }
  for (const b of batch.bad) dead.push(badRow(ctx, b.keys, lsn, `backfill of ${m.schema}.${m.table}: ${b.error}`))
  return { intents, dead }
}
