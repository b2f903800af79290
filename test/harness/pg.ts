// The test harness's PostgreSQL: one throwaway cluster shared by every test file in the process, started on first
// use; each test file asks for its own fresh database.
import postgres from 'postgres'
import { type Cluster, startCluster } from '../../src/postgres/throwaway.ts'
import { selectTestPgVersion } from './pg-version.ts'

export { type Cluster, freePort, pgRun, startCluster } from '../../src/postgres/throwaway.ts'

selectTestPgVersion()

let shared: Promise<Cluster> | undefined

/** The cluster shared by all test files of this process; stopped when the process exits. */
export function sharedCluster(): Promise<Cluster> {
  if (!shared) {
    shared = startCluster()
    shared.then((c) => {
      process.on('exit', () => c.stop())
      // `deno test` does not emit node's 'exit' event: its own 'unload' stops the cluster there
      if ('Deno' in globalThis) globalThis.addEventListener('unload', () => c.stop())
    })
  }
  return shared
}

export async function stopSharedCluster() {
  if (shared) (await shared).stop()
  shared = undefined
}

let dbCounter = 0

export interface TestDatabase {
  url: string
  name: string
  /** a small pool for the test's own SQL */
  sql: postgres.Sql
  cluster: Cluster
  /** closes the pool, drops the database's replication slots and the database */
  drop(): Promise<void>
}

/**
 * A fresh database in the shared cluster. `SQL_ASCII` makes one that stores whatever bytes it is given (text that is
 * not UTF-8 included), with the C locale.
 */
export async function testDatabase(prefix = 't', opts: { encoding?: 'SQL_ASCII' } = {}): Promise<TestDatabase> {
  const cluster = await sharedCluster()
  const name = `${prefix}_${process.pid}_${++dbCounter}_${Date.now() % 100000}`.toLowerCase()
  const admin = postgres(cluster.url(), { max: 1, onnotice: () => {} })
  const encoding = opts.encoding ? ` ENCODING '${opts.encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0` : ''
  await admin.unsafe(`CREATE DATABASE "${name}"${encoding}`)
  await admin.end()
  const url = cluster.url(name)
  const sql = postgres(url, { max: 4, onnotice: () => {} })
  return {
    url,
    name,
    sql,
    cluster,
    async drop() {
      await sql.end({ timeout: 1 })
      const a = postgres(cluster.url(), { max: 1, onnotice: () => {} })
      try {
        await a`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = ${name} AND active_pid IS NOT NULL`
        await a`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${name} AND pid <> pg_backend_pid()`
        await new Promise((r) => setTimeout(r, 100))
        await a`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = ${name} AND NOT active`
        await a.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      } finally {
        await a.end()
      }
    },
  }
}
