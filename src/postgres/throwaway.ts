// A throwaway PostgreSQL cluster (initdb in a temp dir, wal_level=logical, a free port, stopped on demand): the
// embedded default of `puffgres demo`, and the test harness's cluster. Runs the server as the `postgres` OS user
// when we are root (initdb and postgres refuse to run as root).
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'

let pgBin: string | undefined

/** The folder of PostgreSQL's server programs: $PG_BIN, else the newest /usr/lib/postgresql/N/bin. */
export function pgBinDir(): string {
  return pgBin ??= process.env.PG_BIN ?? findPgBin()
}

function findPgBin(): string {
  for (const v of ['18', '17', '16', '15', '14']) {
    const dir = `/usr/lib/postgresql/${v}/bin`
    if (existsSync(join(dir, 'initdb'))) return dir
  }
  throw new Error('PostgreSQL server binaries not found (set PG_BIN to the folder holding initdb and pg_ctl)')
}

export interface Cluster {
  port: number
  dir: string
  /** connection string for a database of this cluster */
  url(db?: string): string
  stop(): void
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0

/** Runs a PostgreSQL binary, as the `postgres` OS user when we are root (initdb and postgres refuse root). */
export function pgRun(bin: string, args: string[], opts: { allowFail?: boolean } = {}) {
  const cmd = join(pgBinDir(), bin)
  const r = isRoot
    ? spawnSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8' })
    : spawnSync(cmd, args, { encoding: 'utf8' })
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

/** Starts a new cluster. Most tests want `sharedCluster()` instead. */
export async function startCluster(settings: Record<string, string> = {}): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'puffgres-pg-'))
  chmodSync(dir, 0o777)
  const data = join(dir, 'data')
  pgRun('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C'])
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
  pgRun('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'])
  let stopped = false
  return {
    port,
    dir,
    url: (db = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${db}`,
    stop() {
      if (stopped) return
      stopped = true
      pgRun('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'], { allowFail: true })
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
