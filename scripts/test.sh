#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: fetch the model weights the golden tests need,
# check formatting and lints, then run every test of the workspace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "model weights"
scripts/fetch-model.sh

step "shell scripts: bash -n, shellcheck"
for script in scripts/*.sh .ci/run; do bash -n "$script"; done
shellcheck scripts/*.sh .ci/run

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "Helm chart, CRD copies, Argo CD health checks"
scripts/lint-chart.sh
