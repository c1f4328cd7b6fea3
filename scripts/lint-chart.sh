#!/usr/bin/env bash
# Lints and validates the operator's Helm chart and the Argo CD health checks, offline:
#   1. fetches its tools once into a cache folder: a static helm v4 (scripts/k8s-tool.sh) and
#      kubernetes-validate (PyPI) in a venv;
#   2. checks that charts/loadgate/crds/ is an exact copy of the generated crds/;
#   3. helm lint --strict, with the default values, charts/loadgate/ci/test-values.yaml and
#      charts/loadgate/ci/local-images-values.yaml (what scripts/kind-e2e.sh installs);
#   4. helm template with each, and with the runner PodMonitor and the Grafana dashboard
#      ConfigMap turned on over the defaults; checks which objects and images come out, what the
#      PodMonitor selects and scrapes, that the ConfigMap holds dashboards/loadgate-run.json as
#      it is, and validates the rendered objects and the CRD files with kubernetes-validate
#      --strict against Kubernetes $K8S_VERSION;
#   5. checks the dashboard (scripts/check-dashboard.py): its structure, and its queries against
#      test/metrics/runner-scrape.txt, a runner's /metrics (after the checker's self-test);
#   6. runs the Argo CD Lua health-check tests (docs/argocd/test-health.lua) and checks that
#      docs/gitops.md embeds the same scripts in its argocd-cm example.
# Every check runs; the script prints a summary and exits 1 if any failed.
#
# Needs: bash, npm, tar, unzip, python3 with venv, and a Lua interpreter (Debian: lua5.4).
# Environment:
#   LOADGATE_TOOLS  cache folder for the tools (default: ~/.cache/loadgate/tools)
#   K8S_VERSION     Kubernetes version to render and validate for (default: 1.34.0)
# shellcheck disable=SC2317 # the check functions are called indirectly, through run_check
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools=${LOADGATE_TOOLS:-$HOME/.cache/loadgate/tools}
k8s_version=${K8S_VERSION:-1.34.0}
# Pinned tool versions: bump deliberately (helm's pin is in scripts/k8s-tool.sh).
kv_version=1.37.0 # bundles schemas for Kubernetes 1.25 to 1.37
chart=charts/loadgate
ci_values=$chart/ci/test-values.yaml
# The values scripts/kind-e2e.sh installs the chart with: the images scripts/build-images.sh tags.
local_values=$chart/ci/local-images-values.yaml
# The Grafana dashboard the chart ships, and a runner's /metrics to check its queries against.
dashboard=$chart/dashboards/loadgate-run.json
runner_scrape=test/metrics/runner-scrape.txt
# The monitoring parts over the default values (the ci values turn them on with every knob set).
monitoring_set=(--set runnerPodMonitor.enabled=true --set grafanaDashboard.enabled=true)

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Keep helm away from the user's repositories, plugins and caches.
export HELM_CACHE_HOME=$scratch/helm/cache HELM_CONFIG_HOME=$scratch/helm/config \
  HELM_DATA_HOME=$scratch/helm/data

step() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'lint-chart: %s\n' "$*" >&2
  exit 1
}
need() {
  local cmd
  for cmd; do
    command -v "$cmd" >/dev/null || die "$cmd is required (Debian package: ${cmd/python3/python3-venv})"
  done
}

# --- tools ------------------------------------------------------------------------------------

helm=$(scripts/k8s-tool.sh helm) || die "could not fetch helm (scripts/k8s-tool.sh)"
helm_version=$("$helm" version --short) || die "$helm does not run"

venv=$tools/kubernetes-validate-$kv_version
kv=$venv/bin/kubernetes-validate
if ! "$kv" --version >/dev/null 2>&1; then
  step "installing kubernetes-validate $kv_version into $venv"
  need python3
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian package: python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$kv_version"
fi
"$kv" --version >/dev/null || die "$kv does not run"

echo "tools: helm $helm_version, kubernetes-validate $kv_version (cached in $tools)"
echo "target: Kubernetes $k8s_version"

# --- checks -----------------------------------------------------------------------------------

# Each check prints what it looked at and returns non-zero on failure. They run in `if`, where
# `set -e` is off, so every failure path returns explicitly.
results=()
failed=0
run_check() {
  local name=$1
  shift
  step "$name"
  if "$@"; then
    results+=("PASS  $name")
  else
    results+=("FAIL  $name")
    failed=1
  fi
}

check_crd_copies() {
  if [[ ! -d crds ]]; then
    echo "crds/ does not exist yet: generate it (loadgate crds), then copy it into the chart:"
    echo "  mkdir -p $chart/crds && cp crds/*.yaml $chart/crds/"
    return 1
  fi
  local generated=(crds/*.yaml) rc=0 f copy
  if [[ ! -e ${generated[0]} ]]; then
    echo "crds/ holds no *.yaml"
    return 1
  fi
  for f in "${generated[@]}"; do
    copy=$chart/crds/${f#crds/}
    if [[ ! -f $copy ]]; then
      echo "missing: $copy"
      rc=1
    elif ! cmp -s "$f" "$copy"; then
      echo "differs from $f: $copy"
      diff -u "$f" "$copy" | head -n 20
      rc=1
    else
      echo "same: $copy"
    fi
  done
  for copy in "$chart"/crds/*.yaml; do
    if [[ -e $copy && ! -f crds/${copy#"$chart"/crds/} ]]; then
      echo "stale (no such file in crds/): $copy"
      rc=1
    fi
  done
  if ((rc)); then
    echo "fix: cp crds/*.yaml $chart/crds/   (and delete any stale copy)"
  fi
  return "$rc"
}

helm_lint() {
  "$helm" lint --strict --kube-version "$k8s_version" "$@" "$chart"
}

render() {
  local out=$1
  shift
  "$helm" template loadgate "$chart" --namespace loadgate --kube-version "$k8s_version" "$@" \
    >"$out" || return 1
  echo "rendered $(grep -c '^kind:' "$out") objects into $(basename "$out")"
}

# Checks the rendered objects' kinds and that every image tag defaults to the chart's appVersion.
check_rendered() {
  local file=$1 expect_kinds=$2 expect_tag=$3
  "$venv/bin/python" - "$file" "$expect_kinds" "$expect_tag" <<'PY'
import sys, yaml
path, expect_kinds, expect_tag = sys.argv[1], sorted(sys.argv[2].split(",")), sys.argv[3]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
kinds = sorted(d["kind"] for d in docs)
for d in docs:
    print(f'  {d["kind"]}/{d["metadata"]["name"]}')
ok = kinds == expect_kinds
if not ok:
    print(f"kinds {kinds} != expected {expect_kinds}")
if expect_tag:
    dep = next(d for d in docs if d["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    images = {"operator": c["image"], "MODEL_SERVER_IMAGE": env["MODEL_SERVER_IMAGE"],
              "LOADRUNNER_IMAGE": env["LOADRUNNER_IMAGE"]}
    for what, image in images.items():
        print(f"  {what}: {image}")
        if not image.endswith(":" + expect_tag):
            print(f"{what} image {image} is not tagged {expect_tag}")
            ok = False
sys.exit(0 if ok else 1)
PY
}

# The runner PodMonitor and the dashboard ConfigMap in a rendered file: the PodMonitor selects the
# pods the operator's runner Jobs create, scrapes their `metrics` port and keeps the labels the
# dashboard filters on; the ConfigMap carries the sidecar's label and the dashboard file unchanged.
check_monitoring() {
  local file=$1 pod_namespaces=$2 configmap_namespace=$3 interval=$4
  "$venv/bin/python" - "$file" "$dashboard" "$pod_namespaces" "$configmap_namespace" "$interval" <<'PY'
import json, sys, yaml
path, dashboard, pod_namespaces, cm_namespace, interval = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
ok = True
def expect(what, got, want):
    global ok
    if got == want:
        print(f"  {what}: {json.dumps(got)}")
    else:
        print(f"{what}: {json.dumps(got)} != expected {json.dumps(want)}")
        ok = False
pms = [d for d in docs if d["kind"] == "PodMonitor"]
cms = [d for d in docs if d["kind"] == "ConfigMap"]
expect("PodMonitors", len(pms), 1)
expect("ConfigMaps", len(cms), 1)
if pms:
    spec = pms[0]["spec"]
    expect("PodMonitor selector", spec["selector"], {"matchLabels": {
        "app.kubernetes.io/name": "loadrunner", "app.kubernetes.io/managed-by": "loadgate"}})
    expect("PodMonitor namespaceSelector", spec["namespaceSelector"],
           {"any": True} if pod_namespaces == "any" else {"matchNames": pod_namespaces.split(",")})
    expect("PodMonitor podTargetLabels", spec["podTargetLabels"],
           ["loadgate.dev/loadtest", "loadgate.dev/profile"])
    eps = spec["podMetricsEndpoints"]
    expect("PodMonitor endpoint", [(e["port"], e["path"], e.get("interval")) for e in eps],
           [("metrics", "/metrics", interval)])
if cms:
    cm = cms[0]
    expect("ConfigMap namespace", cm["metadata"]["namespace"], cm_namespace)
    expect("ConfigMap sidecar label", cm["metadata"]["labels"].get("grafana_dashboard"), "1")
    expect("ConfigMap keys", sorted(cm["data"]), ["loadgate-run.json"])
    text = cm["data"].get("loadgate-run.json", "")
    want = open(dashboard).read()
    if text.rstrip("\n") == want.rstrip("\n") and json.loads(text) == json.loads(want):
        print(f"  ConfigMap loadgate-run.json: {dashboard} unchanged ({len(text)} bytes)")
    else:
        print(f"ConfigMap loadgate-run.json differs from {dashboard}")
        ok = False
sys.exit(0 if ok else 1)
PY
}

check_dashboard() {
  python3 scripts/check-dashboard.py "$dashboard" --scrape "$runner_scrape" --self-test &&
    python3 scripts/check-dashboard.py "$dashboard" --scrape "$runner_scrape"
}

# kubernetes-validate exits 0 when it has no schema for a kind (it only warns); accept that for
# ServiceMonitor and PodMonitor, CRD kinds it cannot know, and fail on any other warning.
validate() {
  local out rc=0
  out=$("$kv" --strict -k "$k8s_version" "$@" 2>&1) || rc=$?
  printf '%s\n' "$out"
  if grep '^WARN' <<<"$out" |
    grep -qvE 'kind (ServiceMonitor|PodMonitor) with api version monitoring.coreos.com/'; then
    echo "unexpected warnings above"
    rc=1
  fi
  return "$rc"
}

lua_tests() {
  local lua ran=0
  # Argo CD runs health checks in gopher-lua (Lua 5.1); run the tests with 5.1 too when present.
  for lua in lua5.4 lua lua5.1; do
    command -v "$lua" >/dev/null || continue
    [[ $lua == lua && $ran -gt 0 ]] && continue
    echo "--- $lua ($("$lua" -v 2>&1 | head -n 1))"
    "$lua" docs/argocd/test-health.lua || return 1
    ran=$((ran + 1))
  done
  if ((ran == 0)); then
    echo "no Lua interpreter found: install the Debian package lua5.4"
    return 1
  fi
}

# docs/gitops.md shows the health scripts inside an argocd-cm ConfigMap (indented 4 spaces under
# a block scalar); they must be the tested files, byte for byte.
check_doc_lua() {
  "$venv/bin/python" - docs/gitops.md docs/argocd/loadtest-health.lua \
    docs/argocd/modelendpoint-health.lua <<'PY'
import sys
doc_path, scripts = sys.argv[1], sys.argv[2:]
doc = open(doc_path).read()
ok = True
for path in scripts:
    text = open(path).read()
    embedded = "".join("    " + l if l.strip() else l for l in text.splitlines(keepends=True))
    if embedded in doc:
        print(f"same: {path} in {doc_path}")
    else:
        print(f"differs: the copy of {path} in {doc_path} (argocd-cm example); paste the file again")
        ok = False
sys.exit(0 if ok else 1)
PY
}

app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$chart/Chart.yaml")

run_check "CRD copies: $chart/crds/ == crds/" check_crd_copies
run_check "helm lint --strict (default values)" helm_lint
run_check "helm lint --strict (-f $ci_values)" helm_lint -f "$ci_values"
run_check "helm template (default values)" render "$scratch/default.yaml"
run_check "rendered objects (default values)" check_rendered "$scratch/default.yaml" \
  ClusterRole,ClusterRoleBinding,Deployment,Role,RoleBinding,Service,ServiceAccount "$app_version"
run_check "helm template (-f $ci_values)" render "$scratch/ci.yaml" -f "$ci_values"
run_check "rendered objects (ci values)" check_rendered "$scratch/ci.yaml" \
  ConfigMap,Deployment,NetworkPolicy,NetworkPolicy,NetworkPolicy,PodMonitor,Role,Role,RoleBinding,RoleBinding,Service,ServiceAccount,ServiceMonitor ""
run_check "runner PodMonitor and dashboard ConfigMap (ci values)" check_monitoring "$scratch/ci.yaml" \
  ml-team,ml-staging monitoring 10s
run_check "helm lint --strict (${monitoring_set[*]})" helm_lint "${monitoring_set[@]}"
run_check "helm template (${monitoring_set[*]})" render "$scratch/monitoring.yaml" "${monitoring_set[@]}"
run_check "rendered objects (monitoring on)" check_rendered "$scratch/monitoring.yaml" \
  ClusterRole,ClusterRoleBinding,ConfigMap,Deployment,PodMonitor,Role,RoleBinding,Service,ServiceAccount "$app_version"
run_check "runner PodMonitor and dashboard ConfigMap (monitoring on)" check_monitoring \
  "$scratch/monitoring.yaml" any loadgate 5s
run_check "helm lint --strict (-f $local_values)" helm_lint -f "$local_values"
run_check "helm template (-f $local_values)" render "$scratch/local.yaml" -f "$local_values"
run_check "rendered objects (local images: ghcr.io/loadgate/*:dev)" check_rendered "$scratch/local.yaml" \
  ClusterRole,ClusterRoleBinding,Deployment,Role,RoleBinding,Service,ServiceAccount dev
run_check "kubernetes-validate --strict (rendered, default values)" validate "$scratch/default.yaml"
run_check "kubernetes-validate --strict (rendered, ci values)" validate "$scratch/ci.yaml"
run_check "kubernetes-validate --strict (rendered, local images)" validate "$scratch/local.yaml"
run_check "kubernetes-validate --strict (rendered, monitoring on)" validate "$scratch/monitoring.yaml"
if [[ -d crds ]]; then
  run_check "kubernetes-validate --strict (crds/*.yaml)" validate crds/*.yaml
fi
run_check "Grafana dashboard $dashboard vs $runner_scrape (scripts/check-dashboard.py)" check_dashboard
run_check "Argo CD health checks (docs/argocd/test-health.lua)" lua_tests
run_check "docs/gitops.md embeds the Argo CD health scripts unchanged" check_doc_lua

step "summary (${SECONDS}s)"
printf '%s\n' "${results[@]}"
exit "$failed"
