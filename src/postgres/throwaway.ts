// A throwaway PostgreSQL cluster (initdb in a temp dir, wal_level=logical, a free port, stopped on demand): the
// embedded default of `puffgres demo`, and the test harness's cluster. Its server programs come from
// findPgBinaries() (PG_BIN, the PATH, /usr/lib/postgresql, the npm-installed ones). When we are root it runs them as
// an unprivileged user (initdb and postgres refuse to run as root): `postgres`, else `nobody`.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import process from 'node:process'
import { findPgBinaries, type PgBinaries, pgVersion } from './pg-binaries.ts'

let binaries: (PgBinaries & { version: string }) | undefined

/** The server programs this process uses (found once), with the version they report. */
export function pgBinaries(): PgBinaries & { version: string } {
  if (!binaries) {
    const found = findPgBinaries()
    const dir = isRoot ? runnableByServerUser(found.dir) : found.dir
    binaries = { ...found, dir, version: pgVersion(dir) ?? 'PostgreSQL' }
  }
  return binaries
}

/** The folder of PostgreSQL's server programs (see pgBinaries). */
export function pgBinDir(): string {
  return pgBinaries().dir
}

/** One line saying which PostgreSQL the throwaway cluster runs. */
export function describePgBinaries(): string {
  const b = pgBinaries()
  return `${b.version} server programs from ${b.source}${b.source === b.dir ? '' : ` (${b.dir})`}`
}

export interface Cluster {
  port: number
  dir: string
  /** the data directory (in `dir`) */
  dataDir: string
  /** the server programs it runs (as the server user can run them) */
  binDir: string
  /** connection string for a database of this cluster */
  url(db?: string): string
  stop(): void
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0

let serverUserName: string | undefined
/** The unprivileged OS user that runs the server when we are root: `postgres` if it exists, else `nobody`. */
function serverUser(): string {
  return serverUserName ??= spawnSync('id', ['-u', 'postgres']).status === 0 ? 'postgres' : 'nobody'
}

// runuser lives in /usr/sbin or /sbin, which a trimmed PATH may leave out
const runuser = ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => existsSync(p)) ?? 'runuser'

function asServerUser(cmd: string, args: string[]) {
  const r = spawnSync(runuser, ['-u', serverUser(), '--', cmd, ...args], { encoding: 'utf8' })
  if (r.error) throw new Error(`cannot run ${cmd} as the ${serverUser()} user with ${runuser}: ${r.error.message}`)
  return r
}

// The server user may not reach binaries installed under root's folders (node_modules in /root, a 0700 checkout):
// then run a copy in a world-readable temp folder, made once per source folder and build, and shared by later
// processes.
function runnableByServerUser(binDir: string): string {
  if (asServerUser(join(binDir, 'postgres'), ['--version']).status === 0) return binDir
  const root = dirname(binDir) // native/: bin, lib and share travel together
  // the npm package's version (a reinstall keeps it; mtimes change) and the binary's size tell builds apart
  let version = ''
  try {
    version = JSON.parse(readFileSync(join(dirname(root), 'package.json'), 'utf8')).version ?? ''
  } catch { /* not an npm package */ }
  const { size } = statSync(join(binDir, 'postgres'))
  const hash = createHash('sha256').update(`${root}\0${version}\0${size}`).digest('hex').slice(0, 12)
  const copy = join(tmpdir(), `puffgres-pg-bin-${hash}`)
  if (!existsSync(join(copy, 'bin', 'initdb'))) {
    const tmp = mkdtempSync(join(tmpdir(), 'puffgres-pg-bin-tmp-'))
    const cp = spawnSync('cp', ['-a', `${root}/.`, tmp], { encoding: 'utf8' })
    if (cp.status !== 0) throw new Error(`copying ${root} to ${tmp} failed: ${cp.stderr.trim()}`)
    chmodSync(tmp, 0o755)
    try {
      renameSync(tmp, copy)
    } catch {
      rmSync(tmp, { recursive: true, force: true }) // another process made it first
    }
  }
  const r = asServerUser(join(copy, 'bin', 'postgres'), ['--version'])
  if (r.status !== 0) {
    throw new Error(`${join(copy, 'bin', 'postgres')} does not run as the ${serverUser()} user: ${r.stderr.trim()}`)
  }
  return join(copy, 'bin')
}

const runnable = new Map<string, string>()

/** A folder of server programs (e.g. another major version's) as the server user can run them (see pgBinaries). */
export function runnableBinDir(dir: string): string {
  let d = runnable.get(dir)
  if (!d) runnable.set(dir, d = isRoot ? runnableByServerUser(dir) : dir)
  return d
}

/**
 * Runs a PostgreSQL binary, as an unprivileged OS user when we are root (initdb and postgres refuse root); from
 * `binDir` (one runnableBinDir returned) when given, else from pgBinDir().
 */
export function pgRun(bin: string, args: string[], opts: { allowFail?: boolean; binDir?: string } = {}) {
  const cmd = join(opts.binDir ?? pgBinDir(), bin)
  const r = isRoot ? asServerUser(cmd, args) : spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${bin} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`)
  }
  return r
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.unref()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

let described = false

/**
 * Starts a new cluster. Most tests want `sharedCluster()` instead. `say` gets one line naming the server programs
 * used (default: stderr, once per process). `binDir`: run these server programs instead (a test of one version).
 */
export async function startCluster(
  settings: Record<string, string> = {},
  say?: (line: string) => void,
  opts: { binDir?: string } = {},
): Promise<Cluster> {
  const binDir = opts.binDir ? runnableBinDir(opts.binDir) : pgBinDir()
  if (opts.binDir) say?.(`using ${pgVersion(binDir) ?? 'PostgreSQL'} server programs from ${binDir}`)
  else if (say) say(`using ${describePgBinaries()}`)
  else if (!described) process.stderr.write(`puffgres: using ${describePgBinaries()}\n`)
  if (!opts.binDir) described = true
  const run = (bin: string, args: string[], allowFail?: boolean) => pgRun(bin, args, { allowFail, binDir })
  const dir = mkdtempSync(join(tmpdir(), 'puffgres-pg-'))
  chmodSync(dir, 0o777)
  const data = join(dir, 'data')
  try {
    run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C'])
  } catch (e) {
    rmSync(dir, { recursive: true, force: true })
    throw e
  }
  const port = await freePort()
  const conf = {
    listen_addresses: "'127.0.0.1'",
    port: String(port),
    unix_socket_directories: `'${dir}'`,
    wal_level: 'logical',
    max_replication_slots: '40',
    max_wal_senders: '40',
    max_connections: '200',
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    shared_buffers: '128MB',
    wal_sender_timeout: '60s',
    ...settings,
  }
  writeFileSync(
    join(data, 'postgresql.auto.conf'),
    Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n',
  )
  try {
    run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'])
  } catch (e) {
    // the server's log says why; it goes with the folder
    const log = existsSync(join(dir, 'log')) ? readFileSync(join(dir, 'log'), 'utf8').trim().split('\n').slice(-5) : []
    run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'], true)
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`${(e as Error).message.trim()}${log.length ? `\nserver log: ${log.join('\n')}` : ''}`)
  }
  let stopped = false
  return {
    port,
    dir,
    dataDir: data,
    binDir,
    url: (db = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${db}`,
    stop() {
      if (stopped) return
      stopped = true
      run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'], true)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
