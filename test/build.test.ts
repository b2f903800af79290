// The single-file binary (scripts/build.ts, linux-x64 only, to keep the suite fast) used as a person would: init a
// project, point it at a database through .env, migrate, backfill and run, with a TypeScript transform read from
// disk at run time that imports a value from 'puffgres' and a relative helper.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { type LocalServer, startLocalServer } from '../src/local/server.ts'
import { loadTransform } from '../src/pipeline/transform/mod.ts'
import { VERSION } from '../src/version.ts'
import { runCli } from './harness/cli.ts'
import { type TestDatabase, testDatabase } from './harness/pg.ts'
import { waitFor } from './harness/wait.ts'

const ROOT = join(import.meta.dirname!, '..')
const canRun = process.platform === 'linux' && process.arch === 'x64'
if (!canRun) {
  console.warn(
    `build.test.ts skipped: it builds and runs the linux-x64 binary, and this is ${process.platform}-${process.arch}`,
  )
}

let work: string
let binary: string
let project: string
let db: TestDatabase
let server: LocalServer
const children: ChildProcess[] = []

/** The environment of every binary run: none of the variables the project's .env must provide. */
function childEnv(): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(DATABASE_URL|TURBOPUFFER_|PUFFGRES_)/.test(k)) env[k] = v
  }
  return env
}

/** Runs the binary in the project folder (asynchronously: the local server answers from this process). */
function exec(...args: string[]): Promise<{ code: number | null; out: string }> {
  const c = spawn(binary, args, { cwd: project, env: childEnv() })
  children.push(c)
  let out = ''
  c.stdout!.on('data', (d) => out += d)
  c.stderr!.on('data', (d) => out += d)
  return new Promise((resolve) => c.on('exit', (code) => resolve({ code, out })))
}

describe.skipIf(!canRun)('the linux-x64 binary', () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'puffgres-build-'))
    const dist = join(work, 'dist')
    const build = spawnSync(process.execPath, [
      join(ROOT, 'scripts/build.ts'),
      '--target',
      'linux-x64',
      '--outdir',
      dist,
    ], {
      encoding: 'utf8',
      timeout: 120_000,
    })
    if (build.status !== 0) throw new Error(`scripts/build.ts failed:\n${build.stdout}${build.stderr}`)
    binary = join(dist, 'puffgres-linux-x64')
    project = join(work, 'project')
    db = await testDatabase('build')
    server = await startLocalServer()
  }, 120_000)

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL')
    await server?.stop()
    await db?.drop()
    if (work) rmSync(work, { recursive: true, force: true })
  })

  test('SHA256SUMS lists the binary with its hash', () => {
    const sums = readFileSync(join(work, 'dist', 'SHA256SUMS'), 'utf8')
    const hash = createHash('sha256').update(readFileSync(binary)).digest('hex')
    expect(sums).toBe(`${hash}  puffgres-linux-x64\n`)
  })

  test('--version', () => {
    const r = spawnSync(binary, ['--version'], { encoding: 'utf8' })
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toBe(`puffgres ${VERSION}`)
  })

  test('init, migrate, backfill and run, with a transform loaded from disk', async () => {
    const init = spawnSync(binary, ['init', project], { cwd: work, encoding: 'utf8' })
    expect(init.status).toBe(0)
    // the types file is the text of src/transform-types.ts, bundled into the binary
    expect(readFileSync(join(project, 'puffgres/puffgres.d.ts'), 'utf8'))
      .toBe(readFileSync(join(ROOT, 'src/transform-types.ts'), 'utf8'))
    // the scaffold's own example mapping (table products), with the .env it asks for and a transform of ours
    writeFileSync(
      join(project, '.env'),
      `DATABASE_URL=${db.url}\nTURBOPUFFER_API_KEY=test-key\nTURBOPUFFER_BASE_URL=${server.url}\n`,
    )
    const migrationPath = join(project, 'puffgres/migrations/001_example.toml')
    const migration = readFileSync(migrationPath, 'utf8')
    expect(migration).toContain('# transform = "transforms/example.ts"')
    writeFileSync(
      migrationPath,
      migration.replace('# transform = "transforms/example.ts"', 'transform = "transforms/shout.ts"'),
    )
    writeFileSync(
      join(project, 'puffgres/transforms/shout.ts'),
      `import { defineTransform } from 'puffgres'
import type { RowEvent } from 'puffgres'
import { Action } from 'puffgres' // the original puffgres README's value-style import of a type
import { shout } from './lib/shout.ts'

export default defineTransform((event: RowEvent): Action => {
  if (event.type === 'delete') return { type: 'delete' }
  const row = event.new!
  return { type: 'upsert', attributes: { name: shout(String(row.name)), price: row.price, by: 'binary' } }
})
`,
    )
    mkdirSync(join(project, 'puffgres/transforms/lib'))
    writeFileSync(
      join(project, 'puffgres/transforms/lib/shout.ts'),
      `export const shout = (s: string) => s.toUpperCase() + '!'\n`,
    )
    await db
      .sql`CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, price int NOT NULL, status text NOT NULL)`
    await db.sql`INSERT INTO products VALUES (1, 'kettle', 30, 'active'), (2, 'toaster', 25, 'retired'),
      (3, 'teapot', 12, 'active')`

    const migrate = await exec('migrate')
    expect(migrate.out).not.toContain('error')
    expect(migrate.code).toBe(0)

    const backfill = await exec('backfill', 'products')
    expect(backfill.out).not.toContain('error')
    expect(backfill.code).toBe(0)
    const docs = () => server.documents('products').map((d) => ({ id: d.id, name: d.name, price: d.price, by: d.by }))
    expect(docs()).toEqual([
      { id: 1, name: 'KETTLE!', price: 30, by: 'binary' },
      { id: 3, name: 'TEAPOT!', price: 12, by: 'binary' },
    ])

    const run = spawn(binary, ['run', '--poll-interval-ms', '50'], { cwd: project, env: childEnv() })
    children.push(run)
    let out = ''
    run.stdout!.on('data', (d) => out += d)
    run.stderr!.on('data', (d) => out += d)
    const exited = new Promise<number | null>((resolve) => run.on('exit', (code) => resolve(code)))

    await db.sql`INSERT INTO products VALUES (4, 'mug', 5, 'active')`
    await db.sql`UPDATE products SET status = 'retired' WHERE id = 1` // leaves the membership: deleted
    await db.sql`UPDATE products SET name = 'cup', status = 'active' WHERE id = 2` // enters it
    const expected = [
      { id: 2, name: 'CUP!', price: 25, by: 'binary' },
      { id: 3, name: 'TEAPOT!', price: 12, by: 'binary' },
      { id: 4, name: 'MUG!', price: 5, by: 'binary' },
    ]
    try {
      await waitFor('the streamed changes in the namespace', () => JSON.stringify(docs()) === JSON.stringify(expected))
    } catch (e) {
      throw new Error(`${(e as Error).message}\nnamespace: ${JSON.stringify(docs())}\nrun output:\n${out}`)
    }
    run.kill('SIGTERM')
    expect(await exited).toBe(0)
    expect(out).not.toContain('"level":"error"')
  }, 60_000)
})

describe('under Bun, without a build', () => {
  test("a transform file imports the value defineTransform from 'puffgres' once the CLI has started", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'puffgres-virtual-'))
    try {
      const file = join(dir, 'double.ts')
      writeFileSync(
        file,
        `import { defineBatchTransform, defineTransform } from 'puffgres'
export default defineTransform((event: { new?: { n: number } }) => ({ type: 'upsert', attributes: { n: event.new!.n * 2 } }))
export const helpers = typeof defineBatchTransform
`,
      )
      expect((await runCli(['--version'])).code).toBe(0)
      const t = await loadTransform(file)
      expect(t.fn({ new: { n: 21 } })).toEqual({ type: 'upsert', attributes: { n: 42 } })
      expect((await import(pathToFileURL(file).href)).helpers).toBe('function')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
