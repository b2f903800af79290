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
import * as dlq from './dlq.ts'
import * as verify from './verify.ts'

export interface CommandContext {
  /** loads and validates the configuration (-c); throws ConfigError */
  config: () => Config
  configPath: string
}

export interface Command {
  name: string
  summary: string
  help: string
  run(argv: string[], ctx: CommandContext): Promise<number> | number
}

export const commands: Command[] = [
  {
    name: 'init',
    summary: 'scaffold a project (puffgres.toml, migrations, transforms)',
    help: init.help,
    run: (a) => init.initCommand(a),
  },
  {
    name: 'migrate',
    summary: 'check the database, apply migrations, maintain the publication',
    help: migrate.help,
    run: (a, c) => migrate.migrateCommand(a, c.config),
  },
  {
    name: 'doctor',
    summary: 'check everything `run` needs (PostgreSQL, slot, publication, turbopuffer, transforms), one line each',
    help: doctor.help,
    run: (a, c) => doctor.doctorCommand(a, c.config),
  },
  {
    name: 'run',
    summary: 'stream changes into turbopuffer, forever (logical replication)',
    help: run.help,
    run: (a, c) => run.runCommand(a, c.config),
  },
  {
    name: 'backfill',
    summary: "copy the rows already in a mapping's table into its namespace (resumable)",
    help: backfill.help,
    run: (a, c) => backfill.backfillCommand(a, c.config),
  },
  {
    name: 'status',
    summary: 'per mapping and stream: progress, lag, backfill, dead letters',
    help: status.help,
    run: (a, c) => status.statusCommand(a, c.config),
  },
  {
    name: 'dlq',
    summary: 'list, show, retry or clear the dead-letter queue',
    help: dlq.help,
    run: (a, c) => dlq.dlqCommand(a, c.config),
  },
  {
    name: 'verify',
    summary: 'compare a namespace with its table; --repair fixes the drift',
    help: verify.help,
    run: (a, c) => verify.verifyCommand(a, c.config),
  },
  {
    name: 'demo',
    summary: 'the whole pipeline once, on a throwaway PostgreSQL and the local turbopuffer server',
    help: demo.help,
    run: (a) => demo.demoCommand(a),
  },
  {
    name: 'local',
    summary: 'run the turbopuffer-compatible local server (development, demos, tests)',
    help: local.help,
    run: (a) => local.localCommand(a),
  },
]
