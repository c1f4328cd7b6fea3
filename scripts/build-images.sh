#!/usr/bin/env bash
# Builds loadgate's three images from this checkout's release binaries, with no Docker engine
# needed: the operator (loadgate), loadrunner and model-server, from docker/*.Dockerfile, the same
# files a user builds with `docker build`.
#   1. cargo build --release of the three binaries; copies stripped of their line tables go to
#      target/images/context/out/bin/ (BINARIES=prebuilt takes them from there);
#   2. a runtime base like distroless cc-debian12 from this machine's Debian packages
#      (docker/runtime-base.Dockerfile: the libraries `ldd` names, CA certificates, nonroot 65532);
#   3. the images, tagged $REGISTRY/{loadgate,loadrunner,model-server}:$TAG, model-server with
#      all-MiniLM-L6-v2 baked in (MODEL=context, the copy scripts/fetch-model.sh checked) and
#      :$TAG-nomodel without it (MODEL=none);
#   4. each written as an OCI archive target/images/NAME.tar, and a table of sizes.
# The Dockerfiles' other lines (labels, users, folders, environment, entrypoints) are the ones a
# user's build runs: only where the binaries and the base come from differs.
#
# Options:
#   --engine buildah|docker  buildah (Debian's; default when docker has no daemon) or docker
#   --no-cargo               use the release binaries already in target/release
#   -h, --help               this text
# Environment:
#   IMAGE_REGISTRY   name prefix (default: ghcr.io/loadgate, as the chart's values)
#   IMAGE_TAG        tag (default: dev)
# With buildah, images live in target/images/storage (vfs; test/images/engine.sh sets podman
# and buildah up the same way), so test/images/smoke.sh runs them with podman.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
say() { printf 'build-images: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

engine=
cargo_build=1
while (($#)); do
  case $1 in
    --engine)
      engine=${2:?--engine needs buildah or docker}
      shift
      ;;
    --no-cargo) cargo_build=0 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      printf 'build-images: unknown argument %q (see --help)\n' "$1" >&2
      exit 2
      ;;
  esac
  shift
done
if [[ -z $engine ]]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine=docker; else engine=buildah; fi
fi
[[ $engine == buildah || $engine == docker ]] || die "--engine: want buildah or docker, got $engine"

registry=${IMAGE_REGISTRY:-ghcr.io/loadgate}
tag=${IMAGE_TAG:-dev}
images=target/images
context=$images/context
base_image=localhost/loadgate/runtime-base:bookworm
bins=(loadgate loadrunner model-server)

# shellcheck source=test/images/engine.sh
source test/images/engine.sh
command -v "$engine" >/dev/null || die "$engine is not installed (Debian: apt-get install buildah podman runc)"

# --- 1. binaries ------------------------------------------------------------------------------
if ((cargo_build)); then
  say "cargo build --release (${bins[*]})"
  cargo build --release --locked -p loadgate -p loadrunner -p model-server --bins
fi
rm -rf "$context"
mkdir -p "$context/out/bin"
for bin in "${bins[@]}"; do
  [[ -x target/release/$bin ]] || die "target/release/$bin is missing: run without --no-cargo"
  # The same stripping as the Dockerfiles' build stage: symbols stay for backtraces.
  strip --strip-debug -o "$context/out/bin/$bin" "target/release/$bin"
done
mkdir -p "$context/out/cache" "$context/out/models"

# --- 2. runtime base --------------------------------------------------------------------------
base=$context/base
mkdir -p "$base"/{etc/ssl/certs,tmp,home/nonroot,usr/share/doc/loadgate-base}
chmod 1777 "$base/tmp"
chown 65532:65532 "$base/home/nonroot"
libs=$(for bin in "${bins[@]}"; do ldd "target/release/$bin"; done | grep -oE '/[^ ]+' | sort -u)
[[ -n $libs ]] || die "ldd found no libraries: are the binaries dynamically linked glibc ones?"
for lib in $libs; do
  mkdir -p "$base$(dirname "$lib")"
  cp -L "$lib" "$base$lib"
done
# The certificates of Debian's ca-certificates, one bundle as distroless has it.
certs=/etc/ssl/certs/ca-certificates.crt
[[ -s $certs ]] || die "$certs is missing (apt-get install ca-certificates)"
cp -L "$certs" "$base$certs"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$base/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$base/etc/group"
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$base/etc/nsswitch.conf"
# Which Debian packages (and versions) the files came from, for whoever audits the image.
# (update-ca-certificates writes the bundle, so no package owns that file: name it.)
{
  for file in $libs; do
    pkg=$(dpkg -S "$(readlink -f "$file")" 2>/dev/null | head -n 1 | cut -d: -f1) || true
    [[ -n $pkg ]] || pkg=$(dpkg -S "$file" 2>/dev/null | head -n 1 | cut -d: -f1) || true
    echo "${pkg:-unknown($file)}"
  done
  echo ca-certificates
} | sort -u | while read -r pkg; do
  printf '%s %s\n' "$pkg" "$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo '?')"
done >"$base/usr/share/doc/loadgate-base/packages.txt"

# --- 3. the model for MODEL=context -----------------------------------------------------------
scripts/fetch-model.sh >/dev/null
mkdir -p "$context/models"
cp -r models/all-MiniLM-L6-v2 "$context/models/"

# --- 4. images --------------------------------------------------------------------------------
build() {
  local file=$1 image=$2
  shift 2
  say "$engine: $image from $file $*"
  if [[ $engine == buildah ]]; then
    buildah bud --quiet --isolation chroot --layers=false -f "$file" -t "$image" "$@" . >/dev/null
  else
    docker build --quiet -f "$file" -t "$image" "$@" . >/dev/null
  fi
}
build docker/runtime-base.Dockerfile "$base_image"
common=(--build-arg BINARIES=prebuilt --build-arg "BASE=$base_image")
build docker/loadgate.Dockerfile "$registry/loadgate:$tag" "${common[@]}"
build docker/loadrunner.Dockerfile "$registry/loadrunner:$tag" "${common[@]}"
build docker/model-server.Dockerfile "$registry/model-server:$tag" "${common[@]}" --build-arg MODEL=context
build docker/model-server.Dockerfile "$registry/model-server:$tag-nomodel" "${common[@]}" --build-arg MODEL=none

# --- 5. archives and sizes --------------------------------------------------------------------
size_of() {
  if [[ $engine == buildah ]]; then podman image inspect --format '{{.Size}}' "$1"; else docker image inspect --format '{{.Size}}' "$1"; fi
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
printf '\n%-52s %12s %12s\n' image size archive
for ref in "$base_image" "$registry/loadgate:$tag" "$registry/loadrunner:$tag" "$registry/model-server:$tag" "$registry/model-server:$tag-nomodel"; do
  name=${ref##*/}
  name=${name/:/-}
  archive=$images/$name.tar
  rm -f "$archive"
  if [[ $engine == buildah ]]; then
    buildah push --quiet "$ref" "oci-archive:$archive:$ref" >/dev/null
  else
    docker image save -o "$archive" "$ref"
  fi
  printf '%-52s %12s %12s\n' "$ref" "$(mib "$(size_of "$ref")")" "$(mib "$(stat -c %s "$archive")")"
done
printf '\nbinaries as copied (stripped of line tables): '
for bin in "${bins[@]}"; do printf '%s %s  ' "$bin" "$(mib "$(stat -c %s "$context/out/bin/$bin")")"; done
printf '\nbase packages: %s\n' "$(tr '\n' ' ' <"$base/usr/share/doc/loadgate-base/packages.txt")"
