// How far the server's WAL goes (stream/server-wal.ts), read by `run` for tenant batches that grow while the stream
// is behind it: the position a real server reports, and no connection attempt every 100 ms while PostgreSQL is away.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import postgres from 'postgres'
import { parseLsn } from '../src/postgres/lsn.ts'
import { ServerWalWatch } from '../src/stream/server-wal.ts'
import { freePort, type TestDatabase, testDatabase } from './harness/pg.ts'
import { waitFor } from './harness/wait.ts'

let db: TestDatabase
beforeAll(async () => {
  db = await testDatabase('server_wal')
})
afterAll(async () => {
  await db.drop()
})

describe('ServerWalWatch', () => {
  test("reads the server's WAL position, and follows it", async () => {
    const watch = new ServerWalWatch(db.sql, 20)
    watch.start()
    try {
      await waitFor('a first position', () => watch.lsn > 0n)
      const first = watch.lsn
      await db
        .sql`CREATE TABLE moved (v text); INSERT INTO moved SELECT repeat('x', 1000) FROM generate_series(1, 1000)`
        .simple()
      const [{ now }] = await db.sql<{ now: string }[]>`SELECT pg_current_wal_flush_lsn()::text AS now`
      // the throwaway cluster commits asynchronously: the flush position may pass the insert a moment after it returns
      await waitFor('the position past the insert', () => watch.lsn >= parseLsn(now) && watch.lsn > first)
      expect(watch.lsn).toBeGreaterThan(first)
    } finally {
      watch.stop()
    }
  })

  test('with PostgreSQL away it backs off (1 s after a failure), keeping the last position', async () => {
    // nothing listens on this port: every read is a refused connection
    const away = postgres(`postgres://postgres@127.0.0.1:${await freePort()}/postgres`, {
      max: 1,
      connect_timeout: 1,
      onnotice: () => {},
    })
    let reads = 0
    const counting = ((...args: Parameters<typeof away>) => {
      reads++
      return away(...args)
    }) as typeof away
    const watch = new ServerWalWatch(counting, 10)
    watch.start()
    try {
      await new Promise((r) => setTimeout(r, 600))
      // every 10 ms without the back-off: ~60 attempts
      expect(reads).toBeLessThanOrEqual(2)
      expect(watch.lsn).toBe(0n)
    } finally {
      watch.stop()
      await away.end({ timeout: 1 })
    }
  })
})
