// A backfill killed with SIGKILL mid-way (a real child process) is reported as unfinished, resumes from its last
// checkpoint without starting over, and ends with exactly the table's member rows in the namespace.
import { expect, test } from 'bun:test'
import { spawn } from 'node:child_process'
import { usePipeline } from './harness/pipeline.ts'
import { migration } from './harness/project.ts'
import { waitFor } from './harness/wait.ts'

const ROWS = 3000

const pipe = usePipeline({
  name: 'bfresume',
  sql: `
    CREATE TABLE docs (org int, slug text, title text, status text, PRIMARY KEY (org, slug));
    INSERT INTO docs SELECT g % 17, 's' || g, 'title ' || g, CASE WHEN g % 5 = 0 THEN 'hidden' ELSE 'shown' END
      FROM generate_series(1, ${ROWS}) g;
  `,
  migrations: {
    '001_docs.toml': migration({ name: 'docs', table: 'docs', id: ['org', 'slug'], membership: "status = 'shown'" }),
  },
})

const progress = async () =>
  (await pipe.db.sql<{ status: string; rows: number }[]>`
    SELECT status, rows_done::int AS rows FROM __puffgres_backfill WHERE mapping = 'docs'`)[0]

test('kill -9 mid-backfill, then --resume: exact final state, nothing copied twice past the checkpoint', async () => {
  pipe.server.setLatency(200) // every write takes 200 ms (4 at once): the whole copy takes ~5 s, the kill lands early in it
  const child = spawn(
    './node_modules/.bin/bun',
    ['src/cli.ts', '-c', pipe.project.config, 'backfill', 'docs', '--batch-size', '25'],
    { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let output = ''
  child.stdout.on('data', (d) => output += d)
  child.stderr.on('data', (d) => output += d)
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
  await waitFor('a few checkpoints', async () => (await progress())?.rows >= 250, 30_000)
  child.kill('SIGKILL')
  expect(await exited).toBe(null) // killed, not finished
  pipe.server.setLatency(0)

  const killed = await progress()
  expect(killed.status).toBe('running')
  const total = (await pipe.db.sql`SELECT count(*)::int AS n FROM docs WHERE status = 'shown'`)[0].n
  expect(killed.rows).toBeLessThan(total)

  const refused = await pipe.cli('backfill', 'docs')
  expect(refused.code).toBe(1)
  expect(refused.err).toContain(`is unfinished: ${killed.rows.toLocaleString('en-US')} rows copied`)
  expect(refused.err).toContain('puffgres backfill docs --resume')

  // writes the killed process had sent may still be being answered (200 ms each, 4 at once): wait until the server
  // has answered every request it received (it counts a request on arrival and its status when it answers)
  const answered = () => Object.values(pipe.server.stats().statuses).reduce((a, b) => a + b, 0)
  await waitFor("the killed run's last writes to land", () => pipe.server.stats().requests === answered(), 10_000, 10)
  const upsertsBefore = pipe.server.stats().rowsUpserted
  const resumed = await pipe.cli('backfill', 'docs', '--resume', '--batch-size', '25')
  expect(resumed.err).toBe('')
  expect(resumed.code).toBe(0)
  expect(resumed.out).toContain(`(${killed.rows.toLocaleString('en-US')} rows already copied)`)
  expect(resumed.out).toContain(
    `done: ${(total - killed.rows).toLocaleString('en-US')} rows this run (${total.toLocaleString('en-US')} in all)`,
  )
  // it continued from the checkpoint: exactly the rows after it were sent
  expect(pipe.server.stats().rowsUpserted - upsertsBefore).toBe(total - killed.rows)
  expect((await progress()).status).toBe('done')

  const expected = await pipe.db.sql<{ org: number; slug: string; title: string; status: string }[]>`
    SELECT org, slug, title, status FROM docs WHERE status = 'shown'`
  const got = pipe.docs('docs')
  expect(got.size).toBe(expected.length)
  for (const row of expected) expect(got.get(`${row.org}:${row.slug}`)).toEqual(row)
}, 60_000)
