// `puffgres doctor`: checks everything `run` needs, one line each; exit 0 only when every check passes.
import type { Config } from '../config/load.ts'
import { scrub } from '../log.ts'
import { runDoctor } from '../ops/doctor.ts'
import { parseFlags, slotFlag } from './flags.ts'

export const help = `puffgres doctor [options]

Checks, without changing anything, everything \`puffgres run\` needs, one line each (✓ fine, ✗ what to fix):
the connection to PostgreSQL, wal_level, the replication privilege, free replication slots and WAL senders, the
publication, the replication slot (that its WAL can be decoded with the publication) and the WAL it retains, on
PostgreSQL 17+ the slot's failover flag and synchronized_standby_slots, the replica identity of every mapped
table, turbopuffer (reachable, key accepted), that every transform loads, and the embeddings provider when one is
configured. A warning (! what to fix) does not fail. Exits 0 when every check passes, 1 otherwise.

Options:
  --slot <NAME>          replication slot (default: [stream] slot, or "puffgres")
  --publication <NAME>   publication (default: [stream] publication, or "puffgres_pub"), as \`run --publication\`
`

export async function doctorCommand(argv: string[], config: () => Config): Promise<number> {
  const { values } = parseFlags(argv, { slot: { type: 'string' }, publication: { type: 'string' } })
  const cfg = config()
  const checks = await runDoctor(cfg, { slot: slotFlag(values.slot), publication: values.publication })
  for (const c of checks) console.log(scrub(`${c.warn ? '!' : c.ok ? '✓' : '✗'} ${c.name}: ${c.detail}`))
  const failed = checks.filter((c) => !c.ok).length
  const warned = checks.filter((c) => c.warn).length
  const warnings = warned ? ` (${warned} warning${warned > 1 ? 's' : ''})` : ''
  console.log(
    failed ? `${failed} of ${checks.length} checks failed${warnings}` : `all ${checks.length} checks passed${warnings}`,
  )
  return failed ? 1 : 0
}
