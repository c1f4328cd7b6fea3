#!/usr/bin/env bash
# A real Kubernetes node for the end-to-end tests, on this machine, with no Docker engine: the
# real kubelet, kube-proxy, kube-scheduler and CoreDNS (knode, built from the k8s.io/kubernetes
# release test/cluster pins) on Debian's containerd and runc, with Debian's CNI plugins, beside
# test/cluster's control plane. Everything runs inside a network namespace of its own
# ($NODE_NETNS): the pods' bridge (10.88.0.0/24, the node at 10.88.0.1), the Service addresses
# (10.96.0.0/16) and kube-proxy's iptables rules exist only there, so no packet of the test
# leaves it and the host's own network is never touched.
#
#   test/node/node.sh build          build knode once per go.mod/go.sum/main.go and Go version
#                                    (cached under $LOADGATE_CACHE, default ~/.cache/loadgate)
#   test/node/node.sh start          the namespace, the control plane, containerd, the node's
#                                    daemons; waits until the Node is Ready and DNS answers
#   test/node/node.sh load ARCHIVE.. import OCI archives into the node's containerd
#   test/node/node.sh exec CMD...    run a command inside the namespace (kubectl, helm, curl)
#   test/node/node.sh stop           stop everything, remove the namespace and $NODE_DIR
#
# Environment: NODE_DIR (default /tmp/loadgate-node), NODE_NETNS (default loadgate-node). The
# control plane's own variables (test/cluster/cluster.sh) apply; KUBECONFIG for the tests is
# $NODE_DIR/cluster/admin.kubeconfig, used inside the namespace (`node.sh exec kubectl ...`).
# Needs: root, ip (iproute2), iptables, containerd, runc, containernetworking-plugins, gcc
# (for the pause image), buildah (test/images/engine.sh), go, openssl, kubectl, curl.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${NODE_DIR:-/tmp/loadgate-node}
netns=${NODE_NETNS:-loadgate-node}
cache=${LOADGATE_CACHE:-$HOME/.cache/loadgate}
node_name=loadgate-node
node_ip=10.88.0.1
pod_cidr=10.88.0.0/24
bridge=lgnode0
pause_image=localhost/loadgate/pause:3.10

say() { printf 'node: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}
# nsenter, not `ip netns exec`: that one also mounts a fresh /sys, which hides the cgroup
# hierarchies the kubelet and runc need.
in_ns() { nsenter --net="/var/run/netns/$netns" "$@"; }

# shellcheck source=test/cluster/lib.sh
source "$repo/test/cluster/lib.sh"

build() { k8s_go_build knode "$here"; }

# The sandbox ("pause") image every pod starts with: Kubernetes' own pause.c from the pinned
# k8s.io/kubernetes module, linked statically, in an image FROM scratch (none can be pulled).
pause_archive() {
  local src out=$dir/pause
  src=$(cd "$repo/test/cluster" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  [[ -f $src ]] || die "no pause.c in the k8s.io/kubernetes module ($src)"
  mkdir -p "$out"
  gcc -Os -static -Wall -Werror -DVERSION=v3.10-loadgate -o "$out/pause" "$src"
  strip "$out/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$out/Dockerfile"
  (
    # shellcheck disable=SC1091 # shellcheck runs from the repository root in scripts/test.sh
    source "$repo/test/images/engine.sh"
    buildah bud --quiet --isolation chroot --layers=false -t "$pause_image" "$out" >/dev/null
    rm -f "$out/pause.tar"
    buildah push --quiet "$pause_image" "oci-archive:$out/pause.tar:$pause_image" >/dev/null
  )
  echo "$out/pause.tar"
}

start_bg() { # NAME COMMAND...: inside the namespace, logs in $dir/NAME.log
  local name=$1
  shift
  in_ns "$@" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

certs() { # the kubelet's client certificate (Node authorizer) and serving certificate
  local pki=$dir/pki ca=$dir/cluster/pki
  mkdir -p "$pki"
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:nodes/CN=system:node:$node_name" \
    -keyout "$pki/kubelet-client.key" -out "$pki/kubelet-client.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$pki/client.ext"
  openssl x509 -req -in "$pki/kubelet-client.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" \
    -CAcreateserial -days 2 -extfile "$pki/client.ext" -out "$pki/kubelet-client.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$node_name" \
    -keyout "$pki/kubelet.key" -out "$pki/kubelet.csr" 2>/dev/null
  printf 'subjectAltName=IP:%s,DNS:%s\n' "$node_ip" "$node_name" >"$pki/serving.ext"
  openssl x509 -req -in "$pki/kubelet.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" \
    -CAcreateserial -days 2 -extfile "$pki/serving.ext" -out "$pki/kubelet.crt" 2>/dev/null
  local port=${APISERVER_PORT:-26443}
  cat >"$dir/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: loadgate-test
    cluster: {server: "https://127.0.0.1:$port", certificate-authority: $ca/ca.crt}
users:
  - name: node
    user: {client-certificate: $pki/kubelet-client.crt, client-key: $pki/kubelet-client.key}
contexts:
  - name: node
    context: {cluster: loadgate-test, user: node}
current-context: node
EOF
}

configs() {
  mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/cni/ipam" "$dir/kubelet"
  # containerd: its own root, state and socket; the pause image above; Debian's CNI plugins.
  # restrict_oom_score_adj: the sandbox may not lower a process' OOM score (no CAP_SYS_RESOURCE).
  cat >"$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  restrict_oom_score_adj = true
  # Pods' network namespaces under the state folder, not /var/run/netns: stop unmounts them.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
EOF
  cat >"$dir/cni/net.d/10-loadgate.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "loadgate", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$dir/cni/ipam",
            "ranges": [[{"subnet": "$pod_cidr", "gateway": "$node_ip", "rangeStart": "10.88.0.10"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
  # The pods' upstream resolver: none (the tests resolve only cluster names).
  printf 'nameserver %s\n' "$node_ip" >"$dir/resolv.conf"
  cat >"$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/cluster/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $dir/pki/kubelet.crt
tlsPrivateKeyFile: $dir/pki/kubelet.key
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
cgroupDriver: cgroupfs
# These machines have cgroup v1 only; Kubernetes 1.35's kubelet refuses it unless told.
failCgroupV1: false
failSwapOn: false
clusterDNS: [$node_ip]
clusterDomain: cluster.local
resolvConf: $dir/resolv.conf
podCIDR: $pod_cidr
maxPods: 60
# The machine's disk is shared with the build: evict nothing for disk, keep the loaded images.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/cluster/admin.kubeconfig}
hostnameOverride: $node_name
mode: iptables
clusterCIDR: $pod_cidr
# Pod to Service to a pod on the same bridge: the reply must come back through the node for the
# DNAT to be undone (br_netfilter cannot be loaded here), so masquerade everything.
iptables: {masqueradeAll: true}
nodePortAddresses: [primary]
# Leave the host's conntrack sysctls alone (the sandbox may not write them).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  cat >"$dir/Corefile" <<EOF
.:53 {
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $dir/cluster/admin.kubeconfig
        pods insecure
    }
}
EOF
}

start() {
  [[ $(id -u) == 0 ]] || die "needs root (network namespace, containerd)"
  local cmd
  for cmd in ip iptables containerd runc gcc buildah openssl kubectl curl; do
    command -v "$cmd" >/dev/null || die "$cmd is required"
  done
  [[ -x /usr/lib/cni/bridge ]] || die "Debian's CNI plugins are required (apt-get install containernetworking-plugins)"
  ip netns list | grep -qw "$netns" && die "namespace $netns exists: $0 stop first"
  local knode start=$SECONDS
  knode=$(build)
  rm -rf "$dir"
  mkdir -p "$dir"

  ip netns add "$netns"
  in_ns ip link set lo up
  # The bridge exists before the apiserver advertises its address; CNI's bridge plugin adopts it.
  in_ns ip link add "$bridge" type bridge
  in_ns ip addr add "$node_ip/24" dev "$bridge"
  in_ns ip link set "$bridge" up
  in_ns sysctl -qw net.ipv4.ip_forward=1

  in_ns env CLUSTER_NODE_IP="$node_ip" LOADGATE_CLUSTER_DIR="$dir/cluster" "$repo/test/cluster/cluster.sh" start
  certs
  configs

  start_bg containerd containerd --config "$dir/containerd/config.toml"
  wait_for containerd 30 test -S "$dir/containerd/containerd.sock"
  load "$(pause_archive)"

  start_bg kubelet "$knode" kubelet --config "$dir/kubelet/config.yaml" \
    --kubeconfig "$dir/kubelet.kubeconfig" --root-dir "$dir/kubelet" \
    --hostname-override "$node_name" --node-ip "$node_ip" --v 1
  start_bg kube-proxy "$knode" kube-proxy --config "$dir/kube-proxy.yaml" --v 1
  start_bg kube-scheduler "$knode" kube-scheduler --kubeconfig "$dir/cluster/admin.kubeconfig" \
    --authentication-kubeconfig "$dir/cluster/admin.kubeconfig" \
    --authorization-kubeconfig "$dir/cluster/admin.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0
  start_bg coredns "$knode" coredns -conf "$dir/Corefile"

  local kc=(kubectl --kubeconfig "$dir/cluster/admin.kubeconfig")
  wait_for "Node $node_name" 120 in_ns "${kc[@]}" wait --for=condition=Ready "node/$node_name" --timeout 1s
  say "ready in $((SECONDS - start)) s: $0 exec kubectl --kubeconfig $dir/cluster/admin.kubeconfig ..."
}

load() {
  local archive
  for archive in "$@"; do
    in_ns ctr --address "$dir/containerd/containerd.sock" --namespace k8s.io images import "$archive" >/dev/null
    say "loaded $(basename "$archive")"
  done
}

stop() {
  local name pid
  for name in coredns kube-scheduler kube-proxy kubelet; do
    [[ -e $dir/$name.pid ]] || continue
    pkill -TERM -P "$(cat "$dir/$name.pid")" 2>/dev/null || true
    kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
  done
  if [[ -S $dir/containerd/containerd.sock ]]; then
    # Every pod's containers and sandbox, then containerd itself (its shims outlive it otherwise).
    local ctr=(ctr --address "$dir/containerd/containerd.sock" --namespace k8s.io)
    for task in $(in_ns "${ctr[@]}" tasks ls -q 2>/dev/null); do
      in_ns "${ctr[@]}" tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
    done
  fi
  if [[ -e $dir/containerd.pid ]]; then
    pid=$(cat "$dir/containerd.pid")
    kill "$pid" 2>/dev/null || true
  fi
  pkill -f "containerd-shim-runc-v2 -namespace k8s.io -address $dir/containerd/containerd.sock" 2>/dev/null || true
  if [[ -d $dir/cluster ]]; then
    in_ns env LOADGATE_CLUSTER_DIR="$dir/cluster" "$repo/test/cluster/cluster.sh" stop || true
  fi
  # Whatever still runs in the node's namespace, the namespace itself, then what containerd
  # mounted under $dir (the pods' network namespaces and root filesystems).
  if ip netns list | grep -qw "$netns"; then
    ip netns pids "$netns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns delete "$netns"
  fi
  grep -o "$dir/[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$dir"
}

case ${1:-} in
build) build >/dev/null ;;
start) start ;;
load)
  shift
  load "$@"
  ;;
exec)
  shift
  in_ns "$@"
  ;;
stop) stop ;;
*) die "usage: $0 build|start|load ARCHIVE...|exec CMD...|stop" ;;
esac
