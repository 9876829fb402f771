#!/usr/bin/env bash
# Runs every test of the project, from a fresh machine: installs what is missing, then formatting,
# clippy, unit tests (with a real PostgreSQL), CRD freshness, the chart and alert tests, and the
# end-to-end suite on a local control plane. Exits non-zero on the first failure.
#
# Usage: bash tests/all.sh            (what .ci/run calls; no terminal or stdin needed)
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
source tests/stack.sh

started=$(date +%s)
stage() { printf '\n==> [%4ss] %s\n' "$(($(date +%s) - started))" "$*"; }

cleanup() {
  local rc=$?
  stage "cleanup"
  stack_down >/dev/null 2>&1 || true
  bash tests/cluster/postgres.sh down >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT

stage "prerequisites"
bash tests/install-prereqs.sh

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "build upstream control plane (cached by version)"
BIN_DIR=$(bash tests/cluster/build.sh)
export PATH="$BIN_DIR:$PATH"

stage "PostgreSQL with MovieLens 100k"
bash tests/cluster/postgres.sh up
eval "$(bash tests/cluster/postgres.sh env)"
export RECOMMENDER_TEST_PG_URL

stage "unit and integration tests (includes CRD freshness)"
cargo test --workspace --locked --exclude recommender-e2e

stage "binaries the cluster runs (the dev profile is optimised; see Cargo.toml)"
cargo build --locked --bins
export RECOMMENDER_BIN_DIR="$PWD/target/debug"

stage "node agent smoke test (its own control plane, stopped afterwards)"
RECOMMENDER_NODE_AGENT="$RECOMMENDER_BIN_DIR/node-agent" bash tests/cluster/smoke.sh

stage "local control plane and node agent"
stack_up "$RECOMMENDER_BIN_DIR"

stage "chart, RBAC and alert rules (with a server-side dry run on the local cluster)"
bash charts/tests/run.sh

stage "end-to-end tests"
cargo test -p recommender-e2e --locked -- --test-threads=1

stage "all tests passed in $(($(date +%s) - started))s"
