#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: fetch the model weights the golden tests need,
# check formatting and lints, run every test of the workspace, the quickstart in local mode, the
# container images (built and run), the chart checks, the end-to-end tests on a real control
# plane (test/e2e/run.sh, pods as processes) and on a real node (test/node/e2e.sh, the images on
# the real kubelet).
# Needs: cargo, go 1.25+, python3 (with venv; bench/setup-python.sh fetches PyTorch once), npm, lua5.4, shellcheck, openssl, curl, nginx, qemu-user, chromium,
# buildah, podman, runc, containerd, Debian's CNI plugins, iptables and iproute2 (.ci/run
# installs them), and root (test/node/e2e.sh: a network namespace and containerd).
#
#   scripts/test.sh          the whole suite (CI's; about 30 minutes on 2 cores)
#   scripts/test.sh --fast   the loop to run while working: formatting, lints, every unit and
#                            loopback test of the workspace (the real model and the tiny fidelity
#                            checkpoints included: bench/.venv, built once); no root, no Go, no
#                            images, no cluster (2 to 3 minutes warm on 2 cores: 132 and 164 s measured)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fast=false
case "${1:-}" in
  --fast) fast=true ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--fast]" >&2; exit 2 ;;
esac

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "model weights"
scripts/fetch-model.sh

# model-server/tests/fidelity.rs serves tiny BERT and XLM-RoBERTa embedders and cross-encoders
# made here by transformers from a config and a seed, against sentence-transformers' answers:
# the Python stack (bench/.venv, ~6 GB once, ~2 min from the registry) makes them in ~25 s, again
# only when the script or its inputs change.
step "tiny fidelity models (transformers + sentence-transformers)"
bench/setup-python.sh
tiny=target/tiny-models
tiny_stamp=$(cat model-server/tests/fidelity/make_tiny.py model-server/tests/fixtures/reference.json \
  model-server/src/backend/calibration.txt | sha256sum | cut -c1-16)
if [[ $(cat "$tiny/.stamp" 2>/dev/null) != "$tiny_stamp" ]]; then
  rm -rf "$tiny"
  mkdir -p target
  bench/.venv/bin/python model-server/tests/fidelity/make_tiny.py "$tiny" >target/tiny-models.log 2>&1 ||
    { tail -40 target/tiny-models.log >&2; echo "making the tiny fidelity models failed" >&2; exit 1; }
  echo "$tiny_stamp" >"$tiny/.stamp"
fi
echo "tiny models in $tiny: $(cd "$tiny" && echo */)"

if ! $fast; then
  # The control plane and the real node for the end-to-end tests build from Go modules (~9 and
  # ~3 more min cold, cached after): build them alongside the Rust steps, which leave cores idle
  # while they link.
  mkdir -p target
  kcp_log=target/kcp-build.log
  { test/cluster/cluster.sh build && test/node/node.sh build; } >"$kcp_log" 2>&1 &
  kcp_build=$!
  trap 'kill "$kcp_build" 2>/dev/null || true' EXIT
fi

step "shell scripts: bash -n, shellcheck"
for script in scripts/*.sh test/*/*.sh .ci/run; do bash -n "$script"; done
if $fast && ! command -v shellcheck >/dev/null; then
  echo "shellcheck is not installed: skipped here (CI runs it; apt-get install shellcheck)"
else
  shellcheck scripts/*.sh test/*/*.sh .ci/run
fi

step "README and docs/: links and anchors resolve, the two commands exist"
python3 scripts/check-docs.py --self-test
python3 scripts/check-docs.py

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

if $fast; then
  step "fast tier passed in $((SECONDS - started)) s; scripts/test.sh without --fast runs CI's whole suite"
  exit 0
fi

# The golden and fidelity test binaries, to rerun as another CPU would run them.
test_binary() {
  cargo test --workspace --locked --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for m in map(json.loads, sys.stdin):
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}
golden=$(test_binary golden)
[[ -x $golden ]] || { echo "cannot find the golden test binary" >&2; exit 1; }
fidelity=$(test_binary fidelity)
[[ -x $fidelity ]] || { echo "cannot find the fidelity test binary" >&2; exit 1; }

step "golden vectors on the fallback kernel (MODEL_SERVER_KERNEL=gemm: candle's gemm, as CPUs without AVX-512 run)"
MODEL_SERVER_KERNEL=gemm "$golden" --nocapture 2>&1 | tee target/golden-gemm.log | grep -E '^(kernel|fidelity|test result)'
grep -q '^kernel gemm:' target/golden-gemm.log
step "every architecture on the fallback kernel (tiny BERT and XLM-RoBERTa embedders and cross-encoders)"
MODEL_SERVER_KERNEL=gemm "$fidelity" 2>&1 | tee target/fidelity-gemm.log | grep -E '^test result'
grep -q '^test result: ok. 7 passed' target/fidelity-gemm.log

step "an AVX2-only CPU (qemu-x86_64 -cpu Haswell: no AVX-512): no SIGILL, the same vectors"
qemu-x86_64 -cpu Haswell "$golden" short_texts_match_with_the_kernel_this_cpu_picks --nocapture 2>&1 |
  grep -v '^qemu-x86_64: warning' | tee target/golden-avx2.log | grep -E '^(kernel|test result)'
grep -q '^kernel gemm:' target/golden-avx2.log && grep -q '^test result: ok. 1 passed' target/golden-avx2.log
qemu-x86_64 -cpu Haswell "$golden" int8_stays_within --nocapture 2>&1 |
  grep -v '^qemu-x86_64: warning' | tee target/golden-avx2-int8.log | grep -E '(AVX512-VNNI|^test result)'
grep -q 'tested that --dtype int8 is refused' target/golden-avx2-int8.log &&
  grep -q '^test result: ok. 1 passed' target/golden-avx2-int8.log

step "real clients against model-server: openai (/v1/embeddings), huggingface_hub (POST /, TEI's route)"
clients_venv=target/clients-venv
if [[ ! -x $clients_venv/bin/python ]] || ! "$clients_venv/bin/python" -c 'import openai, huggingface_hub' 2>/dev/null; then
  rm -rf "$clients_venv"
  python3 -m venv "$clients_venv"
  "$clients_venv/bin/pip" install --quiet --disable-pip-version-check openai huggingface_hub numpy
fi
MODEL=models/all-MiniLM-L6-v2 HOST=127.0.0.1 PORT=18091 target/debug/model-server >target/clients-server.log 2>&1 &
clients_server=$!
for _ in $(seq 120); do
  curl -fsS http://127.0.0.1:18091/health >/dev/null 2>&1 && break
  sleep 0.5
done
clients_rc=0
"$clients_venv/bin/python" model-server/tests/clients/real_clients.py http://127.0.0.1:18091 || clients_rc=$?
kill "$clients_server"
wait "$clients_server" 2>/dev/null || true
if ((clients_rc != 0)); then
  tail -n 20 target/clients-server.log >&2
  exit 1
fi

step "a real gateway's redirects (nginx): http->https is a failure with its reason; a same-origin hop is followed with followRedirects"
# nginx answers POST /embed with 301 to https (the gateway in front of a TLS endpoint): every such
# request fails as "redirect 301 to https://…", never a fast success; /moved (302 to /health) is
# followed by the task that opts in. 2 users for 2 s, loopback only.
peer=target/nginx-peer
rm -rf "$peer" && mkdir -p "$peer"
cat >"$peer/nginx.conf" <<CONF
worker_processes 1;
pid $PWD/$peer/nginx.pid;
error_log $PWD/$peer/error.log;
events {}
http {
  access_log off;
  server {
    listen 127.0.0.1:18096;
    location = /health { return 200 "ok"; }
    location = /moved { return 302 /health; }
    location / { return 301 https://\$host\$request_uri; }
  }
}
CONF
nginx -c "$PWD/$peer/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
for _ in $(seq 40); do
  curl -fsS http://127.0.0.1:18096/health >/dev/null 2>&1 && break
  sleep 0.25
done
target/debug/loadrunner run -H http://127.0.0.1:18096 -u 2 -r 2 -t 2s --csv "$peer/run" \
  --tasks '[{"name":"embed","weight":1,"request":{"embed":{"path":"/embed","minTexts":1,"maxTexts":2}}},{"name":"moved","weight":1,"followRedirects":true,"request":{"get":{"path":"/moved"}}}]' \
  >"$peer/loadrunner.log" 2>&1 || true
kill "$nginx_pid"
wait "$nginx_pid" 2>/dev/null || true
cat "$peer/run_failures.csv"
grep -q '^POST,embed,redirect 301 to https://127.0.0.1/embed,[1-9]' "$peer/run_failures.csv" ||
  { echo "nginx's http->https redirect was not a failure with its reason" >&2; exit 1; }
grep -qE '^GET,moved,[1-9][0-9]*,0,' "$peer/run_stats.csv" ||
  { echo "the followed same-origin redirect did not succeed" >&2; grep moved "$peer/run_stats.csv" >&2; exit 1; }

step "a real TLS gateway (nginx, HTTP/2, a CA made here, an API key): loadgate local with the CA, key and texts from Secrets and a ConfigMap"
test/gateway/run.sh

step "container images: built with buildah from docker/*.Dockerfile, each run in a container"
# The release binaries (about 10 minutes cold on 2 cores), the three images and a runtime base
# from this machine's Debian packages, as OCI archives in target/images/ (scripts/build-images.sh);
# then each image under the chart's security context with podman (test/images/smoke.sh).
scripts/build-images.sh --engine buildah
test/images/smoke.sh

step "scripts/quickstart.sh, the README's first command: the server tried, then examples/quickstart.yaml in local mode (about three minutes)"
# On the release binaries the images step just built (its build is a no-op here): the real
# model-server as a child process, the three tutorial profiles through the real runner, a
# verdict. On 2 cores the spike may break the p95 budget (a verdict, exit 0 from the script);
# anything but a verdict (a bad manifest, no verdict, or no status) fails CI.
results="target/quickstart-results"
rm -rf "$results"
code=0
PORT=18099 RESULTS=$results scripts/quickstart.sh >target/quickstart.out 2> >(tee target/quickstart-local.log >&2) || code=$?
grep -E '^(==>|  (PASS|FAIL|reports|/health)|capacity:)' target/quickstart.out || true
status="$results/quickstart/status.yaml"
if [[ $code -ne 0 || ! -f $status ]]; then
  tail -n 40 target/quickstart.out >&2
  echo "scripts/quickstart.sh did not reach a verdict (exit $code)" >&2
  exit 1
fi
grep -qE '^  phase: (Passed|Failed)$' "$status" || { echo "no verdict in $status" >&2; sed -n '/^status:/,$p' "$status" >&2; exit 1; }
[[ $(grep -c '^    results:$' "$status") == 3 ]] || { echo "not every profile has results in $status" >&2; exit 1; }
grep -E '^  (phase|verdict):' "$status"
# Watching it: every 10 s of each profile, the progress line the operator's status shows.
grep -qE 'progress: sustained [0-9]+/[0-9]+s, [0-9]+ users, ' target/quickstart-local.log ||
  { echo "loadgate local printed no progress line for the sustained profile" >&2; exit 1; }
grep -m1 -E 'progress: sustained ' target/quickstart-local.log
# Each profile's HTML report, opened in headless Chromium: no console error, charts and tables
# in the DOM, a screenshot that is not blank (kept beside the report as .png).
shopt -s nullglob
reports=("$results"/quickstart/*.html)
shopt -u nullglob
# One per profile, and report.html: the whole test's page from its merged report.
((${#reports[@]} == 4)) || { echo "want 4 HTML reports in $results/quickstart, found ${#reports[@]}" >&2; exit 1; }
python3 scripts/check-report.py "${reports[@]}"

step "Helm chart, CRD copies, Argo CD health checks"
scripts/lint-chart.sh

step "end to end on a real control plane (test/e2e/run.sh, about five minutes)"
if ! wait "$kcp_build"; then
  cat "$kcp_log" >&2
  echo "building the test control plane or node failed (test/cluster/cluster.sh build, test/node/node.sh build)" >&2
  exit 1
fi
cat "$kcp_log"
test/e2e/run.sh

step "examples/quickstart.yaml on a real node: the Helm chart and the built images on the real kubelet, containerd and runc (test/node/e2e.sh, about two and a half minutes)"
test/node/e2e.sh
