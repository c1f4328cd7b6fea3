#!/usr/bin/env bash
# From a fresh clone to a verdict in one command: fetch all-MiniLM-L6-v2, build the release
# binaries, start model-server on 127.0.0.1, watch /health go from not_ready to ready, embed
# through each API shape, show a few metrics, stop it with SIGTERM; then run
# examples/quickstart.yaml with `loadgate local` (the operator's LoadTest on this machine) and
# print its verdict. PORT (default 8080): the server's port for the first part; RESULTS: where
# the reports go (default results/). scripts/test.sh runs it as CI's check of the README.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

port="${PORT:-8080}"
base="http://127.0.0.1:$port"
step() { printf '\n==> %s\n' "$*"; }

step "model weights"
scripts/fetch-model.sh

step "build (release; the first build takes several minutes on 2 cores)"
# The three binaries, as scripts/build-images.sh builds them (after it, this is a no-op).
cargo build --release --locked -p loadgate -p loadrunner -p model-server --bins

step "start model-server on 127.0.0.1:$port"
target/release/model-server --model models/all-MiniLM-L6-v2 --host 127.0.0.1 --port "$port" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
  if status="$(curl -s -o /dev/null -w '%{http_code}' "$base/health")" && [[ "$status" == 200 ]]; then
    break
  fi
  [[ "$status" == 503 ]] && echo "  /health: 503 not_ready (loading)"
  kill -0 "$server" 2>/dev/null || { echo "model-server exited during start-up" >&2; exit 1; }
  sleep 0.1
done
echo "  /health: $(curl -s "$base/health")"

step "GET /info"
curl -s "$base/info"; echo

step "POST /embed (tutorial shape), first 4 of 384 dimensions"
curl -s "$base/embed" -H 'Content-Type: application/json' \
  -d '{"texts": ["Where does this endpoint fall over?", "May this rollout go ahead?"]}' \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); [print("  ", [round(x,4) for x in v[:4]], "...") for v in d["embeddings"]]'

step "POST /v1/embeddings (OpenAI shape): usage"
curl -s "$base/v1/embeddings" -H 'Content-Type: application/json' \
  -d '{"input": "hello", "model": "all-MiniLM-L6-v2"}' \
  | python3 -c 'import json,sys; print("  ", json.load(sys.stdin)["usage"])'

step "a bad request gets a JSON error"
curl -s "$base/embed" -H 'Content-Type: application/json' -d '{"texts": []}'; echo

step "GET /metrics (excerpt)"
curl -s "$base/metrics" | grep -E '^model_server_(requests_total|embeddings_total|model_load_seconds)' | sed 's/^/  /'

step "SIGTERM: drain and exit"
kill -TERM "$server"
wait "$server" && echo "  model-server exited 0"
trap - EXIT

step "loadgate local -f examples/quickstart.yaml: the tutorial's three profiles, about two minutes"
# The same ModelEndpoint + LoadTest the operator takes: model-server as a child process, its
# readiness waited on as a probe would, ramp-up / sustained / spike through the runner, and the
# status the operator would write. The verdict is shown, not enforced: a FAIL here says where
# this machine's endpoint falls over (2 cores do not hold p95 < 500 ms at 200 users).
# RESULTS: where the reports go (default results/).
results="${RESULTS:-results}"
verdict=0
target/release/loadgate local -f examples/quickstart.yaml --results "$results" || verdict=$?
case "$verdict" in
  0) echo "  PASS: every profile inside p95 < 500 ms and errors < 1%" ;;
  1) echo "  FAIL: see the Passed condition above for the measured value and the budget" ;;
  *) echo "  loadgate local could not run the manifest (exit $verdict)" >&2; exit "$verdict" ;;
esac
echo "  reports: $results/quickstart/ (Locust CSVs, HTML and JSON per profile, status.yaml)"
