// Runs the CLI as a child process (for kill -9, signals and standby tests).
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'

export const CLI = join(import.meta.dir, '../../src/cli.ts')

export interface Child {
  proc: ChildProcess
  output: () => string
  exited: Promise<number | null>
  kill(signal?: NodeJS.Signals): void
}

export function spawnCli(args: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, PUFFGRES_LOG: 'debug', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  proc.stdout!.on('data', (d) => out += d)
  proc.stderr!.on('data', (d) => out += d)
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code, sig) => resolve(sig ? null : code)))
  return { proc, output: () => out, exited, kill: (s = 'SIGKILL') => proc.kill(s) }
}
