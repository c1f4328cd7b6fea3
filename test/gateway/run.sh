#!/usr/bin/env bash
# A real TLS gateway in front of model-server, loaded as a team's endpoint is served: Debian's
# nginx terminates TLS (a certificate from a CA made here, for the name gateway.test), speaks
# HTTP/2 by ALPN, and lets through only `Authorization: Bearer <key>`. `loadgate local` runs
# test/gateway/loadtest.yaml against https://127.0.0.1:18443 with the CA and the key from
# Secrets and the texts from a ConfigMap (written here beside it), through all three embed API
# shapes. Checks: the run passes over HTTP/2 with TLS handshake times reported; a wrong key
# fails with `HTTPError 401`; and the key appears in no output (reports, status, logs).
# Loopback only, about 40 s. Needs: openssl, nginx, target/debug/{loadgate,model-server}.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

work=target/gateway
rm -rf "$work" && mkdir -p "$work"
key="Bearer lg-$(openssl rand -hex 16)"

# shellcheck source=test/gateway/lib.sh
source test/gateway/lib.sh
gateway_certs "$work"
MODEL=models/all-MiniLM-L6-v2 HOST=127.0.0.1 PORT=18098 target/debug/model-server \
  >"$work/model-server.log" 2>&1 &
server=$!
gateway_pid=
trap 'kill "$server" $gateway_pid 2>/dev/null || true' EXIT
gateway_start "$work" 18443 127.0.0.1:18098 "$key"

# The Secrets and the ConfigMap, as a team keeps them beside the test (stringData: kubectl
# applies the same file).
secrets() {
  cat <<YAML
apiVersion: v1
kind: Secret
metadata: {name: embed-api-key}
stringData:
  authorization: "$1"
---
apiVersion: v1
kind: Secret
metadata: {name: gateway-ca}
stringData:
  ca.crt: |
$(sed 's/^/    /' "$work/ca.crt")
---
apiVersion: v1
kind: ConfigMap
metadata: {name: team-texts}
data:
  texts.jsonl: |
    How do I rotate the API key of the embeddings gateway?
    {"text": "Quarterly revenue grew 12% on strong cloud demand."}
    The model server answers /health before the weights are loaded.
    {"text": "Ein kurzer deutscher Satz über Lastprüfungen."}
YAML
}
secrets "$key" >"$work/secrets.yaml"
secrets "Bearer wrong-key" >"$work/wrong-secrets.yaml"

code=0
target/debug/loadgate local -f test/gateway/loadtest.yaml -f "$work/secrets.yaml" \
  --results "$work/results" >"$work/local.log" 2>&1 || code=$?
status="$work/results/gateway/status.yaml"
if [[ $code != 0 ]]; then
  cat "$work/local.log" >&2
  echo "the gateway run did not pass (exit $code)" >&2
  exit 1
fi
grep -E '^  phase: Passed$' "$status" >/dev/null
grep -E 'protocol: HTTP/2$' "$status" >/dev/null || { echo "no HTTP/2 in $status" >&2; exit 1; }
grep -E 'tlsP95Ms: [0-9.]+$' "$status" >/dev/null || { echo "no TLS handshake time in $status" >&2; exit 1; }
[[ $(grep -cE '^POST,(openai|tei|tutorial),[1-9][0-9]*,0,' "$work/results/gateway/steady_stats.csv") == 3 ]] || { echo "not every API shape succeeded" >&2; cat "$work/results/gateway/steady_stats.csv" >&2; exit 1; }
grep -q 'Dataset (inline): 4 texts' "$work/results/gateway/steady.html" ||
  { echo "the report does not describe the dataset" >&2; exit 1; }
echo "gateway: passed over HTTP/2; $(grep -E 'tlsP(50|95)Ms' "$status" | tr -s ' \n' ' ')"

code=0
target/debug/loadgate local -f test/gateway/loadtest.yaml -f "$work/wrong-secrets.yaml" \
  --results "$work/wrong" >"$work/wrong.log" 2>&1 || code=$?
[[ $code == 1 ]] || { cat "$work/wrong.log" >&2; echo "a wrong key should fail the run (exit $code)" >&2; exit 1; }
grep -q 'HTTPError 401' "$work/wrong/gateway/steady_failures.csv" ||
  { echo "the wrong key's failures are not named HTTPError 401" >&2; exit 1; }
echo "gateway: a wrong key fails with HTTPError 401"

# The runner's own command line reaches the same gateway: the CA by flag, the key from the
# environment (never in its arguments).
cli_code=0
GATEWAY_KEY="$key" target/debug/loadrunner run -H https://127.0.0.1:18443 --server-name gateway.test \
  --ca-file "$work/ca.crt" --header-env Authorization=GATEWAY_KEY -u 2 -r 2 -t 2s --no-wait-ready \
  --tasks '[{"name":"tei","weight":1,"request":{"embed":{"path":"/embed","api":"tei","minTexts":1,"maxTexts":2}}}]' \
  --csv "$work/cli" >"$work/cli.log" 2>&1 || cli_code=$?
if [[ $cli_code != 0 ]] || ! grep -qE '^POST,tei,[1-9][0-9]*,0,' "$work/cli_stats.csv"; then
  cat "$work/cli.log" >&2
  echo "loadrunner's flags did not reach the gateway (exit $cli_code)" >&2
  exit 1
fi
grep -q 'connections: 2 opened over HTTP/2' "$work/cli.log" ||
  { echo "loadrunner did not report its HTTP/2 connections" >&2; exit 1; }
echo "gateway: loadrunner's --ca-file, --server-name and --header-env reach it over HTTP/2"

# The key is nowhere in what loadgate wrote or printed.
secret=${key#Bearer }
if grep -rIl -- "$secret" "$work/results" "$work/wrong" "$work/local.log" "$work/wrong.log" \
  "$work"/cli*; then
  echo "the API key leaked into the files above" >&2
  exit 1
fi
echo "gateway: the key appears in no report, status or log"
