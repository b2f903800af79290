// `puffgres reindex <mapping> [--retire [--delete-namespace]]`: a new version of a mapping built into a new
// namespace while the old one keeps serving (ops/reindex.ts), then the old one retired.
import type { Config } from '../config/load.ts'
import { connect } from '../postgres/connect.ts'
import { createLogger } from '../log.ts'
import { parseFlags, slotFlag, UsageError } from './flags.ts'
import { applyMigrate, MigrateError, planMigrate } from './migrate.ts'
import { backfillCommand } from './backfill.ts'
import { planReindex, ReindexError, retireKept, waitPast } from '../ops/reindex.ts'
import { sinkFromConfig } from '../turbopuffer/from-config.ts'

export const help = `puffgres reindex <mapping> [options]

Re-indexes a mapping without downtime: the newest version in puffgres/migrations (same name, higher version, a new
target.namespace, the same table; e.g. a changed transform, columns or embedding model, or a type turbopuffer cannot
change) is built into its new namespace while the version serving now keeps being written:
  1. applies the new version as \`migrate\` does, keeping the current version live: a running \`run\` writes every
     change committed from then on to both namespaces (no restart)
  2. backfills the new namespace (as \`puffgres backfill <mapping>\`; --resume continues an interrupted one)
Then \`status\` shows both versions; once the new namespace is caught up and the application reads it:
  puffgres reindex <mapping> --retire [--delete-namespace]
stops the writes to the old namespace (from that point of the stream on) and, with --delete-namespace, deletes it
once every \`run\` streaming from the database (any slot) has passed that point.

Options:
  --retire             retire the older version(s) kept live by a re-index of the mapping
  --delete-namespace   with --retire: delete the retired namespace(s) and their documents
  --resume             continue an interrupted backfill of the new version
  --slot <NAME>        replication slot of the backfill (default: [stream] slot, or "puffgres")
  --batch-size <N>     rows per transform call and write of the backfill
`

export async function reindexCommand(argv: string[], config: () => Config): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    retire: { type: 'boolean' },
    'delete-namespace': { type: 'boolean' },
    resume: { type: 'boolean' },
    slot: { type: 'string' },
    'batch-size': { type: 'string' },
  }, { allowPositionals: true })
  if (positionals.length !== 1) {
    throw new UsageError('which mapping? usage: puffgres reindex <mapping> [--retire [--delete-namespace]]')
  }
  if (values['delete-namespace'] && !values.retire) throw new UsageError('--delete-namespace goes with --retire')
  const name = positionals[0]
  const cfg = config()
  const slot = slotFlag(values.slot) ?? cfg.stream.slot
  const sql = connect(cfg.postgres.connectionString, { max: 2 })
  try {
    if (values.retire) {
      const { namespaces, lsn } = await retireKept(cfg, sql, name)
      console.log(`retired: namespace ${namespaces.join(', ')} is no longer written (changes from now on)`)
      if (!values['delete-namespace']) return 0
      const behind = await waitPast(sql, lsn, 120_000)
      if (behind.length) {
        console.error(
          `error: \`run\` on slot ${behind.map((s) => `"${s}"`).join(', ')} has not passed the retire yet: run ` +
            `\`puffgres reindex ${name} --retire --delete-namespace\` again later (the retire itself is done)`,
        )
        return 1
      }
      const sink = sinkFromConfig(cfg.turbopuffer, { log: createLogger() })
      for (const ns of namespaces) {
        await sink.deleteNamespace(ns)
        console.log(`deleted namespace ${ns}`)
      }
      return 0
    }
    const plan = await planReindex(cfg, sql, name)
    if (plan.current) {
      const migrate = await planMigrate(cfg, sql)
      for (const w of migrate.warnings) console.error(`warning: ${w}`)
      await applyMigrate(sql, migrate, plan.current)
      console.log(
        `applied ${name} v${plan.next.version} → namespace ${plan.next.namespace}; v${plan.current.version} ` +
          `(namespace ${plan.current.namespace}) stays live: \`run\` writes every change to both`,
      )
    }
    const backfillArgs = [name, ...(values.resume ? ['--resume'] : []), '--slot', slot]
    if (values['batch-size']) backfillArgs.push('--batch-size', values['batch-size'])
    const code = await backfillCommand(backfillArgs, () => cfg)
    if (code !== 0) return code
    console.log(
      `namespace ${plan.next.namespace} is built and kept up to date; once the application reads it: ` +
        `puffgres reindex ${name} --retire [--delete-namespace]`,
    )
    return 0
  } catch (e) {
    if (e instanceof ReindexError || e instanceof MigrateError) {
      console.error(`error: ${e.message}`)
      return 1
    }
    throw e
  } finally {
    await sql.end({ timeout: 2 })
  }
}
