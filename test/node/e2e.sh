#!/usr/bin/env bash
# examples/quickstart.yaml on a real node, installed as a user installs loadgate: the images
# scripts/build-images.sh built, loaded into the node's containerd; the Helm chart with
# charts/loadgate/ci/local-images-values.yaml (what scripts/kind-e2e.sh installs on kind); then
# the ModelEndpoint and LoadTest applied with kubectl. The real kubelet runs the operator's pod
# (in-cluster config through kube-proxy), model-server's readiness probe, the runner Jobs, their
# termination messages and pods/log; CoreDNS resolves minilm.loadgate-e2e.svc for the runners.
#
# Checks: the operator's Deployment is available with its chart's security context; the
# ModelEndpoint turns Ready through the kubelet's probe; the LoadTest completes with a verdict
# (Passed or Failed: on 2 cores the spike may break p95 < 500 ms) and results for every profile,
# each naming pods that ran on the real node; the runner pods ran as 65532 with a read-only root.
# Then a team's own server image through spec.runtime: model-server's image under a second name
# (localhost/loadgate/team-server:e2e, tagged in the node's containerd, so nothing is rebuilt or
# pulled), allowed by the chart's policy.allowedModelServerImages, started only by runtime.args
# (port 9090, served as team-minilm) behind the Service's port 8080 (kube-proxy remaps it):
# the Deployment carries the runtime's image and args, its pod runs that image on the real node
# with a read-only root and its /info names team-minilm, the ModelEndpoint turns Ready with a
# cold start, and a five-second LoadTest through the Service ends with a verdict and answers.
#
# Environment: IMAGE_REGISTRY, IMAGE_TAG (as scripts/build-images.sh; the images must be built),
# NODE_KEEP=1 leaves the node running afterwards, RESULTS_DIR (default target/node-e2e) gets the
# LoadTest, ModelEndpoint, events and logs (also on failure). Needs what test/node/node.sh needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

registry=${IMAGE_REGISTRY:-ghcr.io/loadgate}
tag=${IMAGE_TAG:-dev}
out=${RESULTS_DIR:-target/node-e2e}
ns=loadgate-e2e
node=test/node/node.sh
kubeconfig=${NODE_DIR:-/tmp/loadgate-node}/cluster/admin.kubeconfig
timeout_s=${NODE_E2E_TIMEOUT:-900}
# The team's server (spec.runtime): a repository the chart does not know, allowed below.
team_repo=localhost/loadgate/team-server
team_image=$team_repo:e2e

step() { printf '\n==> node e2e: %s\n' "$*"; }
die() {
  printf 'node e2e: FAIL: %s\n' "$*" >&2
  exit 1
}
k() { "$node" exec kubectl --kubeconfig "$kubeconfig" "$@"; }

mkdir -p "$out"
for archive in loadgate loadrunner model-server; do
  [[ -s target/images/$archive-$tag.tar ]] || die "target/images/$archive-$tag.tar is missing: run scripts/build-images.sh"
done
helm=$(scripts/k8s-tool.sh helm)

collect() {
  mkdir -p "$out"
  k get lt,mep,deploy,rs,svc,jobs,pods -A -o wide >"$out/get.txt" 2>&1 || true
  k get lt -n "$ns" -o yaml >"$out/loadtest.yaml" 2>&1 || true
  k get mep -n "$ns" -o yaml >"$out/modelendpoint.yaml" 2>&1 || true
  k get deploy -n "$ns" -o yaml >"$out/deployments.yaml" 2>&1 || true
  k logs -n "$ns" deploy/team --tail=200 >"$out/team-server.log" 2>&1 || true
  k get events -A --sort-by=.lastTimestamp >"$out/events.txt" 2>&1 || true
  k logs -n loadgate deploy/loadgate --tail=-1 >"$out/operator.log" 2>&1 || true
  cp "${NODE_DIR:-/tmp/loadgate-node}"/*.log "$out/" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT
  collect
  if [[ ${NODE_KEEP:-0} == 1 ]]; then
    printf 'node e2e: NODE_KEEP=1: the node runs on (%s exec kubectl --kubeconfig %s ...; %s stop)\n' "$node" "$kubeconfig" "$node"
  else
    "$node" stop || true
  fi
  printf 'node e2e: diagnostics in %s/\n' "$out"
  exit "$rc"
}

step "starting the node (test/node/node.sh start)"
"$node" stop >/dev/null 2>&1 || true
trap cleanup EXIT
"$node" start
"$node" load "target/images/loadgate-$tag.tar" "target/images/loadrunner-$tag.tar" "target/images/model-server-$tag.tar"
# The team's image for spec.runtime: model-server's, named again inside the node's containerd.
# `ctr images tag` only adds a name to the image just imported (no layer is copied, nothing is
# rebuilt or exported again, no registry is needed), and containerd's CRI plugin sees the new
# name at once, so the kubelet runs it with IfNotPresent like the chart's images.
"$node" exec ctr --address "${NODE_DIR:-/tmp/loadgate-node}/containerd/containerd.sock" --namespace k8s.io \
  images tag "$registry/model-server:$tag" "$team_image" >/dev/null

step "helm install charts/loadgate -f charts/loadgate/ci/local-images-values.yaml"
# The allowlist replaces the chart's default (its model-server repository only), so it names
# that repository and the team's. --set-json: --set would split the value at the comma.
"$node" exec "$helm" upgrade --install loadgate charts/loadgate --kubeconfig "$kubeconfig" \
  --namespace loadgate --create-namespace -f charts/loadgate/ci/local-images-values.yaml \
  --set "image.repository=$registry/loadgate" --set "image.tag=$tag" \
  --set "modelServer.image.repository=$registry/model-server" --set "modelServer.image.tag=$tag" \
  --set "loadrunner.image.repository=$registry/loadrunner" --set "loadrunner.image.tag=$tag" \
  --set-json "policy.allowedModelServerImages=\"$registry/model-server,$team_repo\"" \
  --wait --timeout 3m >/dev/null
k get pods -n loadgate -o wide
read -r operator_user operator_ro < <(k get pods -n loadgate -l app.kubernetes.io/instance=loadgate \
  -o jsonpath='{.items[0].spec.containers[0].securityContext.runAsUser} {.items[0].spec.containers[0].securityContext.readOnlyRootFilesystem}{"\n"}')
echo "operator pod: runAsUser ${operator_user:-the image USER}, readOnlyRootFilesystem $operator_ro"
[[ $operator_ro == true ]] || die "the operator pod's root filesystem is not read-only"

step "kubectl apply examples/quickstart.yaml (namespace $ns)"
k create namespace "$ns" >/dev/null
k apply -n "$ns" -f examples/quickstart.yaml
# The example asks for 2 CPUs: a 2-core node never fits that beside the operator. Lower the
# request as scripts/kind-e2e.sh does on small nodes (the limit stays 2).
k patch mep minilm -n "$ns" --type merge -p '{"spec":{"resources":{"requests":{"cpu":"500m"}}}}' >/dev/null

step "waiting for mep/minilm Ready (the kubelet's readiness probe)"
k wait -n "$ns" --for=condition=Ready mep/minilm --timeout 300s
step "waiting for lt/quickstart Complete (three profiles, about three minutes)"
k wait -n "$ns" --for=condition=Complete lt/quickstart --timeout "${timeout_s}s"
k get lt,mep -n "$ns"

step "checking the verdict, the results and where the runners ran"
k get lt quickstart -n "$ns" -o json >"$out/loadtest.json"
k get pods -n "$ns" -l app.kubernetes.io/name=loadrunner -o json >"$out/runner-pods.json"
k get mep minilm -n "$ns" -o json >"$out/endpoint.json"
python3 - "$out/loadtest.json" "$out/runner-pods.json" "$out/endpoint.json" <<'PY'
import json, sys
lt = json.load(open(sys.argv[1]))
runners = json.load(open(sys.argv[2]))["items"]
endpoint = json.load(open(sys.argv[3]))["status"]
status = lt["status"]
phase = status.get("phase")
assert phase in ("Passed", "Failed"), f"no verdict: phase {phase}"
profiles = status.get("profiles", [])
assert len(profiles) == 3, f"want 3 profiles in status, got {len(profiles)}"
for p in profiles:
    r = p.get("results") or {}
    assert r.get("requests", 0) > 0, f"profile {p.get('name')}: no requests in its results"
    print(f"  {p['name']}: {p.get('phase')}, {r['requests']} requests, p95 {r.get('p95Ms')} ms, "
          f"error rate {r.get('errorRate')}")
assert runners, "no runner pods left to inspect"
for pod in runners:
    spec, st = pod["spec"], pod["status"]
    assert spec.get("nodeName") == "loadgate-node", f"{pod['metadata']['name']} ran on {spec.get('nodeName')}"
    sc = spec["containers"][0].get("securityContext", {})
    assert sc.get("readOnlyRootFilesystem") is True, f"{pod['metadata']['name']}: root filesystem not read-only"
    term = st["containerStatuses"][0]["state"].get("terminated") or {}
    assert term.get("message"), f"{pod['metadata']['name']}: no termination message from the kubelet"
print(f"  phase {phase}; {len(runners)} runner pods ran on loadgate-node, each with a termination message")
# The real kubelet's pod conditions: creation to Ready of the rollout's pod (image start, model
# load, the first passing probe), in the ModelEndpoint's status and carried by the LoadTest.
cold = endpoint.get("coldStartSeconds")
assert cold is not None and 0 < cold < 300, f"ModelEndpoint coldStartSeconds {cold}"
assert status.get("coldStartSeconds") is not None, "the LoadTest does not carry the cold start"
# Efficiency on the endpoint's 2-CPU limit.
assert status.get("targetResources", {}).get("cpuCores") == 2, status.get("targetResources")
for p in profiles:
    e = p.get("efficiency") or {}
    assert e.get("embeddingsPerCoreSecond", 0) > 0, f"profile {p['name']}: no efficiency {e}"
print(f"  cold start {cold} s (pod creation to Ready); {profiles[0]['efficiency']['embeddingsPerSecond']:.1f} embeddings/s in {profiles[0]['name']}")
PY
quickstart_phase=$(k get lt quickstart -n "$ns" -o jsonpath='{.status.phase}')

step "a team's own server image through spec.runtime ($team_image, port 9090)"
runtime_started=$SECONDS
# model-server's own flags in runtime.args, as a team passes its server's: another port and
# served name, the model the image carries at /models, the cache under the /tmp emptyDir the
# runtime's pod gets (its root is read-only). spec.port stays 8080: the Service remaps it to
# runtime.port through kube-proxy. Small requests: the quickstart endpoint still holds 500m.
k apply -n "$ns" -f - <<YAML
apiVersion: loadgate.dev/v1alpha1
kind: ModelEndpoint
metadata: {name: team}
spec:
  model: all-MiniLM-L6-v2
  resources:
    requests: {cpu: 250m, memory: 256Mi}
    limits: {cpu: "1", memory: 1Gi}
  runtime:
    image: $team_image
    args: [--host, 0.0.0.0, --port, "9090", --served-model-name, team-minilm,
           --model, /models/all-MiniLM-L6-v2, --model-cache-dir, /tmp/cache, --log-format, json]
    port: 9090
    readinessPath: /health
YAML
k wait -n "$ns" --for=condition=Ready mep/team --timeout 180s
# The served name its args gave, from the pod itself: the node's namespace has no route to the
# Service range (only pods' traffic, through the bridge, meets kube-proxy's rules); the runners
# below reach the server through the Service's port 8080.
team_ip=$(k get pods -n "$ns" -l app.kubernetes.io/instance=team -o jsonpath='{.items[0].status.podIP}')
served=$("$node" exec curl -fsS --max-time 10 "http://$team_ip:9090/info" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["model_id"])')
[[ $served == team-minilm ]] || die "the team's server does not serve the name its args gave: $served"
echo "team: Ready; http://$team_ip:9090/info serves $served"
k apply -n "$ns" -f - <<'YAML'
apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {name: team-gate}
spec:
  target: {endpointRef: {name: team}}
  profiles: [{name: steady, users: 2, spawnRate: 2, duration: 5s}]
  thresholds: {p95Ms: 60000, maxErrorRate: 0.01}
YAML
k wait -n "$ns" --for=condition=Complete lt/team-gate --timeout 180s
k get lt,mep -n "$ns"
k get deploy team -n "$ns" -o json >"$out/team-deployment.json"
k get pods -n "$ns" -l app.kubernetes.io/instance=team -o json >"$out/team-pods.json"
k get lt team-gate -n "$ns" -o json >"$out/team-loadtest.json"
k get mep team -n "$ns" -o json >"$out/team-endpoint.json"
k get pods -n "$ns" -l loadgate.dev/loadtest=team-gate -o json >"$out/team-runner-pods.json"
python3 - "$out" "$team_image" <<'PY'
import json, sys
out, image = sys.argv[1], sys.argv[2]
load = lambda name: json.load(open(f"{out}/{name}.json"))
args = ["--host", "0.0.0.0", "--port", "9090", "--served-model-name", "team-minilm",
        "--model", "/models/all-MiniLM-L6-v2", "--model-cache-dir", "/tmp/cache", "--log-format", "json"]
c = load("team-deployment")["spec"]["template"]["spec"]["containers"][0]
assert c["image"] == image, f"the Deployment runs {c['image']}, not the runtime's {image}"
assert c.get("args") == args, f"the Deployment's args are not the runtime's: {c.get('args')}"
assert c["ports"][0]["containerPort"] == 9090, c["ports"]
assert c["readinessProbe"]["httpGet"]["path"] == "/health", c["readinessProbe"]
pods = [p for p in load("team-pods")["items"] if p["status"].get("phase") == "Running"]
assert pods, "no running pod of the team's endpoint"
for pod in pods:
    name, spec = pod["metadata"]["name"], pod["spec"]
    assert spec.get("nodeName") == "loadgate-node", f"{name} ran on {spec.get('nodeName')}"
    sc = spec["containers"][0].get("securityContext", {})
    assert sc.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem not read-only"
    # The pod's own image, not containerStatuses[].image: one image under two names, the
    # kubelet reports whichever name containerd lists first (here model-server's).
    assert spec["containers"][0]["image"] == image, f"{name} runs {spec['containers'][0]['image']}"
    assert pod["status"]["containerStatuses"][0].get("ready") is True, f"{name}: container not ready"
lt = load("team-loadtest")["status"]
assert lt.get("phase") in ("Passed", "Failed"), f"team-gate: no verdict: phase {lt.get('phase')}"
requests = (lt.get("summary") or {}).get("requests", 0)
assert requests > 0, "team-gate: no requests in its summary"
assert lt["profiles"][0]["results"]["requests"] > 0, "team-gate: no requests in its profile"
# Answers, not only attempts: the runners reached the server through the Service (8080 -> 9090).
failures = lt["summary"].get("failures", 0)
assert failures < requests, f"team-gate: all {requests} requests failed (the Service's port remap?)"
runners = load("team-runner-pods")["items"]
assert runners and all(p["spec"].get("nodeName") == "loadgate-node" for p in runners), \
    "team-gate's runner pods did not run on loadgate-node"
cold = load("team-endpoint")["status"].get("coldStartSeconds")
assert cold is not None and 0 < cold < 300, f"mep/team coldStartSeconds {cold}"
print(f"  team: {image} with the runtime's args on loadgate-node, read-only root; cold start {cold} s")
print(f"  team-gate: {lt['phase']}, {requests} requests ({failures} failed), p95 {lt['profiles'][0]['results'].get('p95Ms')} ms")
PY
echo "node e2e: spec.runtime part took $((SECONDS - runtime_started)) s"
echo "node e2e: passed (quickstart verdict $quickstart_phase; team-gate $(k get lt team-gate -n "$ns" -o jsonpath='{.status.phase}'))"
