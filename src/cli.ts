#!/usr/bin/env -S deno run -A
// puffgres: change-data-capture from PostgreSQL to turbopuffer. The single entry point (Bun, Deno, binaries).
import process from 'node:process'
import { ConfigError } from './config/errors.ts'
import { UsageError } from './commands/flags.ts'
import { loadConfig } from './config/load.ts'
import { commands } from './commands/index.ts'
import { VERSION } from './version.ts'
import * as transformApi from './mod.ts'
import { registerVirtualModule } from './runtime.ts'
import { CliError } from './errors.ts'
import { levelFromEnv, scrub } from './log.ts'
import { explainPostgresError } from './postgres/reach.ts'
import { explainTurbopufferError } from './turbopuffer/reach.ts'
import { clientConfig, resolveBaseUrl } from './turbopuffer/client.ts'

export function mainHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length))
  return `puffgres ${VERSION}: keeps turbopuffer namespaces in sync with PostgreSQL tables

Usage: puffgres [-c <PATH>] <command> [options]

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Global options:
  -c, --config <PATH>  the configuration file (default: puffgres.toml)
  -h, --help           help (for a command: puffgres <command> --help)
  -V, --version        print the version
`
}

/** Splits global options (before the command) from the command and its own arguments. */
function splitGlobal(argv: string[]) {
  let configPath = process.env.PUFFGRES_CONFIG || 'puffgres.toml'
  const rest: string[] = []
  let flag: 'help' | 'version' | undefined
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (rest.length === 0 && (a === '-c' || a === '--config')) {
      if (argv[i + 1] === undefined) throw new ConfigError(`${a} needs a path`)
      configPath = argv[++i]
    } else if (rest.length === 0 && a.startsWith('--config=')) configPath = a.slice(9)
    else if (rest.length === 0 && (a === '-h' || a === '--help')) flag = 'help'
    else if (rest.length === 0 && (a === '-V' || a === '--version')) flag = 'version'
    else if (rest.length > 0 && (a === '-c' || a === '--config') && argv[i + 1] !== undefined) {
      configPath = argv[++i] // also accepted after the command
    } else rest.push(a)
  }
  return { configPath, rest, flag }
}

export async function main(argv: string[]): Promise<number> {
  // transforms may `import { defineTransform } from 'puffgres'`, also inside the single-file binary
  registerVirtualModule('puffgres', { ...transformApi })
  let cached: ReturnType<typeof loadConfig> | undefined
  try {
    const { configPath, rest, flag } = splitGlobal(argv)
    if (flag === 'version') {
      console.log(`puffgres ${VERSION}`)
      return 0
    }
    const [name, ...args] = rest
    if (!name || flag === 'help' || name === 'help') {
      const target = name === 'help' ? commands.find((c) => c.name === args[0]) : undefined
      console.log(target ? target.help : mainHelp())
      return 0
    }
    const cmd = commands.find((c) => c.name === name)
    if (!cmd) {
      console.error(`error: unknown command "${name}" (see puffgres --help)`)
      return 2
    }
    if (args.includes('-h') || args.includes('--help')) {
      console.log(cmd.help)
      return 0
    }
    // fresh: `run` reads the mapping files again when mappings are migrated while it streams (stream/follow.ts)
    return await cmd.run(args, (o) => o?.fresh ? loadConfig(configPath) : (cached ??= loadConfig(configPath)))
  } catch (e) {
    const failure = describeFailure(e, cached)
    console.error(`error: ${scrub(failure.message)}`)
    if (levelFromEnv() === 'debug' && e instanceof Error && e.stack) console.error(scrub(e.stack))
    return failure.exitCode
  }
}

/**
 * The single error handler: every failure of a command becomes one line and an exit status. Errors reaching
 * PostgreSQL or turbopuffer are explained against the configuration the command loaded (host, port, database or
 * URL; never the password or key). A stack trace only with PUFFGRES_LOG=debug.
 */
function describeFailure(e: unknown, config: ReturnType<typeof loadConfig> | undefined): CliError {
  if (e instanceof CliError) return e
  if (e instanceof ConfigError) return new CliError(e.message, 1)
  if (e instanceof UsageError) return new CliError(e.message, 2)
  const code = (e as { code?: unknown } | undefined)?.code
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) return new CliError((e as Error).message, 2)
  if (config) {
    const pg = explainPostgresError(e, config.postgres.connectionString)
    if (pg) return new CliError(pg, 1)
    let baseUrl: string | undefined
    try {
      baseUrl = resolveBaseUrl(clientConfig(config.turbopuffer))
    } catch { /* no usable URL: nothing to explain against */ }
    const tp = baseUrl ? explainTurbopufferError(e, baseUrl) : undefined
    if (tp) return new CliError(tp, 1)
  }
  const message = e instanceof Error ? e.message || e.name : String(e)
  return new CliError(message || 'unknown error', 1)
}

if (import.meta.main) {
  main(process.argv.slice(2)).then((code) => process.exit(code))
}
