// Runs the CLI as a child process (for kill -9, signals and standby tests), on the runtime the tests run on: Bun, or
// Deno (`deno run -A` with the project's deno.json), so that process-level behaviour is checked on both.
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))
const DENO_JSON = fileURLToPath(new URL('../../deno.json', import.meta.url))

export const onDeno = 'Deno' in globalThis

/**
 * The command line that runs the CLI on this runtime. On Deno with the project's deno.json, unless `asUser`: then
 * `deno run -A src/cli.ts` as `deno run -A jsr:@puffgres/cli` would run, finding no config of ours.
 */
export function cliCommand(args: string[], opts: { asUser?: boolean } = {}): [string, string[]] {
  if (!onDeno) return [process.execPath, [CLI, ...args]]
  const config = opts.asUser ? [] : ['--quiet', '--config', DENO_JSON]
  return [process.execPath, ['run', '-A', ...config, CLI, ...args]]
}

export interface Child {
  proc: ChildProcess
  output: () => string
  exited: Promise<number | null>
  kill(signal?: NodeJS.Signals): void
}

export function spawnCli(args: string[], env: Record<string, string> = {}): Child {
  const [cmd, argv] = cliCommand(args)
  if (onDeno) return spawnDeno(cmd, argv, { PUFFGRES_LOG: 'debug', ...env })
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

// Deno's node:child_process reports a child that handled SIGTERM and exited 0 as killed by the signal (exit code
// null), so under Deno the child runs through Deno.Command, whose status has the real exit code.
interface DenoChild {
  pid: number
  stdout: ReadableStream<Uint8Array>
  stderr: ReadableStream<Uint8Array>
  status: Promise<{ code: number; signal: string | null }>
  kill(signal?: string): void
}
declare const Deno: {
  Command: new (cmd: string, o: Record<string, unknown>) => { spawn(): DenoChild }
}

function spawnDeno(cmd: string, args: string[], env: Record<string, string>): Child {
  const p = new Deno.Command(cmd, { args, env, stdin: 'null', stdout: 'piped', stderr: 'piped' }).spawn()
  let out = ''
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder()
    for await (const chunk of s) out += dec.decode(chunk, { stream: true })
  }
  void pump(p.stdout)
  void pump(p.stderr)
  // what the tests read of a ChildProcess: its pid and, once it has exited, its exit code
  const proc = { pid: p.pid, exitCode: null as number | null }
  const exited = p.status.then((s) => proc.exitCode = s.signal ? null : s.code)
  return {
    proc: proc as unknown as ChildProcess,
    output: () => out,
    exited,
    kill: (s = 'SIGKILL') => {
      try {
        p.kill(s)
      } catch { /* already exited */ }
    },
  }
}
