# shellcheck shell=bash
# shellcheck disable=SC2154 # $cache and $dir are the sourcing script's
# Sourced by test/cluster/cluster.sh and test/node/node.sh: what both do the same way
# (test/e2e/run.sh sources it for wait_for).
#   k8s_go_build NAME DIR   build DIR's Go main package (a module pinning k8s.io/kubernetes) once
#                           per go.mod, go.sum, main.go, Go version and link flags, stamped with
#                           that release, cached as $cache/NAME-<hash>/NAME; prints its path
#   wait_for WHAT SECONDS CMD...  retry CMD every 0.5 s; on time-out print $dir/*.log's tails
# The caller sets $cache and $dir and defines say and die.

k8s_go_build() {
  local name=$1 src=$2 version ldflags key bin
  command -v go >/dev/null || die "go is required (Go 1.25 or newer)"
  # The Kubernetes release pinned in go.mod, stamped into the binary (kubectl version, /version,
  # the Node's kubeletVersion).
  version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$src/go.mod")
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version \
-X k8s.io/component-base/version.gitMajor=$(cut -d. -f1 <<<"${version#v}") \
-X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$version") \
-X k8s.io/component-base/version.gitTreeState=clean"
  key=$( (cat "$src/go.mod" "$src/go.sum" "$src/main.go"; go version; echo "$ldflags") | sha256sum | cut -c1-16)
  bin=$cache/$name-$key/$name
  if [[ -x $bin ]]; then
    say "$name cached: $bin"
  else
    say "building $name from k8s.io/kubernetes $version (cold on 2 cores: kcp ~9 min, then knode ~3 min)"
    local start=$SECONDS
    mkdir -p "$(dirname "$bin")"
    (cd "$src" && go build -trimpath -ldflags="$ldflags" -o "$bin.part" .)
    mv "$bin.part" "$bin"
    say "built in $((SECONDS - start)) s: $bin"
  fi
  echo "$bin"
}

wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      say "$what not ready after ${seconds}s; last log lines:"
      tail -n 30 "$dir"/*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
}
