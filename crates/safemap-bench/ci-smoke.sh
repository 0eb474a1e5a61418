#!/usr/bin/env bash
# Smoke run of safemap-bench for CI: builds the crate (debug, both binaries)
# and runs each workload once at a tiny size, checking that every workload
# printed its JSON lines and that a report with charts is written. Takes a
# few seconds after the build. Benchmarks never fail CI for being slow: only
# a crash, a missing line or a malformed report fails this script.
#
# The server workload runs only with SAFEMAP_BENCH_SERVERS=1 (it may
# apt-get etcd-server and redis-server, and builds the `safemap` server
# binary unless SAFEMAP_BIN names one).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build -q -p safemap-bench --bins
bin="$target/debug/safemap-bench"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

expect_lines() { # file count what
  local n
  n=$(grep -c '^{' "$1" || true)
  if [ "$n" -ne "$2" ]; then
    echo "ci-smoke: $3 printed $n JSON lines, expected $2" >&2
    cat "$1" >&2
    exit 1
  fi
  echo "ci-smoke: $3 ok ($n lines)"
}

"$bin" incident --keys 2000 --duration 200ms --pause-ms 2 --repeats 1 --json --quiet > "$out/incident.jsonl"
# 11 variants without the refresher, 10 with it (the single-thread ceiling has no refresh run).
expect_lines "$out/incident.jsonl" 21 incident
grep -q '"variant":"safemap","refresh":true' "$out/incident.jsonl"

"$bin" mixes --threads 1,2 --ops 20000 --capacity-log2 12 --repeats 1 --json --quiet > "$out/mixes.jsonl"
# 3 shapes x (6 concurrent variants x 2 thread counts + hashbrown at 1 thread).
expect_lines "$out/mixes.jsonl" 39 mixes

"$bin" delete-cost --ops 2000 --repeats 1 --json --quiet > "$out/delete.jsonl"
expect_lines "$out/delete.jsonl" 7 delete-cost
if grep -q '"bytes_per_op":null' "$out/delete.jsonl"; then
  echo "ci-smoke: delete-cost did not count allocations (helper binary missing?)" >&2
  exit 1
fi

"$bin" memory --entries 20000 --json --quiet --report "$out/report" > "$out/memory.jsonl"
expect_lines "$out/memory.jsonl" 10 memory
grep -q '^## 4. Memory' "$out/report/BENCHMARKS.md"
grep -q '<svg' "$out/report/bench-charts/memory.svg"
echo "ci-smoke: report ok"

"$bin" references --ops 2000 --repeats 1 --json --quiet --report "$out/refs-report" > "$out/references.jsonl"
# 4 maps x 3 operations.
expect_lines "$out/references.jsonl" 12 references
grep -q '^## 5. Reference cost' "$out/refs-report/BENCHMARKS.md"

if [ "${SAFEMAP_BENCH_SERVERS:-0}" = 1 ]; then
  # The safemap server from this tree (skipped with a message if it does not build).
  if [ -z "${SAFEMAP_BIN:-}" ] && cargo build -q -p safemap-server; then
    export SAFEMAP_BIN="$target/debug/safemap"
  fi
  "$bin" server --connections 4 --duration 1s --json --quiet > "$out/server.jsonl"
  n=$(grep -c '^{' "$out/server.jsonl" || true)
  echo "ci-smoke: server ok ($n lines; servers that could not start are listed above as skipped)"
else
  echo "ci-smoke: server workload skipped (set SAFEMAP_BENCH_SERVERS=1 to run it)"
fi
echo "ci-smoke: every workload ran"
