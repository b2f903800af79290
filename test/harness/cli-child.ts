// Runs the CLI as a child process of the runtime running the test (Bun: `bun src/cli.ts`; Deno: `deno run -A
// src/cli.ts`, as `deno run -A jsr:@puffgres/cli` would), in a chosen folder, as a user types the commands.
import { spawn } from 'node:child_process'
import process from 'node:process'
import { cliCommand } from './child.ts'

export { onDeno } from './child.ts'

export interface CliRun {
  code: number | null
  out: string
  err: string
}

export interface CliProcess {
  /** stdout and stderr so far */
  output(): string
  /** resolves with the exit status (null when killed by a signal) and what was printed */
  done: Promise<CliRun>
  kill(signal?: NodeJS.Signals): void
}

/** Starts `puffgres <args>` in `cwd`, with `env` added to this process's environment. */
export function startCli(args: string[], opts: { cwd: string; env?: Record<string, string> }): CliProcess {
  const [cmd, argv] = cliCommand(args, { asUser: true })
  const proc = spawn(cmd, argv, {
    cwd: opts.cwd,
    env: { ...process.env, NO_COLOR: '1', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  proc.stdout!.on('data', (d) => out += d)
  proc.stderr!.on('data', (d) => err += d)
  const done = new Promise<CliRun>((resolve) => proc.on('close', (code) => resolve({ code, out, err })))
  return { output: () => out + err, done, kill: (s = 'SIGTERM') => proc.kill(s) }
}

/** Runs `puffgres <args>` to completion. */
export function cli(args: string[], opts: { cwd: string; env?: Record<string, string> }): Promise<CliRun> {
  return startCli(args, opts).done
}
