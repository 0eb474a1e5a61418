#!/usr/bin/env bash
# Schema-driven fuzzing of a live server: schemathesis 4 (PyPI) generates
# requests from GET /v1/openapi.json with the admin token and runs its checks
# (no 5xx, responses as documented, requests the document allows accepted,
# requests it forbids refused). The pprof route is excluded (it blocks N s).
#
#   api-fuzz.sh SAFEMAP_BINARY [MAX_EXAMPLES]
#
# Installs schemathesis into a virtualenv under $SAFEMAP_FUZZ_VENV (default
# target/api-fuzz-venv) when missing. Starts the server on a free loopback
# port in a temporary directory and stops it by its process id.
set -euo pipefail
bin=$1
examples=${2:-30}
venv=${SAFEMAP_FUZZ_VENV:-target/api-fuzz-venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis>=4,<5"
fi
dir=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
RUST_LOG=warn "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/data" >"$dir/out" 2>"$dir/err" &
server_pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$dir/out" 2>/dev/null && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$dir/out" | head -1)
if [ -z "$addr" ]; then
  echo "api-fuzz: the server did not start" >&2
  cat "$dir/err" >&2
  exit 1
fi
token=$(cat "$dir/data/admin.token")
here=$(cd "$(dirname "$0")" && pwd)
# Phases: examples, fuzzing (max-examples per operation) and stateful; the
# coverage phase is left out: it sends headers the document does not name
# (any server accepts unknown headers) and ignores header patterns.
# The hooks drop X-Reason-Encoded from generated requests (schemathesis_hooks.py).
PYTHONPATH="$here" SCHEMATHESIS_HOOKS=schemathesis_hooks \
"$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "http://$addr/v1/openapi.json" \
  --phases examples,fuzzing,stateful \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "$examples" \
  --exclude-path /debug/pprof/profile \
  --seed "${SAFEMAP_FUZZ_SEED:-1}" \
  --no-color
