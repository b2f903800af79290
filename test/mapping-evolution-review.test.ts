// Review of online mapping changes (docs/ARCHITECTURE.md, invariants 1 and 10): a process that did not see
// `migrate`'s message (a hot standby taking over after it) and mapping files that cannot be read at the message.
// Either way, a change committed after `migrate` must reach the new version, and nothing after the message may be
// confirmed before it can.
import { describe, expect, test } from 'bun:test'
import { loadConfig } from '../src/config/load.ts'
import { ConfigError } from '../src/config/errors.ts'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { type RunningStream, startStream, waitForSlotActive } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'evolvereview',
  sql: `
    CREATE TABLE a (id int PRIMARY KEY, v int);
    CREATE TABLE b (id int PRIMARY KEY, v int);
  `,
  migrations: {
    '001_a.toml': migration({ name: 'a', table: 'a' }),
    '002_b.toml': migration({ name: 'b', table: 'b' }),
  },
})

const currentLsn = async () => (await pipe.db.sql`SELECT pg_current_wal_insert_lsn()::text AS lsn`)[0].lsn as string
const confirmedPast = async (lsn: string) =>
  (await pipe.db.sql`SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS past FROM pg_replication_slots
    WHERE slot_name = 'puffgres'`)[0]?.past === true

describe('online mapping changes: the processes and positions migrate does not reach directly', () => {
  test('a hot standby that takes over after migrate: later changes go through the new version', async () => {
    const active = await pipe.startStream()
    const standby = startStream(pipe.project.config, { standbyRetryMs: 100 })
    try {
      await takeOver(active, standby)
    } finally {
      await active.stop()
      await standby.stop()
    }
  })
  async function takeOver(active: RunningStream, standby: RunningStream) {
    await waitFor('the standby', () => standby.logs.some((l) => l.includes('waiting as a hot standby')))
    pipe.project.write(
      'puffgres/migrations/003_a.toml',
      migration({ name: 'a', version: 2, table: 'a', namespace: 'a_v2' }),
    )
    expect((await pipe.cli('migrate')).code).toBe(0)
    await pipe.db.sql`INSERT INTO a VALUES (1, 1)`
    await waitFor('row 1 in the new version', () => pipe.docs('a_v2').get(1)?.v === 1)
    const lsn = await currentLsn()
    await waitFor('the active process confirmed past migrate', () => confirmedPast(lsn))
    await active.stop()
    await waitFor('the standby streams', () => standby.logs.some((l) => l.includes('"streaming"')))
    await waitForSlotActive(pipe.db.sql)
    await pipe.db.sql`INSERT INTO a VALUES (2, 2)`
    await pipe.db.sql`UPDATE a SET v = 10 WHERE id = 1`
    await waitFor(
      'the changes after the takeover in the new version',
      () => pipe.docs('a_v2').get(2)?.v === 2 && pipe.docs('a_v2').get(1)?.v === 10,
    )
    // the replaced version is no longer written
    expect(pipe.docs('a').has(2)).toBe(false)
  }

  test("mapping files that cannot be read at migrate's message: nothing after it is confirmed, and it goes on once they can", async () => {
    let broken = true
    const load = () => loadConfig(pipe.project.config, process.env)
    const s = await pipe.startStream({
      reloadConfig: () => {
        if (broken) throw new ConfigError('puffgres/migrations/004_b.toml: invalid TOML: unexpected "=" at line 3')
        return load()
      },
    })
    await pipe.db.sql`INSERT INTO b VALUES (1, 1)`
    await waitFor('b 1', () => pipe.docs('b').get(1)?.v === 1)
    pipe.project.write(
      'puffgres/migrations/004_b.toml',
      migration({ name: 'b', version: 2, table: 'b', namespace: 'b_v2' }),
    )
    expect((await pipe.cli('migrate')).code).toBe(0)
    await pipe.db.sql`INSERT INTO b VALUES (2, 2)`
    const lsn = await currentLsn()
    await waitFor(
      'a line naming the file',
      () => s.logs.some((l) => l.includes('004_b.toml: invalid TOML')),
    )
    await new Promise((r) => setTimeout(r, 1500))
    expect(await confirmedPast(lsn)).toBe(false)
    expect(pipe.docs('b').has(2)).toBe(false)
    broken = false
    await waitFor('the change after migrate in the new version', () => pipe.docs('b_v2').get(2)?.v === 2, 40_000)
    await waitFor('confirmed past it', () => confirmedPast(lsn))
    expect(pipe.docs('b').has(2)).toBe(false)
    // one line each time, no stack trace
    expect(s.logs.some((l) => l.includes('    at '))).toBe(false)
    await s.stop()
  })

  test('a newer file not migrated yet when run reads the files at the message: the version migrate recorded is followed', async () => {
    const load = () => loadConfig(pipe.project.config, process.env)
    let migrated = false
    const s = await pipe.startStream({
      reloadConfig: () => {
        // the next version written between migrate and run reading the files (or only on run's host)
        if (migrated) {
          pipe.project.write(
            'puffgres/migrations/006_b.toml',
            migration({ name: 'b', version: 4, table: 'b', namespace: 'b_v4' }),
          )
        }
        return load()
      },
    })
    try {
      pipe.project.write(
        'puffgres/migrations/005_b.toml',
        migration({ name: 'b', version: 3, table: 'b', namespace: 'b_v3' }),
      )
      migrated = true
      expect((await pipe.cli('migrate')).code).toBe(0)
      await pipe.db.sql`INSERT INTO b VALUES (3, 3)`
      await waitFor('the change after migrate in the version it recorded', () => pipe.docs('b_v3').get(3)?.v === 3)
      expect(pipe.docs('b_v2').has(3)).toBe(false)
    } finally {
      await s.stop()
      const { rmSync } = await import('node:fs')
      rmSync(`${pipe.project.dir}/puffgres/migrations/006_b.toml`, { force: true })
    }
  })
})
