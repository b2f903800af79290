import { afterAll, beforeAll, expect, test } from 'bun:test'
import { parseLsn } from '../src/postgres/lsn.ts'
import { stableLsn } from '../src/postgres/stable-lsn.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'

let db: TestDatabase
beforeAll(async () => {
  db = await testDatabase('stablelsn')
  await db.sql`CREATE TABLE t (x int)`
})
afterAll(() => db.drop())

test('waits for transactions open at the returned LSN, so a later snapshot sees all commits below it', async () => {
  let inserted!: () => void
  const ready = new Promise<void>((r) => inserted = r)
  // an open transaction whose xid is at or above the snapshot's xmax: not listed in xip
  const tx = db.sql.begin(async (t) => {
    await t`INSERT INTO t VALUES (1)`
    inserted()
    await new Promise((r) => setTimeout(r, 300))
  })
  await ready
  const before = parseLsn((await db.sql`SELECT pg_current_wal_insert_lsn()::text AS l`)[0].l)
  const lsn = await stableLsn(db.sql)
  expect(lsn).toBeGreaterThanOrEqual(before)
  // had it not waited, the open transaction's row would not be visible yet
  expect((await db.sql`SELECT count(*)::int AS n FROM t`)[0].n).toBe(1)
  await tx
})
