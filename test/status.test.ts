// `puffgres status` against a running stream: per-mapping progress, backfill, DLQ count, the slot's owner, and a
// lag that grows while the sink is blocked and shrinks after.
import { describe, expect, test } from 'bun:test'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'status',
  sql: 'CREATE TABLE items (id int PRIMARY KEY, name text); CREATE TABLE notes (id int PRIMARY KEY, body text)',
  migrations: {
    '001_items.toml': migration({ name: 'items', table: 'items' }),
    '002_notes.toml': migration({ name: 'notes', table: 'notes', namespace: 'notes-ns' }),
  },
  stream: true,
})
const { status } = pipe

describe('puffgres status', () => {
  test('per mapping and for the stream', async () => {
    await pipe.db.sql`INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 5) g`
    await waitFor('inserts recorded', async () => (await status()).mappings[0].docs_upserted === 5)
    await pipe.db.sql`DELETE FROM items WHERE id = 5`
    await waitFor('items written', () => pipe.server.documents('items').length === 4)
    await waitFor('progress recorded', async () => (await status()).mappings[0].docs_deleted === 1)
    await pipe.db
      .sql`INSERT INTO __puffgres_backfill (mapping, version, status, rows_done, docs_written, total_estimate)
                 VALUES ('notes', 1, 'running', 50, 48, 200)`
    await pipe.db.sql`INSERT INTO __puffgres_dlq (mapping, doc_id, error) VALUES ('notes', '7', 'boom')`
    const s = await status()
    const [items, notes] = s.mappings
    expect(items).toMatchObject({
      mapping: 'items',
      namespace: 'items',
      table: 'public.items',
      version: 1,
      applied_version: 1,
      docs_upserted: 5,
      docs_deleted: 1,
      backfill: null,
      dlq: 0,
    })
    expect(items.last_lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/)
    expect(Date.parse(items.last_applied_at)).toBeGreaterThan(0)
    expect(notes).toMatchObject({
      mapping: 'notes',
      namespace: 'notes-ns',
      docs_upserted: 0,
      last_applied_at: null,
      dlq: 1,
      backfill: { version: 1, status: 'running', rows_done: 50, total_estimate: 200, progress: 0.25, docs_written: 48 },
    })
    const [walsender] = await pipe.db.sql<{ pid: number }[]>`
      SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = 'puffgres'`
    expect(s.stream).toMatchObject({ slot: 'puffgres', publication: 'puffgres_pub', exists: true, active: true })
    expect(s.stream.pid).toBe(walsender.pid)
    expect(s.stream.confirmed_flush_lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/)
    expect(s.stream.lag_bytes).toBeGreaterThanOrEqual(0)
    expect(s.stream.retained_wal_bytes).toBeGreaterThanOrEqual(0)

    const human = await pipe.cli('status')
    expect(human.code).toBe(0)
    const lines = human.out.split('\n')
    expect(lines[0]).toMatch(/^MAPPING\s+NAMESPACE\s+VERSION\s+UPSERTS\/DELETES\s+LAST CHANGE\s+BACKFILL\s+DLQ$/)
    expect(lines[1]).toMatch(/^items\s+items\s+1\s+5\/1\s+[\d.]+ s ago @ [0-9A-F]+\/[0-9A-F]+\s+none\s+0$/)
    expect(lines[2]).toMatch(/^notes\s+notes-ns\s+1\s+0\/0\s+never\s+running 25\.0% \(50\/~200 rows\)\s+1$/)
    expect(human.out).toContain(`slot puffgres (publication puffgres_pub): active (pid ${walsender.pid}`)
    expect(human.out).toMatch(/confirmed flush LSN {2}[0-9A-F]+\/[0-9A-F]+ \(server at [0-9A-F]+\/[0-9A-F]+\)/)
  })

  test('the lag grows while the sink is blocked and shrinks after', async () => {
    await waitFor('caught up', async () => (await status()).stream.lag_bytes < 64 * 1024, 30_000)
    const writes = pipe.server.stats().writes
    pipe.server.failNext(1_000_000, 503, 100) // hold the sink: every write is refused (and retried) until released
    try {
      await pipe.db.sql`INSERT INTO items SELECT g, repeat('x', 1000) FROM generate_series(100, 400) g`
      const [{ written }] = await pipe.db.sql<
        { written: string }[]
      >`SELECT pg_current_wal_insert_lsn()::text AS written`
      // the slot stays behind everything written while the write is held
      await waitFor('the write to reach the sink and be refused', () => pipe.server.stats().writes > writes)
      const blocked = await status()
      expect(blocked.stream.lag_bytes).toBeGreaterThan(200 * 1000)
      const [{ behind }] = await pipe.db.sql<{ behind: boolean }[]>`
        SELECT confirmed_flush_lsn < ${written}::pg_lsn AS behind FROM pg_replication_slots WHERE slot_name = 'puffgres'`
      expect(behind).toBe(true)
      pipe.server.failNext(0)
      await waitFor('the rows written', () => pipe.server.documents('items').length === 4 + 301, 30_000)
      await waitFor(
        'the lag to shrink',
        async () => (await status()).stream.lag_bytes < blocked.stream.lag_bytes,
        30_000,
      )
    } finally {
      pipe.server.failNext(0)
    }
  }, 90_000)

  test('a stopped stream shows an inactive slot', async () => {
    await pipe.stream.stop()
    const s = await status()
    expect(s.stream).toMatchObject({ active: false, pid: null })
    const human = await pipe.cli('status')
    expect(human.out).toContain('slot puffgres (publication puffgres_pub): inactive (no consumer)')
    await pipe.startStream()
  })
})
