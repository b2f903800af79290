// `puffgres status`: where each mapping and the stream stand.
import { parseFlags, slotFlag } from './flags.ts'
import type { Config } from '../config/load.ts'
import { connect } from '../postgres/connect.ts'
import { formatStatus, gatherStatus } from '../ops/status.ts'
import { isTenantMapping } from '../pipeline/row-namespace.ts'
import { sinkFromConfig } from '../turbopuffer/from-config.ts'

export const help = `puffgres status [--json] [--slot <NAME>]

Per mapping: namespace, migration version, documents written (upserts/deletes), the last change applied (time and
LSN), backfill state and progress, dead-letter queue count, and the attribute schema it declares (from the column
types and [target.schema]). For the stream: the slot, whether a \`run\` streams it (and which server pid), its
confirmed flush LSN, lag behind the server in bytes and time, and the WAL it retains. For a mapping with a
namespace per tenant ([target] namespace = "docs_{workspace_id}"): how many namespaces it has and the 5 largest by
document count (asked of turbopuffer, 1,000 names a request); --json lists every one.

Options:
  --json         one JSON object (stable field names, for scripts)
  --slot <NAME>  the replication slot (default: [stream] slot, or "puffgres")
`

export async function statusCommand(argv: string[], config: () => Config): Promise<number> {
  const { values } = parseFlags(argv, { json: { type: 'boolean' }, slot: { type: 'string' } })
  const cfg = config()
  const sql = connect(cfg.postgres.connectionString, { max: 2, application: 'puffgres status' })
  try {
    // tenant mappings' namespaces are counted on turbopuffer: a sink only when there is one
    const tenants = cfg.mappings.some(isTenantMapping)
      // retried while turbopuffer is unreachable, but status gives up after 2 minutes (the report says so)
      ? { sink: sinkFromConfig(cfg.turbopuffer, { signal: AbortSignal.timeout(120_000) }), all: values.json === true }
      : undefined
    const report = await gatherStatus(cfg, sql, slotFlag(values.slot) ?? cfg.stream.slot, tenants)
    console.log(values.json ? JSON.stringify(report, null, 2) : formatStatus(report))
    return 0
  } finally {
    await sql.end({ timeout: 2 })
  }
}
