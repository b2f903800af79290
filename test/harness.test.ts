import { expect, test } from 'bun:test'
import { testDatabase } from './harness/pg.ts'

test('the harness cluster has wal_level=logical and is not the machine instance', async () => {
  const db = await testDatabase()
  try {
    const [{ wal_level }] = await db.sql`SHOW wal_level`
    expect(wal_level).toBe('logical')
    expect(db.cluster.port).not.toBe(5432)
  } finally {
    await db.drop()
  }
})
