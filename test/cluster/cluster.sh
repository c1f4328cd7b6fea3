#!/usr/bin/env bash
# A single-machine Kubernetes control plane for loadgate's integration tests, on loopback only:
# embedded etcd, the real kube-apiserver (RBAC on) and kube-controller-manager, all from the one
# `kcp` binary built from k8s.io/kubernetes (the release pinned in test/cluster/go.mod).
#
#   test/cluster/cluster.sh build   build kcp once per go.mod/go.sum/main.go and Go version
#                                   (cached under $LOADGATE_CACHE, default ~/.cache/loadgate)
#   test/cluster/cluster.sh start   build if needed, start etcd + apiserver + controller-manager,
#                                   write $DIR/admin.kubeconfig and wait until /readyz answers
#   test/cluster/cluster.sh stop    stop everything start started, and remove $DIR
#
# DIR is $LOADGATE_CLUSTER_DIR (default /tmp/loadgate-cluster). Ports are $ETCD_PORT (23790,
# peer +10) and $APISERVER_PORT (26443), all on 127.0.0.1. There is no scheduler and no kubelet:
# test/kubelet (process-kubelet) binds pods and runs them as local processes, and serves their
# logs on 127.0.0.1:10250 with $DIR/pki/kubelet.{crt,key} (clients: certificates of $DIR/pki/ca.crt).
# Needs: go (1.25+), openssl, kubectl, curl.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${LOADGATE_CLUSTER_DIR:-/tmp/loadgate-cluster}
cache=${LOADGATE_CACHE:-$HOME/.cache/loadgate}
etcd_port=${ETCD_PORT:-23790}
# Set by test/node: the node's address on its pod bridge. The apiserver then listens on every
# address of its network namespace (test/node runs everything in one of its own), advertises this
# one as the `kubernetes` Service's endpoint, and every controller runs, endpoints included: the
# real kubelet's pods have addresses of their own.
node_ip=${CLUSTER_NODE_IP:-}
apiserver_port=${APISERVER_PORT:-26443}

say() { printf 'cluster: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

# shellcheck source=test/cluster/lib.sh
source "$here/lib.sh"

build() { k8s_go_build kcp "$here"; }

certs() {
  local pki=$dir/pki
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=loadgate-test-ca \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc%s\n' \
    "${node_ip:+,IP:$node_ip,IP:10.96.0.1,DNS:kubernetes.default.svc.cluster.local}" >"$pki/san.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 2 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
  # The process kubelet's log endpoint (its serving certificate) and the apiserver's client
  # certificate for it: pods/log is proxied over HTTPS, verified both ways as on a real node.
  openssl req -newkey rsa:2048 -nodes -subj /CN=process-kubelet \
    -keyout "$pki/kubelet.key" -out "$pki/kubelet.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:process-kubelet\n' >"$pki/kubelet.ext"
  openssl x509 -req -in "$pki/kubelet.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 2 -extfile "$pki/kubelet.ext" -out "$pki/kubelet.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -keyout "$pki/apiserver-kubelet-client.key" -out "$pki/apiserver-kubelet-client.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$pki/client.ext"
  openssl x509 -req -in "$pki/apiserver-kubelet-client.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 2 -extfile "$pki/client.ext" -out "$pki/apiserver-kubelet-client.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  # token,user,uid,"groups": the harness' cluster-admin.
  admin_token=$(openssl rand -hex 16)
  printf '%s,loadgate-admin,loadgate-admin,"system:masters"\n' "$admin_token" >"$pki/tokens.csv"
}

kubeconfig() { # FILE TOKEN
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: loadgate-test
    cluster:
      server: https://127.0.0.1:$apiserver_port
      certificate-authority: $dir/pki/ca.crt
users:
  - name: user
    user:
      token: $2
contexts:
  - name: loadgate-test
    context: {cluster: loadgate-test, user: user, namespace: default}
current-context: loadgate-test
EOF
}

start_bg() { # NAME COMMAND...
  local name=$1
  shift
  "$@" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

start() {
  command -v openssl >/dev/null || die "openssl is required"
  command -v kubectl >/dev/null || die "kubectl is required"
  local kcp
  kcp=$(build)
  if [[ -e $dir/apiserver.pid ]] && kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null; then
    die "a cluster already runs from $dir (stop it first: $0 stop)"
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  local start=$SECONDS
  certs
  kubeconfig "$dir/admin.kubeconfig" "$admin_token"

  start_bg etcd "$kcp" etcd --data-dir "$dir/etcd" \
    --listen-client "127.0.0.1:$etcd_port" --listen-peer "127.0.0.1:$((etcd_port + 10))"
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$etcd_port/health"

  local bind=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
  local controllers='*,-nodelifecycle,-nodeipam,-endpoint,-endpointslice,-endpointslicemirroring'
  if [[ -n $node_ip ]]; then
    bind=(--bind-address 0.0.0.0 --advertise-address "$node_ip")
    controllers='*,-nodeipam'
  fi
  start_bg apiserver "$kcp" kube-apiserver \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    "${bind[@]}" --secure-port "$apiserver_port" \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" --token-auth-file "$dir/pki/tokens.csv" \
    --authorization-mode Node,RBAC \
    --service-account-key-file "$dir/pki/sa.pub" \
    --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 \
    --kubelet-preferred-address-types InternalIP \
    --kubelet-certificate-authority "$dir/pki/ca.crt" \
    --kubelet-client-certificate "$dir/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$dir/pki/apiserver-kubelet-client.key" \
    --enable-priority-and-fairness=false --profiling=false \
    --cert-dir "$dir/pki/generated"
  wait_for kube-apiserver 120 kubectl --kubeconfig "$dir/admin.kubeconfig" get --raw /readyz

  # For the process kubelet: no node lifecycle (it sends no leases), no node IPAM, and no
  # endpoint controllers: Endpoints and EndpointSlices may not hold the pods' loopback addresses,
  # so the process kubelet resolves Services itself. With test/node's real kubelet, all of them.
  start_bg controller-manager "$kcp" kube-controller-manager \
    --kubeconfig "$dir/admin.kubeconfig" \
    --authentication-kubeconfig "$dir/admin.kubeconfig" \
    --authorization-kubeconfig "$dir/admin.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 \
    --leader-elect=false \
    --controllers "$controllers" \
    --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
    --concurrent-gc-syncs 5
  # The controller-manager is up once the service-account controller made the default account.
  wait_for kube-controller-manager 120 \
    kubectl --kubeconfig "$dir/admin.kubeconfig" get serviceaccount default -n default
  say "ready in $((SECONDS - start)) s: export KUBECONFIG=$dir/admin.kubeconfig"
}

stop() {
  local name pid
  for name in controller-manager apiserver etcd; do
    [[ -e $dir/$name.pid ]] || continue
    pid=$(cat "$dir/$name.pid")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}

case ${1:-} in
build) build >/dev/null ;;
start) start ;;
stop) stop ;;
*) die "usage: $0 build|start|stop" ;;
esac
