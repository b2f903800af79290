// `puffgres verify <mapping>`: compares a namespace with its table's projection; --repair fixes the drift.
import { sinkFromConfig } from '../turbopuffer/from-config.ts'
import { parseFlags, positiveInt } from './flags.ts'
import type { Config } from '../config/load.ts'
import { createLogger } from '../log.ts'
import { findMapping } from '../ops/mapping-runtime.ts'
import { formatDriftReport, verifyMapping } from '../ops/verify.ts'
import { connect } from '../postgres/connect.ts'
import { tenantNamespace } from '../pipeline/tenant-values.ts'

export const help = `puffgres verify <mapping> [--repair] [--sample <N>] [--tenant <VALUE>] [--json]

Compares the mapping's namespace with what the mapping would write for the table as it is now (the member rows
through the transform): documents missing, extra, and with different attributes (compared by content hash; the
version attribute is left out). Prints a drift report. Run it when the stream has caught up: documents changed
while verify runs are counted apart, not judged.

A mapping with a namespace per tenant ([target] namespace = "docs_{workspace_id}") is checked in every namespace of
the mapping (listed by the template's prefix): each document must sit in the namespace its row routes to now. A
document in another tenant's namespace (the stale copy of a row that moved) is "misplaced"; namespaces no row routes
to any more are listed (they are kept; --repair deletes the documents in them, not the namespace).

Options:
  --repair      rewrite the missing and mismatched documents from their rows' current state and delete the extra
                ones, versioned so that a change streamed meanwhile still wins
  --sample <N>  check N randomly chosen member rows only (finds missing and mismatched documents, not extra ones)
  --tenant <VALUE>
                a tenant mapping: check one namespace, the template filled with VALUE (--tenant 7); with several
                placeholders, column=value pairs separated by commas (--tenant region=eu,org_id=7). Reads that
                tenant's rows only (selected by PostgreSQL where the placeholder columns' types allow), and the
                rows of documents found there that they do not make, by key
  --json        the report as one JSON object

Exit status: 0 in sync; 1 drift (with --repair: 0 once every drifted document was rewritten or deleted, 1 when a
repair write failed); 2 bad usage.
`

export async function verifyCommand(argv: string[], config: () => Config): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    { repair: { type: 'boolean' }, sample: { type: 'string' }, tenant: { type: 'string' }, json: { type: 'boolean' } },
    { allowPositionals: true },
  )
  if (positionals.length !== 1) {
    console.error('error: verify: expected one mapping name, e.g. puffgres verify products')
    return 2
  }
  const sample = values.sample === undefined ? undefined : positiveInt(values.sample, '--sample', 1)
  const cfg = config()
  let mapping
  try {
    mapping = findMapping(cfg, positionals[0])
  } catch (e) {
    console.error(`error: ${(e as Error).message}`)
    return 1
  }
  if (values.tenant !== undefined) {
    try {
      tenantNamespace(mapping, values.tenant)
    } catch (e) {
      console.error(`error: verify ${mapping.name}: ${(e as Error).message}`)
      return 2
    }
  }
  const log = createLogger()
  const sql = connect(cfg.postgres.connectionString, { max: 2, application: 'puffgres verify' })
  const sink = sinkFromConfig(
    cfg.turbopuffer,
    { log },
  )
  try {
    const report = await verifyMapping(cfg, mapping, { sql, sink }, {
      sample,
      repair: values.repair,
      tenant: values.tenant,
      log,
    })
    console.log(values.json ? JSON.stringify(report, null, 2) : formatDriftReport(report))
    if (!report.drift) return 0
    return report.repair && report.repair.failed === 0 ? 0 : 1
  } finally {
    await sql.end({ timeout: 2 })
  }
}
