// Scale-out: `run --mapping a,b` (or `[stream] mappings`) streams some of the mappings, each process with its own
// slot and publication; bad selections fail before anything is touched.
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { loadConfig } from '../src/config/load.ts'
import { runStream } from '../src/stream/mod.ts'
import { publicationTables } from '../src/postgres/publication.ts'
import { runCli } from './harness/cli.ts'
import { usePipeline } from './harness/pipeline.ts'
import { makeProject, migration } from './harness/project.ts'
import { quietLogger } from './harness/stream.ts'
import { waitFor } from './harness/wait.ts'

const pipe = usePipeline({
  name: 'scaleout',
  sql: `CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);
    CREATE TABLE c (id int PRIMARY KEY, v text);`,
  migrations: {
    '001_a.toml': migration({ name: 'a', table: 'a' }),
    '002_b.toml': migration({ name: 'b', table: 'b' }),
    '003_c.toml': migration({ name: 'c', table: 'c' }),
  },
})

describe('run --mapping', () => {
  test('two processes split the mappings, each with its own slot and publication', async () => {
    const config = loadConfig(pipe.project.config)
    const stop = new AbortController()
    const logs: string[] = []
    const run = (mappings: string[], slot: string, publication: string) =>
      runStream(config, {
        slot,
        createSlot: true,
        mappings,
        publication,
        pollIntervalMs: 50,
        batchSize: 100,
        signal: stop.signal,
        log: quietLogger(logs),
      })
    const first = run(['a', 'c'], 'part_ac', 'pub_ac')
    const second = run(['b'], 'part_b', 'pub_b')
    try {
      await waitFor('both slots active', async () => {
        const rows = await pipe.db
          .sql`SELECT slot_name FROM pg_replication_slots WHERE active AND slot_name LIKE 'part_%'`
        return rows.length === 2
      })
      expect((await publicationTables(pipe.db.sql, 'pub_ac'))!.map((t) => t.table).sort()).toEqual(['a', 'c'])
      expect((await publicationTables(pipe.db.sql, 'pub_b'))!.map((t) => t.table)).toEqual(['b'])
      await pipe.db.sql`INSERT INTO a VALUES (1, 'a1')`
      await pipe.db.sql`INSERT INTO b VALUES (1, 'b1')`
      await pipe.db.sql`INSERT INTO c VALUES (1, 'c1')`
      await waitFor(
        'all three namespaces',
        () => ['a', 'b', 'c'].every((ns) => pipe.docs(ns).get(1)?.v === `${ns}1`),
      )
      // each slot is confirmed past the changes of its own tables only; the other's are not its business
      expect(logs.some((l) => l.includes('publication set to the selected mappings'))).toBe(true)
    } finally {
      stop.abort()
      await Promise.all([first, second])
    }
    // the default publication, which migrate keeps, still covers every mapping
    expect((await publicationTables(pipe.db.sql, 'puffgres_pub'))!.map((t) => t.table).sort()).toEqual(['a', 'b', 'c'])
  })

  test('a bad selection is a one-line error before anything is touched', async () => {
    const unknown = await pipe.cli('run', '--mapping', 'a,nope', '--slot', 's1', '--publication', 'p1')
    expect(unknown.code).toBe(2)
    expect(unknown.err).toContain('--mapping: no mapping named "nope" (mappings: a, b, c)')
    const shared = await pipe.cli('run', '--mapping', 'a', '--slot', 's1')
    expect(shared.code).toBe(2)
    expect(shared.err).toContain('own --publication')
    const slot = await pipe.cli('run', '--mapping', 'a', '--publication', 'p1')
    expect(slot.code).toBe(2)
    expect(slot.err).toContain('own --slot')
    const badPub = await pipe.cli('run', '--mapping', 'a', '--slot', 's1', '--publication', 'x-y')
    expect(badPub.code).toBe(2)
    expect(badPub.err).toContain('--publication')
    const rows = await pipe.db.sql`SELECT 1 FROM pg_publication WHERE pubname IN ('p1', 'x-y')`
    expect(rows.length).toBe(0)
  })

  test('[stream] mappings in the config: checked, and kept by migrate in its own publication', async () => {
    const other = makeProject({
      databaseUrl: pipe.db.url,
      turbopufferUrl: pipe.server.url,
      extra: '[stream]\nmappings = ["b", "zz"]\nslot = "only_b"\npublication = "pub_only_b"',
      migrations: {
        '001_a.toml': migration({ name: 'a', table: 'a' }),
        '002_b.toml': migration({ name: 'b', table: 'b' }),
      },
    })
    const defaults = makeProject({
      databaseUrl: pipe.db.url,
      extra: '[stream]\nmappings = ["b"]',
      migrations: {
        '001_a.toml': migration({ name: 'a', table: 'a' }),
        '002_b.toml': migration({ name: 'b', table: 'b' }),
      },
    })
    try {
      const bad = await runCli(['-c', other.config, 'run'])
      expect(bad.code).toBe(1)
      expect(bad.err).toContain('puffgres.toml: stream.mappings: no mapping named "zz"')
      const shared = await runCli(['-c', defaults.config, 'run'])
      expect(shared.code).toBe(1)
      expect(shared.err).toContain('needs its own stream.slot and stream.publication')
      other.write('puffgres.toml', readFileSync(other.config, 'utf8').replace('"b", "zz"', '"b"'))
      expect((await runCli(['-c', other.config, 'migrate'])).code).toBe(0)
      expect((await publicationTables(pipe.db.sql, 'pub_only_b'))!.map((t) => t.table)).toEqual(['b'])
    } finally {
      other.remove()
      defaults.remove()
    }
  })
})
