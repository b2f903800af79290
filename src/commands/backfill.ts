// `puffgres backfill <mapping>`: copies the rows already in a mapping's table into its namespace.
import { parseFlags, positiveInt, slotFlag, UsageError } from './flags.ts'
import process from 'node:process'
import type { Config } from '../config/load.ts'
import { createLogger } from '../log.ts'
import { NotMigratedError } from '../postgres/preflight.ts'
import { backfill, BackfillError, type BackfillResult, DEFAULT_BATCH_SIZE } from '../backfill/backfill.ts'
import { formatCount } from '../backfill/progress.ts'
import { SlotGoneError } from '../postgres/slot-guard.ts'
import { boundHeapGrowth, onShutdownSignals, traceMemory } from '../runtime.ts'

export const help = `puffgres backfill <mapping> [options]

Copies every row of the mapping's table that satisfies its membership predicate into its namespace, through the
same transform and versioned writes as \`puffgres run\`. Safe while \`run\` streams, and before it ever ran (the
replication slot is created first, so every change committed during the backfill is streamed afterwards). A row
changed or deleted during the backfill never ends up older, or back, in the namespace.

Rows are read in keyset pages of up to 10 batches (about 10,000 rows) by one COPY each; a batch is one transform
call and one write, and 4 batches are written at once. Progress is saved after every page. A backfill that was
interrupted (killed, crashed, Ctrl-C) is reported, and continues with --resume or starts over with --restart. A
finished backfill run again starts over.

Options:
  --batch-size <N>   rows per transform call and write (default ${DEFAULT_BATCH_SIZE})
  --resume           continue an unfinished backfill after its last saved page
  --restart          start over, discarding an unfinished backfill's progress
  --slot <NAME>      replication slot to create first (default: [stream] slot, or "puffgres"); on PostgreSQL
                     17+ a failover slot unless [stream] failover_slot = false, as \`run\` creates it
  --create-slot[=BOOL]
                     create the slot even when it is missing after puffgres had streamed or backfilled
                     (a gap in every mapping: exit 1 with what to do unless true)
  --discard          write nothing to turbopuffer (benchmarks)
`

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`
}

/** The lines printed for a result; `code` is the exit status. */
function describeResult(result: BackfillResult, mappingName: string): { code: number; out: string[] } {
  const resume = `puffgres backfill ${mappingName} --resume`
  switch (result.outcome) {
    case 'busy':
      return {
        code: 1,
        out: [
          `error: another backfill of mapping "${mappingName}" is running` +
          (result.heldBy ? ` (PostgreSQL backend pid ${result.heldBy})` : ''),
        ],
      }
    case 'unfinished': {
      const r = result.record
      return {
        code: 1,
        out: [
          `error: the backfill of mapping "${mappingName}" started ${r.startedAt.toISOString()} is unfinished: ` +
          `${formatCount(r.rowsDone)} rows copied, up to ${result.lastKey} (saved ${r.updatedAt.toISOString()})`,
          `  continue it:  ${resume}`,
          `  start over:   puffgres backfill ${mappingName} --restart`,
        ],
      }
    }
    case 'finished-before':
      return {
        code: 0,
        out: [
          `the backfill of mapping "${mappingName}" finished ${result.record.finishedAt?.toISOString()} ` +
          `(${formatCount(result.record.rowsDone)} rows): nothing to resume (run it without --resume to start over)`,
        ],
      }
    case 'stopped':
      return {
        code: 130,
        out: [
          `stopped: ${formatCount(result.rowsDone)} rows copied so far; continue with \`${resume}\``,
        ],
      }
    case 'done': {
      const rate = result.ms > 0 ? result.rows / (result.ms / 1000) : 0
      const extra = [
        result.deleted ? `${formatCount(result.deleted)} deleted (gone or out of the predicate since read)` : '',
        result.skipped ? `${formatCount(result.skipped)} skipped (the namespace held a newer version)` : '',
        result.deadLettered ? `${formatCount(result.deadLettered)} dead-lettered (see __puffgres_dlq)` : '',
        result.nullIds
          ? `${formatCount(result.nullIds)} row${result.nullIds === 1 ? '' : 's'} with a NULL id skipped`
          : '',
      ].filter(Boolean)
      return {
        code: 0,
        out: [
          `backfill of mapping "${mappingName}" done: ${formatCount(result.rows)} rows` +
          (result.resumed ? ` this run (${formatCount(result.rowsDone)} in all)` : '') +
          `, ${formatCount(result.docsWritten)} documents written` +
          (extra.length ? `, ${extra.join(', ')}` : '') +
          ` in ${seconds(result.ms)} (${formatCount(rate)} rows/s)`,
        ],
      }
    }
  }
}

export async function backfillCommand(argv: string[], config: () => Config): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    'batch-size': { type: 'string' },
    resume: { type: 'boolean' },
    restart: { type: 'boolean' },
    slot: { type: 'string' },
    'create-slot': { type: 'boolean' },
    discard: { type: 'boolean' },
  }, { allowPositionals: true })
  let cfg: Config
  let batchSize: number
  const createSlot = values['create-slot'] ?? false
  try {
    if (positionals.length !== 1) {
      throw new BackfillError(
        positionals.length ? `one mapping at a time (got ${positionals.join(', ')})` : 'which mapping? usage: ' +
          'puffgres backfill <mapping> [--batch-size N] [--resume] [--restart]',
      )
    }
    if (values.resume && values.restart) throw new BackfillError('--resume and --restart exclude each other')
    batchSize = positiveInt(values['batch-size'], '--batch-size', DEFAULT_BATCH_SIZE)
    cfg = config()
  } catch (e) {
    if (!(e instanceof BackfillError || e instanceof UsageError)) throw e
    console.error(`error: ${e.message}`)
    return 2
  }
  const name = positionals[0]
  const log = createLogger()
  const stop = new AbortController()
  const offSignals = onShutdownSignals((signal) => {
    if (stop.signal.aborted) process.exit(130) // the last saved page is where --resume continues
    process.stderr.write(`\n${signal}: finishing the page being written (Ctrl-C again to quit at once)\n`)
    stop.abort()
  })
  // Deno: a heap that grows to ~4× what is alive before V8 collects (runtime.ts); looser than run's, for throughput
  const offHeapBound = boundHeapGrowth({ slackBytes: 32 * 1024 * 1024, minGapMs: 500, bun: false })
  const offTrace = traceMemory()
  try {
    const result = await backfill(cfg, {
      mapping: name,
      batchSize,
      resume: values.resume,
      restart: values.restart,
      slot: slotFlag(values.slot),
      createSlot,
      discard: values.discard,
      log,
      say: (line) => console.log(line),
      progress: { tty: !!process.stderr.isTTY, write: (s) => process.stderr.write(s) },
      signal: stop.signal,
    })
    const { code, out } = describeResult(result, name)
    for (const line of out) (code === 1 ? console.error : console.log)(line)
    return code
  } catch (e) {
    if (e instanceof BackfillError || e instanceof NotMigratedError || e instanceof SlotGoneError) {
      console.error(`error: ${e.message}`)
      return 1
    }
    throw e
  } finally {
    offSignals()
    offHeapBound()
    offTrace()
  }
}
