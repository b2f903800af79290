#!/usr/bin/env -S deno run -A
// puffgres: change-data-capture from PostgreSQL to turbopuffer. The single entry point (Bun, Deno, binaries).
import process from 'node:process'
import { ConfigError } from './config/errors.ts'
import { UsageError } from './commands/flags.ts'
import { loadConfig } from './config/load.ts'
import { type CommandContext, commands } from './commands/index.ts'
import { VERSION } from './version.ts'
import * as transformApi from './mod.ts'
import { registerVirtualModule } from './runtime.ts'

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
    let cached: ReturnType<typeof loadConfig> | undefined
    const ctx: CommandContext = { configPath, config: () => (cached ??= loadConfig(configPath)) }
    return await cmd.run(args, ctx)
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`error: ${e.message}`)
      return 1
    }
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}`)
      return 2
    }
    const code = (e as { code?: string }).code
    if (code && code.startsWith('ERR_PARSE_ARGS')) {
      console.error(`error: ${(e as Error).message}`)
      return 2
    }
    console.error(`error: ${(e as Error)?.stack ?? e}`)
    return 1
  }
}

if (import.meta.main) {
  main(process.argv.slice(2)).then((code) => process.exit(code))
}
