// Runs the CLI as a child process (for kill -9, signals and standby tests), on the runtime the tests run on: Bun, or
// Deno (`deno run -A` with the project's deno.json), so that process-level behaviour is checked on both.
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))
const DENO_JSON = fileURLToPath(new URL('../../deno.json', import.meta.url))

/** The command line that runs the CLI on this runtime. */
export function cliCommand(args: string[]): [string, string[]] {
  return 'Deno' in globalThis
    ? [process.execPath, ['run', '-A', '--quiet', '--config', DENO_JSON, CLI, ...args]]
    : [process.execPath, [CLI, ...args]]
}

export interface Child {
  proc: ChildProcess
  output: () => string
  exited: Promise<number | null>
  kill(signal?: NodeJS.Signals): void
}

export function spawnCli(args: string[], env: Record<string, string> = {}): Child {
  const [cmd, argv] = cliCommand(args)
  const proc = spawn(cmd, argv, {
    env: { ...process.env, PUFFGRES_LOG: 'debug', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  proc.stdout!.on('data', (d) => out += d)
  proc.stderr!.on('data', (d) => out += d)
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code, sig) => resolve(sig ? null : code)))
  return { proc, output: () => out, exited, kill: (s = 'SIGKILL') => proc.kill(s) }
}
