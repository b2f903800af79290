#!/usr/bin/env node
// The npm package's `puffgres` command. puffgres is TypeScript that runs on Bun or Deno, not on Node.js, so this
// small Node-compatible launcher finds a runtime and runs src/cli.ts with it, forwarding the arguments, stdio,
// signals and exit code. Runtime, in order: PUFFGRES_RUNTIME (bun | deno, or a path to either), the Bun binary of
// the `bun` package (an optional dependency), `bun` on the PATH, `deno` on the PATH.
import { spawn } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { basename, delimiter, dirname, join } from 'node:path'
import process from 'node:process'
import { fileURLToPath } from 'node:url'

const PKG = dirname(dirname(fileURLToPath(import.meta.url)))
const CLI = join(PKG, 'src', 'cli.ts')
const WINDOWS = process.platform === 'win32'

function isFile(p) {
  try {
    return statSync(p).isFile()
  } catch {
    return false
  }
}

/** An executable on the PATH, like `which`. */
function onPath(name) {
  const exts = WINDOWS ? (process.env.PATHEXT || '.EXE;.CMD;.BAT').split(';') : ['']
  for (const dir of (process.env.PATH || '').split(delimiter)) {
    if (!dir) continue
    for (const ext of exts) {
      const p = join(dir, name + ext)
      if (isFile(p)) return p
    }
  }
  return undefined
}

function resolvePackageDir(name, from) {
  try {
    return dirname(createRequire(from).resolve(`${name}/package.json`))
  } catch {
    return undefined
  }
}

/**
 * The Bun binary that the `bun` package installed. Its postinstall script moves the platform package's binary over
 * the placeholder bun/bin/bun.exe; where install scripts do not run (pnpm's default, --ignore-scripts), the binary is
 * still in the platform package @oven/bun-<os>-<arch>[-musl][-baseline], a dependency of `bun`.
 */
function bundledBun() {
  const bunDir = resolvePackageDir('bun', import.meta.url)
  if (!bunDir) return undefined
  const moved = join(bunDir, 'bin', 'bun.exe')
  if (isFile(moved) && statSync(moved).size > 1_000_000) return moved // the placeholder is a few bytes
  const os = WINDOWS ? 'windows' : process.platform
  const arch = process.arch === 'arm64' ? 'aarch64' : process.arch
  const musl = os === 'linux' && !process.report?.getReport().header.glibcVersionRuntime
  const base = `@oven/bun-${os}-${arch}${musl ? '-musl' : ''}`
  for (const name of [base, `${base}-baseline`]) {
    const dir = resolvePackageDir(name, join(bunDir, 'package.json')) ?? resolvePackageDir(name, import.meta.url)
    if (!dir) continue
    for (const exe of ['bun', 'bun.exe']) if (isFile(join(dir, 'bin', exe))) return join(dir, 'bin', exe)
  }
  return undefined
}

/** [program, ...arguments before the user's] for a runtime binary. */
function commandFor(runtime) {
  if (/^deno(\.exe)?$/i.test(basename(runtime))) {
    // deno.json maps the bare imports (postgres, zod, …) to pinned npm: packages, which Deno keeps in its own cache
    // (it downloads them on first use): Deno does not run TypeScript found under node_modules/ in the other modes
    return [runtime, 'run', '-A', '--config', join(PKG, 'deno.json'), '--node-modules-dir=none', CLI]
  }
  return [runtime, CLI]
}

function chooseRuntime() {
  const wanted = process.env.PUFFGRES_RUNTIME
  if (wanted === 'bun') return bundledBun() ?? onPath('bun')
  if (wanted === 'deno') return onPath('deno')
  if (wanted) return existsSync(wanted) ? wanted : undefined
  return bundledBun() ?? onPath('bun') ?? onPath('deno')
}

const runtime = chooseRuntime()
if (!runtime) {
  const wanted = process.env.PUFFGRES_RUNTIME
  console.error(
    wanted
      ? `puffgres: PUFFGRES_RUNTIME=${wanted}: not found`
      : 'puffgres: needs Bun or Deno to run: install the optional dependency `bun` (npm install -g puffgres ' +
        'without --omit=optional), or put bun or deno on the PATH (https://bun.sh, https://deno.com)',
  )
  process.exit(127)
}

const [program, ...pre] = commandFor(runtime)
// Bun's fetch sends 256 requests at once unless this says more, read when it starts; with a namespace per tenant a
// batch is a request per namespace (src/turbopuffer/write-request.ts)
const env = { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: process.env.BUN_CONFIG_MAX_HTTP_REQUESTS || '1024' }
const child = spawn(program, [...pre, ...process.argv.slice(2)], { stdio: 'inherit', env })

// SIGTERM and SIGHUP are relayed: a supervisor or `kill` sends them to this process only. SIGINT from a terminal's
// Ctrl-C already reaches the child (same process group), and puffgres treats a second SIGINT as "quit at once", so
// it is relayed only when no terminal is attached (then it came from `kill -INT`).
const relay = (sig) => () => {
  if (sig === 'SIGINT' && process.stdin.isTTY) return
  if (child.exitCode === null && child.signalCode === null) child.kill(sig)
}
const handlers = WINDOWS ? [] : ['SIGTERM', 'SIGHUP', 'SIGINT'].map((sig) => [sig, relay(sig)])
for (const [sig, fn] of handlers) process.on(sig, fn)

child.on('error', (err) => {
  console.error(`puffgres: could not start ${program}: ${err.message}`)
  process.exit(127)
})
child.on('exit', (code, signal) => {
  for (const [sig, fn] of handlers) process.off(sig, fn)
  // die of the same signal, so that whoever started puffgres sees how it ended
  if (signal) process.kill(process.pid, signal)
  else process.exit(code ?? 1)
})
