// A physical standby of a throwaway cluster, for failover tests (PostgreSQL 17+: it syncs failover slots). The server
// programs have no pg_basebackup: the standby is a cold copy of the primary's data directory, taken while the
// primary is stopped, with standby.signal, primary_conninfo (with a dbname: the slot sync worker needs one),
// primary_slot_name (a physical slot created on the primary before the copy), hot_standby_feedback and
// sync_replication_slots. Slots in the copy are removed: the standby has only what it syncs.
import { spawnSync } from 'node:child_process'
import { appendFileSync, chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { type Cluster, freePort, pgRun } from '../../src/postgres/throwaway.ts'

export interface Standby extends Cluster {
  /** `pg_ctl promote`: the standby becomes a primary (waits until it accepts writes) */
  promote(): void
}

/** Stops a cluster at once (`pg_ctl stop -m immediate`), as a crash would; `stop()` still removes its folder. */
export function crash(c: Cluster) {
  pgRun('pg_ctl', ['-D', c.dataDir, '-m', 'immediate', '-w', 'stop'], { binDir: c.binDir })
}

/**
 * Makes a standby of `primary` streaming through the physical slot `slot` (created here), with `settings` added to
 * its configuration. The primary is stopped for the copy and started again.
 */
export async function startStandby(
  primary: Cluster,
  slot: string,
  settings: Record<string, string> = {},
): Promise<Standby> {
  const admin = postgres(primary.url(), { max: 1, onnotice: () => {} })
  try {
    await admin`SELECT pg_create_physical_replication_slot(${slot}, true)`
  } finally {
    await admin.end()
  }
  const run = (args: string[], allowFail = false) => pgRun('pg_ctl', args, { binDir: primary.binDir, allowFail })
  run(['-D', primary.dataDir, '-m', 'fast', '-w', 'stop'])
  const dir = mkdtempSync(join(tmpdir(), 'puffgres-pg-standby-'))
  chmodSync(dir, 0o777)
  const data = join(dir, 'data')
  try {
    const cp = spawnSync('cp', ['-a', primary.dataDir, data], { encoding: 'utf8' })
    if (cp.status !== 0) throw new Error(`copying ${primary.dataDir} failed: ${cp.stderr.trim()}`)
  } finally {
    run(['-D', primary.dataDir, '-l', join(primary.dir, 'log'), '-w', '-t', '60', 'start'])
  }
  for (const s of readdirSync(join(data, 'pg_replslot'))) rmSync(join(data, 'pg_replslot', s), { recursive: true })
  const port = await freePort()
  const conf = {
    port: String(port),
    unix_socket_directories: `'${dir}'`,
    primary_conninfo: `'host=127.0.0.1 port=${primary.port} user=postgres dbname=postgres application_name=${slot}'`,
    primary_slot_name: `'${slot}'`,
    hot_standby_feedback: 'on',
    sync_replication_slots: 'on',
    // the primary's own setting names this standby's slot, which the standby (once promoted) does not have
    synchronized_standby_slots: "''",
    ...settings,
  }
  // later lines win over the primary's copied ones
  appendFileSync(
    join(data, 'postgresql.auto.conf'),
    Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n',
  )
  writeFileSync(join(data, 'standby.signal'), '')
  const ctl = (args: string[], allowFail = false) => pgRun('pg_ctl', args, { binDir: primary.binDir, allowFail })
  try {
    ctl(['-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'])
  } catch (e) {
    rmSync(dir, { recursive: true, force: true })
    throw e
  }
  let stopped = false
  return {
    port,
    dir,
    dataDir: data,
    binDir: primary.binDir,
    url: (db = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${db}`,
    promote: () => void ctl(['-D', data, '-w', '-t', '60', 'promote']),
    stop() {
      if (stopped) return
      stopped = true
      ctl(['-D', data, '-m', 'immediate', '-w', 'stop'], true)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
