// `puffgres backfill`: copies every member row of one mapping's table into its namespace, through the stream's own
// transform → versioned conditional writes → dead-letter queue path (pipeline/writer.ts). Versions and the re-check
// that keeps deleted rows from coming back: see page.ts.
// The run itself (pages, writes, re-checks, checkpoints) is copy.ts's; this file checks the options, takes the
// mapping's lock, makes sure of the slot, and says what happens (start, resume, restart).
import type { Config, Mapping } from '../config/load.ts'
import { createLogger } from '../log.ts'
import { connect } from '../postgres/connect.ts'
import { checkMigrated } from '../postgres/preflight.ts'
import { checkSlot, logFailoverEnabled } from '../postgres/slot-guard.ts'
import { ReplicationStream } from '../postgres/replication.ts'
import { buildRoutes } from '../pipeline/routes.ts'
import { type BackfillRecord, getBackfill, lockBackfill, startBackfill } from './checkpoint.ts'
import { planReads } from '../source/mod.ts'
import { formatCount } from './progress.ts'
import type { BackfillCtx, BackfillOptions, BackfillResult } from './options.ts'
import { copy, pageRows } from './copy.ts'
import { isTenantMapping } from '../pipeline/row-namespace.ts'

export const DEFAULT_BATCH_SIZE = 1000

export type { BackfillOptions, BackfillResult, BackfillStats } from './options.ts'
export { pageRows } from './copy.ts'

/** A problem with what was asked (unknown mapping, bad option): a one-line message. */
export class BackfillError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'BackfillError'
  }
}

/** A key for people: `id = (42)`, `(a, b) = (7, x)` (texts as PostgreSQL prints them, unquoted). */
export function showKey(m: Mapping, key: readonly string[] | null): string {
  if (!key) return '(start)'
  return `${m.idColumns.length > 1 ? `(${m.idColumns.join(', ')})` : m.idColumns[0]} = (${key.join(', ')})`
}

const when = (d: Date | null) => d ? d.toISOString().replace(/\.\d+Z$/, 'Z') : '?'

export async function backfill(config: Config, opts: BackfillOptions): Promise<BackfillResult> {
  const mapping = config.mappings.find((m) => m.name === opts.mapping)
  if (!mapping) {
    const names = config.mappings.map((m) => m.name)
    throw new BackfillError(
      `no mapping named "${opts.mapping}" (${names.length ? `mappings: ${names.join(', ')}` : 'no migrations'})`,
    )
  }
  if (opts.resume && opts.restart) throw new BackfillError('--resume and --restart exclude each other')
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new BackfillError(`batch size must be a positive integer`)
  const log = opts.log ?? createLogger()
  const say = opts.say ?? (() => {})
  const sql = connect(config.postgres.connectionString, { max: 4, application: 'puffgres backfill' })
  try {
    await checkMigrated(config, sql)
    const locked = await lockBackfill(sql, mapping.name)
    if (!locked.lock) return { outcome: 'busy', heldBy: locked.heldBy }
    try {
      return await underLock(config, mapping, opts, { sql, log, say, batchSize })
    } finally {
      await locked.lock.release().catch(() => {})
    }
  } finally {
    await sql.end({ timeout: 5 })
  }
}

async function underLock(config: Config, m: Mapping, opts: BackfillOptions, ctx: BackfillCtx): Promise<BackfillResult> {
  const { sql, log, say } = ctx
  const record = await getBackfill(sql, m.name, m.version)
  let resumeFrom: BackfillRecord | undefined
  if (record?.status === 'running') {
    if (opts.resume) resumeFrom = record
    else if (!opts.restart) return { outcome: 'unfinished', record, lastKey: showKey(m, record.lastKey) }
    else {
      say(
        `discarding the unfinished backfill of mapping "${m.name}" (${formatCount(record.rowsDone)} rows copied, ` +
          `up to ${showKey(m, record.lastKey)}): starting over`,
      )
    }
  } else if (record?.status === 'done') {
    if (opts.resume) return { outcome: 'finished-before', record }
    say(
      `the backfill of mapping "${m.name}" finished before (${when(record.finishedAt)}, ` +
        `${formatCount(record.rowsDone)} rows): starting over`,
    )
  } else if (opts.resume) {
    say(`no unfinished backfill of mapping "${m.name}" to resume: starting from the beginning`)
  }

  // The slot first: every change committed from here on is kept for `puffgres run`, which may not have started yet.
  const slot = opts.slot ?? config.stream.slot
  const rs = new ReplicationStream(config.postgres.connectionString, { applicationName: 'puffgres backfill' })
  try {
    // a slot that is gone after puffgres had written is a gap for every mapping: refuse as `run` does, unless told
    await checkSlot(sql, slot, opts.createSlot ? true : 'if-new', log, 'backfill')
    const { created, failover } = await rs.createSlot(slot, { failover: config.stream.failover_slot ?? true })
    if (failover === 'enabled') logFailoverEnabled(log, slot)
    if (created && resumeFrom) {
      log.warn(
        'the replication slot was missing and was created now: changes committed since the backfill started, to ' +
          'rows it had already copied, were not kept; consider --restart',
        { slot },
      )
    } else if (created) {
      say(`created replication slot "${slot}": \`puffgres run\` will stream every change committed from now on`)
    }
  } finally {
    await rs.close().catch(() => {})
  }

  const [route] = await buildRoutes({ ...config, mappings: [m] }, sql, log)
  try {
    const plan = await planReads(sql, m, route.needed)
    if (!plan.keyIndexed) {
      log.warn(
        'no unique index covers the id column(s): each page scans the table, and rows with equal ids can be ' +
          'skipped at a page boundary (they would be one document anyway)',
        { mapping: m.name, id: m.idColumns.join(', ') },
      )
    }
    if (resumeFrom) {
      say(
        `resuming the backfill of mapping "${m.name}" after ${showKey(m, resumeFrom.lastKey)} ` +
          `(${formatCount(resumeFrom.rowsDone)} rows already copied)`,
      )
    } else await startBackfill(sql, m.name, m.version, plan.estimate)
    const est = plan.estimate === undefined ? 'row count unknown' : `~${formatCount(plan.estimate)} rows`
    say(
      `backfilling mapping "${m.name}": ${m.schema}.${m.table} → namespace "${m.namespace}" (${est}, ` +
        `pages of ${formatCount(pageRows(ctx.batchSize, isTenantMapping(m)))} rows, written in batches of ${
          formatCount(ctx.batchSize)
        })`,
    )
    return await copy(config, m, plan, route, opts, ctx, resumeFrom)
  } finally {
    await route.runner.close().catch(() => {})
  }
}
