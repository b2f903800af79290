#!/usr/bin/env bash
# Runs test files under Deno. They are written for bun:test; deno.test.json (generated here from deno.json, plus
# "bun:test" → test/harness/bun-test-shim.ts) makes them run on Deno.test.
#   scripts/test-deno.sh                    the default list below
#   scripts/test-deno.sh test/x.test.ts ... only these files (extra deno flags may follow `--`)
set -euo pipefail
cd "$(dirname "$0")/.."
DENO=./node_modules/.bin/deno

# Every test file that does not need a Bun-only API runs on Deno too (npm test). Bun only: build.test.ts (bun build
# --compile), package.test.ts (the npm package's Bun launcher); demo.test.ts runs on Deno but is left to Bun in npm test
# for time (scripts/test-deno.sh test/demo.test.ts runs it). stream-memory.test.ts takes about a minute on Deno; the
# memory bound is the runtime's as much as ours, so it runs on both.
DEFAULT_TESTS=(
  test/keep-alive.test.ts
  test/local-server.test.ts
  test/local-rules.test.ts
  test/local-by-filter.test.ts
  test/local-namespaces.test.ts
  test/local-candidates.test.ts
  test/chunking.test.ts
  test/row-documents-config.test.ts
  test/transform-documents.test.ts
  test/local-persistence.test.ts
  test/local-faults.test.ts
  test/local-command.test.ts
  test/local-bun-test-shim.test.ts
  test/harness.test.ts
  test/sink.test.ts
  test/sink-plan.test.ts
  test/signal-listeners.test.ts
  test/stream-memory.test.ts
  test/write-budget.test.ts
  test/stream.test.ts
  test/stream-resilience.test.ts
  test/stream-embeddings.test.ts
  test/chunked-stream.test.ts
  test/chunk-documents.test.ts
  test/replication.test.ts
  test/pgoutput.test.ts
  test/values.test.ts
  test/copy-text.test.ts
  test/stable-lsn.test.ts
  test/heartbeat.test.ts
  test/metrics.test.ts
  test/status.test.ts
  test/log.test.ts
  test/config.test.ts
  test/init.test.ts
  test/cli-reference.test.ts
  test/migrate.test.ts
  test/membership.test.ts
  test/membership-differential.test.ts
  test/transform.test.ts
  test/transform-process.test.ts
  test/transform-examples.test.ts
  test/embeddings.test.ts
  test/backfill.test.ts
  test/mapping-evolution.test.ts
  test/slot-publication.test.ts
  test/mapping-evolution-e2e.test.ts
  test/mapping-evolution-review.test.ts
  test/backfill-pages.test.ts
  test/source-catalog.test.ts
  test/backfill-crash.test.ts
  test/backfill-resume.test.ts
  test/backfill-race.test.ts
  test/dlq.test.ts
  test/value-size.test.ts
  test/verify.test.ts
  test/readme-compat.test.ts
  test/connection-errors.test.ts
  test/doctor.test.ts
  test/transform-import.test.ts
  test/status-page.test.ts
  test/monitoring.test.ts
  test/one-path-stream.test.ts
  test/one-path-repair.test.ts
  test/row-key.test.ts
  test/vector-metric.test.ts
  test/tenant-stream.test.ts
  test/inflight.test.ts
  test/server-wal.test.ts
)

# deno.json's settings and import map, plus the shim; regenerated so it never drifts from deno.json.
"$DENO" eval --quiet '
  const cfg = JSON.parse(Deno.readTextFileSync("deno.json"))
  for (const k of ["name", "version", "exports", "publish"]) delete cfg[k]
  cfg.imports = { ...cfg.imports, "bun:test": "./test/harness/bun-test-shim.ts" }
  const text = JSON.stringify(cfg, null, 2) + "\n"
  let old = ""
  try { old = Deno.readTextFileSync("deno.test.json") } catch { /* first run */ }
  if (old !== text) Deno.writeTextFileSync("deno.test.json", text)
'

files=()
extra=()
seen_dashes=0
for a in "$@"; do
  if [[ $seen_dashes == 1 ]]; then extra+=("$a"); elif [[ $a == -- ]]; then seen_dashes=1; else files+=("$a"); fi
done
[[ ${#files[@]} -eq 0 ]] && files=("${DEFAULT_TESTS[@]}")

exec "$DENO" test -A --config deno.test.json "${extra[@]}" "${files[@]}"
