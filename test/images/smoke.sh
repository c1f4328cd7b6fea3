#!/usr/bin/env bash
# Runs each image scripts/build-images.sh built in a container, under the security context the
# chart and the operator give their pods: uid 65532 (non-root), read-only root filesystem, every
# capability dropped, no privilege escalation, the runtime's default seccomp profile.
#   1. model-server (the model baked in, no volume): logs that /health answers 503 while the model
#      loads, then 200 ready; embeds through /embed and /v1/embeddings (384 unit-norm numbers,
#      the same vector both ways); drains on SIGTERM and exits 0;
#   2. model-server :TAG-nomodel with models/ mounted read-only at /models, as a ModelEndpoint's
#      modelVolumeClaim is mounted: ready and embeds the same vector;
#   3. loadrunner: a short load (4 users, 5 s) against (1) that writes its termination message
#      (to a file mounted at /dev/termination-log, as the kubelet mounts one) and its JSON
#      summary: both count the same requests, none failed, the message fits in 4 KiB;
#   4. loadgate: `--help` answers, and `crds` prints exactly crds/*.yaml.
# Traffic stays on 127.0.0.1: the containers share the host's network namespace.
#
# Environment: IMAGE_REGISTRY, IMAGE_TAG (as scripts/build-images.sh), SMOKE_PORT (default 18281).
# Needs: podman, runc (Debian), curl, python3; the images in target/images/storage.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=test/images/engine.sh
source test/images/engine.sh

registry=${IMAGE_REGISTRY:-ghcr.io/loadgate}
tag=${IMAGE_TAG:-dev}
port=${SMOKE_PORT:-18281}
work=$(mktemp -d)
restricted=(--network host --read-only --user 65532:65532 --cap-drop all
  --security-opt no-new-privileges --pids-limit 512)
started=()

say() { printf 'images: %s\n' "$*"; }
fail() {
  printf 'images: FAIL: %s\n' "$*" >&2
  for name in "${started[@]}"; do
    printf -- '--- podman logs %s\n' "$name" >&2
    podman logs "$name" >&2 2>&1 | tail -n 20 >&2 || true
  done
  exit 1
}
cleanup() {
  for name in "${started[@]}"; do podman rm -f -t 0 "$name" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Starts model-server from image $2 as container $1 on $port, extra podman arguments after.
start_server() {
  local name=$1 image=$2
  shift 2
  podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
  podman run -d --name "$name" "${restricted[@]}" -e HOST=127.0.0.1 -e "PORT=$port" -e RUST_LOG=info \
    "$@" "$image" >/dev/null
  started+=("$name")
}

# Waits for 200 on /health; prints how many 503 not_ready answers came first.
wait_ready() {
  local name=$1 code not_ready=0
  for _ in $(seq 600); do
    code=$(curl -s -o "$work/health" -w '%{http_code}' "http://127.0.0.1:$port/health" || true)
    case $code in
      200)
        grep -q '"ready"' "$work/health" || fail "$name: /health 200 without status ready: $(cat "$work/health")"
        echo "$not_ready"
        return 0
        ;;
      503)
        grep -q '"not_ready"' "$work/health" || fail "$name: /health 503 without status not_ready: $(cat "$work/health")"
        not_ready=$((not_ready + 1))
        ;;
    esac
    [[ $(podman inspect -f '{{.State.Running}}' "$name") == true ]] || fail "$name exited before it was ready"
    sleep 0.05
  done
  fail "$name: not ready after 30 s"
}

# Embeds one sentence through both APIs; checks 384 unit-norm numbers, equal both ways; prints it.
embed() {
  local name=$1
  curl -fsS -H 'content-type: application/json' -d '{"texts": ["A container image, tested as it ships."]}' \
    "http://127.0.0.1:$port/embed" >"$work/embed.json" || fail "$name: POST /embed failed"
  curl -fsS -H 'content-type: application/json' -d '{"input": "A container image, tested as it ships."}' \
    "http://127.0.0.1:$port/v1/embeddings" >"$work/openai.json" || fail "$name: POST /v1/embeddings failed"
  python3 - "$work/embed.json" "$work/openai.json" <<'PY' || fail "$name: the embeddings are wrong"
import json, math, sys
tutorial = json.load(open(sys.argv[1]))
openai = json.load(open(sys.argv[2]))
a = tutorial["embeddings"][0]
b = openai["data"][0]["embedding"]
assert tutorial["dimensions"] == 384 and len(a) == 384, f"want 384 dimensions, got {len(a)}"
norm = math.sqrt(sum(x * x for x in a))
assert abs(norm - 1) < 1e-5, f"not unit norm: {norm}"
assert max(abs(x - y) for x, y in zip(a, b)) < 1e-6, "/embed and /v1/embeddings differ"
print(json.dumps(a))
PY
}

# --- 0. every image runs as 65532 by itself (runAsNonRoot admits it without runAsUser) -------
for image in "$registry/loadgate:$tag" "$registry/loadrunner:$tag" "$registry/model-server:$tag" "$registry/model-server:$tag-nomodel"; do
  user=$(podman image inspect -f '{{.Config.User}}' "$image") || fail "no image $image: run scripts/build-images.sh"
  [[ $user == 65532:65532 ]] || fail "$image runs as '$user', want 65532:65532"
done
say "4 images, each with USER 65532:65532"

# --- 1. model-server, the model baked in ------------------------------------------------------
server=$registry/model-server:$tag
say "model-server: $server (${restricted[*]})"
start_server loadgate-smoke-server "$server"
not_ready=$(wait_ready loadgate-smoke-server)
logs=$(podman logs loadgate-smoke-server 2>&1)
listening=$(grep -n 'listening; /health answers 503' <<<"$logs" | head -n 1 | cut -d: -f1)
ready=$(grep -n 'model ready' <<<"$logs" | head -n 1 | cut -d: -f1)
[[ -n $listening && -n $ready && $listening -lt $ready ]] ||
  fail "model-server did not log 'listening' (503 not_ready) before 'model ready'"
say "  /health: 503 not_ready while loading (logged; $not_ready answers seen), then 200 ready"
baked=$(embed loadgate-smoke-server)
say "  /embed and /v1/embeddings: 384 unit-norm numbers, the same both ways"
say "  ran as $(podman inspect -f '{{.Config.User}}' loadgate-smoke-server), read-only root: $(podman inspect -f '{{.HostConfig.ReadonlyRootfs}}' loadgate-smoke-server)"

# --- 3. loadrunner against it (before the SIGTERM of 1) ----------------------------------------
runner=$registry/loadrunner:$tag
say "loadrunner: $runner, 4 users for 5 s"
mkdir -p "$work/out"
: >"$work/termination-log"
chmod 0777 "$work/out"
chmod 0666 "$work/termination-log"
podman run --rm --name loadgate-smoke-runner "${restricted[@]}" \
  -v "$work/termination-log:/dev/termination-log:rw" -v "$work/out:/out:rw" \
  "$runner" run -H "http://127.0.0.1:$port" -u 4 -r 4 -t 5s --wait-time constant:100ms \
  --termination-summary /dev/termination-log --json /out/summary.json >"$work/runner.log" 2>&1 ||
  {
    cat "$work/runner.log" >&2
    fail "loadrunner exited non-zero"
  }
python3 - "$work/termination-log" "$work/out/summary.json" <<'PY' || fail "loadrunner's summary is wrong"
import json, sys
raw = open(sys.argv[1], "rb").read()
assert 0 < len(raw) <= 4096, f"the termination message is {len(raw)} bytes; the kubelet keeps 4096"
message = json.loads(raw)
summary = json.load(open(sys.argv[2]))
for name, s in (("termination message", message), ("--json summary", summary)):
    total = s["total"]
    assert total["requests"] > 0, f"{name}: no requests"
    assert total["failures"] == 0, f"{name}: {total['failures']} failures"
assert message["total"]["requests"] == summary["total"]["requests"], "the two summaries count differently"
print(f"images:   {summary['total']['requests']} requests, 0 failures, p95 {summary['total']['p95Ms']:.1f} ms; "
      f"termination message {len(raw)} bytes")
PY

# --- 1 (end). SIGTERM drains and exits 0 -------------------------------------------------------
podman stop -t 30 loadgate-smoke-server >/dev/null
code=$(podman inspect -f '{{.State.ExitCode}}' loadgate-smoke-server)
[[ $code == 0 ]] || fail "model-server exited $code on SIGTERM, want 0"
# The whole log first: `podman logs | grep -q` under pipefail fails when grep stops reading at
# the match and podman, still writing the lines after it, dies of SIGPIPE (seen in CI).
server_log=$(podman logs loadgate-smoke-server 2>&1)
grep -q 'SIGTERM received: draining' <<<"$server_log" || fail "model-server did not log the SIGTERM drain"
say "  SIGTERM: drained, exit 0"

# --- 2. model-server without the model, models/ mounted read-only ------------------------------
nomodel=$registry/model-server:$tag-nomodel
say "model-server: $nomodel, models/ mounted read-only at /models"
start_server loadgate-smoke-nomodel "$nomodel" -v "$PWD/models:/models:ro"
wait_ready loadgate-smoke-nomodel >/dev/null
mounted=$(embed loadgate-smoke-nomodel)
[[ $mounted == "$baked" ]] || fail "the mounted model's vector differs from the baked model's"
say "  ready; the same vector as the baked image"
podman stop -t 30 loadgate-smoke-nomodel >/dev/null

# --- 4. the operator --------------------------------------------------------------------------
operator=$registry/loadgate:$tag
say "loadgate: $operator"
podman run --rm "${restricted[@]}" "$operator" --help >"$work/help.txt" 2>&1 || fail "loadgate --help failed: $(cat "$work/help.txt")"
grep -q 'operator' "$work/help.txt" || fail "loadgate --help does not list the operator command"
podman run --rm "${restricted[@]}" "$operator" crds >"$work/crds.yaml" 2>"$work/crds.err" || fail "loadgate crds failed: $(cat "$work/crds.err")"
target/release/loadgate crds >"$work/crds-host.yaml" 2>/dev/null || cat crds/*.yaml >"$work/crds-host.yaml"
cmp -s "$work/crds.yaml" "$work/crds-host.yaml" || fail "the image's loadgate crds differs from the host build's"
say "  --help answers; crds prints the CRDs ($(grep -c '^kind: CustomResourceDefinition' "$work/crds.yaml") definitions)"
say "4 images passed"
