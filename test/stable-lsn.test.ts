import { afterAll, beforeAll, expect, test } from 'bun:test'
import { parseLsn } from '../src/postgres/lsn.ts'
import { stableLsn } from '../src/postgres/stable-lsn.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { waitFor } from './harness/wait.ts'

let db: TestDatabase
beforeAll(async () => {
  db = await testDatabase('stablelsn')
  await db.sql`CREATE TABLE t (x int)`
})
afterAll(() => db.drop())

test('waits for transactions open at the returned LSN, so a later snapshot sees all commits below it', async () => {
  let inserted!: () => void
  let release!: () => void
  const ready = new Promise<void>((r) => inserted = r)
  const released = new Promise<void>((r) => release = r)
  // a transaction that stays open until the test ends it
  const tx = db.sql.begin(async (t) => {
    await t`INSERT INTO t VALUES (1)`
    inserted()
    await released
  })
  await ready
  const before = parseLsn((await db.sql`SELECT pg_current_wal_insert_lsn()::text AS l`)[0].l)
  // counts stableLsn's queries: the first reads the snapshot, each further one polls the open transaction
  let queries = 0
  const counting = ((strings: TemplateStringsArray, ...values: unknown[]) => {
    queries++
    return (db.sql as unknown as (s: TemplateStringsArray, ...v: unknown[]) => unknown)(strings, ...values)
  }) as unknown as typeof db.sql
  let result: bigint | undefined
  const pending = stableLsn(counting, { pollMs: 5 }).then((l) => result = l)
  await waitFor('stableLsn to poll the open transaction a few times', () => result !== undefined || queries >= 4)
  expect(result).toBeUndefined() // still waiting: the transaction is open
  release()
  await tx
  await pending
  expect(result!).toBeGreaterThanOrEqual(before)
  expect((await db.sql`SELECT count(*)::int AS n FROM t`)[0].n).toBe(1)
})
