// The command table: `puffgres --help`, each command's help and README's CLI reference come from here.
import type { Config } from '../config/load.ts'
import * as backfill from './backfill.ts'
import * as demo from './demo.ts'
import * as doctor from './doctor.ts'
import * as init from './init.ts'
import * as migrate from './migrate.ts'
import * as local from './local.ts'
import * as run from './run.ts'
import * as status from './status.ts'
import * as reindex from './reindex.ts'
import * as dlq from './dlq.ts'
import * as verify from './verify.ts'

export interface Command {
  name: string
  summary: string
  help: string
  /** `config` loads and validates the configuration (-c) once; throws ConfigError */
  /** `config()`: the configuration, read once; `config({ fresh: true })` reads the files again (run follows them) */
  run(argv: string[], config: (opts?: { fresh?: boolean }) => Config): Promise<number> | number
}

export const commands: Command[] = [
  {
    name: 'init',
    summary: 'scaffold a project (puffgres.toml, migrations, transforms)',
    help: init.help,
    run: init.initCommand,
  },
  {
    name: 'migrate',
    summary: 'check the database, apply migrations, maintain the publication',
    help: migrate.help,
    run: migrate.migrateCommand,
  },
  {
    name: 'doctor',
    summary: 'check everything `run` needs (PostgreSQL, slot, publication, turbopuffer, transforms), one line each',
    help: doctor.help,
    run: doctor.doctorCommand,
  },
  {
    name: 'run',
    summary: 'stream changes into turbopuffer, forever (logical replication)',
    help: run.help,
    run: run.runCommand,
  },
  {
    name: 'backfill',
    summary: "copy the rows already in a mapping's table into its namespace (resumable)",
    help: backfill.help,
    run: backfill.backfillCommand,
  },
  {
    name: 'reindex',
    summary: 'build a new version of a mapping into a new namespace while the old one serves, then retire it',
    help: reindex.help,
    run: reindex.reindexCommand,
  },
  {
    name: 'status',
    summary: 'per mapping and stream: progress, lag, backfill, dead letters',
    help: status.help,
    run: status.statusCommand,
  },
  {
    name: 'dlq',
    summary: 'list, show, retry or clear the dead-letter queue',
    help: dlq.help,
    run: dlq.dlqCommand,
  },
  {
    name: 'verify',
    summary: 'compare a namespace with its table; --repair fixes the drift',
    help: verify.help,
    run: verify.verifyCommand,
  },
  {
    name: 'demo',
    summary: 'the whole pipeline once, on a throwaway PostgreSQL and the local turbopuffer server',
    help: demo.help,
    run: demo.demoCommand,
  },
  {
    name: 'local',
    summary: 'run the turbopuffer-compatible local server (development, demos, tests)',
    help: local.help,
    run: local.localCommand,
  },
]
