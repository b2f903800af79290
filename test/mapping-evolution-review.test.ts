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
import { spawnCli } from './harness/child.ts'

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

/** c's first version: a transform slow enough that its batch is in flight for a while */
const SLOW = `export default async function slow(event: { type: string; new?: Record<string, unknown> }) {
  await new Promise((r) => setTimeout(r, 1500))
  if (event.type === 'delete') return { type: 'delete' }
  return { type: 'upsert', attributes: { v: event.new!.v } }
}
`

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

  test('reindex --retire --delete-namespace waits for every run streaming, not only the slot it is given', async () => {
    // mapping c streams in a scale-out process of its own (slot and publication "scale"), its v1 through a transform
    // slow enough that a batch is still being written when the retire is committed
    await pipe.db.sql`CREATE TABLE c (id int PRIMARY KEY, v int)`
    pipe.project.write('puffgres/transforms/slow.ts', SLOW)
    pipe.project.write(
      'puffgres/migrations/007_c.toml',
      migration({ name: 'c', table: 'c', transform: 'transforms/slow.ts' }),
    )
    const m = await pipe.cli('migrate')
    expect(m.err).toBe('')
    expect(m.code).toBe(0)
    const scale = await pipe.startStream({ slot: 'scale', publication: 'scale', mappings: ['c'] })
    await waitForSlotActive(pipe.db.sql, 'scale')
    try {
      pipe.project.write(
        'puffgres/migrations/008_c.toml',
        migration({ name: 'c', version: 2, table: 'c', namespace: 'c_v2' }),
      )
      const built = await pipe.cli('reindex', 'c', '--slot', 'scale')
      expect(built.code).toBe(0)
      await pipe.db.sql`INSERT INTO c VALUES (1, 1)`
      await waitFor('c 1 in the new version', () => pipe.docs('c_v2').get(1)?.v === 1)
      await pipe.db.sql`INSERT INTO c VALUES (2, 2)`
      // no --slot: the slot of the configuration ("puffgres") streams nothing now
      const retired = await pipe.cli('reindex', 'c', '--retire', '--delete-namespace')
      expect(retired.code).toBe(0)
      // the slow write of row 2 to the retired namespace would land after its deletion and bring it back
      await waitFor('c 2 in the new version', () => pipe.docs('c_v2').get(2)?.v === 2)
      await new Promise((r) => setTimeout(r, 2500))
      expect(pipe.server.documents('c')).toHaveLength(0)
    } finally {
      await scale.stop()
    }
  })

  test('a mapping whose table was dropped before run started does not stop the stream at a later migrate message', async () => {
    await pipe.db.sql`CREATE TABLE d (id int PRIMARY KEY, v int)`
    pipe.project.write('puffgres/migrations/009_d.toml', migration({ name: 'd', table: 'd' }))
    pipe.project.write(
      'puffgres/migrations/010_a.toml',
      migration({ name: 'a', version: 3, table: 'a', namespace: 'a_v3' }),
    )
    // applies d and a v3 (v2 kept live), backfills a v3
    expect((await pipe.cli('reindex', 'a')).code).toBe(0)
    await pipe.db.sql`DROP TABLE d`
    // d is left out at start (logged); its mapping stays recorded
    const s = await pipe.startStream()
    try {
      expect((await pipe.cli('reindex', 'a', '--retire')).code).toBe(0)
      await pipe.db.sql`INSERT INTO a VALUES (30, 30)`
      await waitFor('a 30 in the serving version', () => pipe.docs('a_v3').get(30)?.v === 30)
      expect(s.logs.some((l) => l.includes('cannot be routed'))).toBe(false)
    } finally {
      await s.stop()
      // migrate refuses a mapping whose table is gone: the tests after this one migrate again
      const { rmSync } = await import('node:fs')
      rmSync(`${pipe.project.dir}/puffgres/migrations/009_d.toml`)
    }
  })

  test('status names the namespace of the applied version as active, not a newer file not migrated yet', async () => {
    // a serves a_v3 (the version applied last); a v4 file is written but not migrated
    pipe.project.write(
      'puffgres/migrations/011_a.toml',
      migration({ name: 'a', version: 4, table: 'a', namespace: 'a_v4' }),
    )
    try {
      const a = (await pipe.status()).mappings.find((m: { mapping: string }) => m.mapping === 'a')
      expect(a.applied_version).toBe(3)
      expect(a.active_namespace).toBe('a_v3')
      expect(a.versions.map((v: { version: number; namespace: string }) => `${v.version}:${v.namespace}`)).toEqual([
        '3:a_v3',
      ])
    } finally {
      const { rmSync } = await import('node:fs')
      rmSync(`${pipe.project.dir}/puffgres/migrations/011_a.toml`)
    }
  })

  test("a mapping migrated before its file reaches run's host: its table's changes arrive once the file does", async () => {
    let hidden = true
    const load = () => loadConfig(pipe.project.config, process.env)
    const s = await pipe.startStream({
      reloadConfig: () => {
        const c = load()
        // migrate ran elsewhere (CI): the file is not on this host yet
        if (!hidden) return c
        return {
          ...c,
          mappings: c.mappings.filter((m) => m.name !== 'e'),
          migrations: c.migrations.filter((m) => m.name !== 'e'),
        }
      },
    })
    try {
      await pipe.db.sql`CREATE TABLE e (id int PRIMARY KEY, v int)`
      pipe.project.write('puffgres/migrations/012_e.toml', migration({ name: 'e', table: 'e' }))
      expect((await pipe.cli('migrate')).code).toBe(0)
      await pipe.db.sql`INSERT INTO e VALUES (1, 1)`
      await waitFor('the table named', () => s.logs.some((l) => l.includes('table public.e is in publication')))
      hidden = false
      await waitFor('e 1', () => pipe.docs('e').get(1)?.v === 1, 40_000)
    } finally {
      await s.stop()
    }
  })

  test('puffgres run, the command, reads the mapping files again: a mapping added while it streams', async () => {
    // the tests above pass the harness's own loader; the command must not hand run a cached configuration
    const child = spawnCli(['-c', pipe.project.config, 'run'])
    try {
      await waitForSlotActive(pipe.db.sql)
      await pipe.db.sql`CREATE TABLE f (id int PRIMARY KEY, v int)`
      pipe.project.write('puffgres/migrations/013_f.toml', migration({ name: 'f', table: 'f' }))
      expect((await pipe.cli('migrate')).code).toBe(0)
      await pipe.db.sql`INSERT INTO f VALUES (1, 1)`
      await waitFor('f 1 through the command', () => pipe.docs('f').get(1)?.v === 1, 20_000)
      expect(child.output()).not.toContain('table public.f is in publication')
    } finally {
      child.kill('SIGTERM')
      await child.exited
    }
  })
})
