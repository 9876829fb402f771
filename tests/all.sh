#!/usr/bin/env bash
# Runs every test of the project, from a fresh machine: installs what is missing, then formatting,
# clippy, unit tests (with a real PostgreSQL), CRD freshness, the chart and alert tests, the real
# node's smoke test, and the end-to-end suite on a local cluster with a real node. Exits non-zero
# on the first failure.
#
# Usage: bash tests/all.sh            (what .ci/run calls; no terminal or stdin needed; root)
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
source tests/stack.sh

started=$(date +%s)
stage() { printf '\n==> [%4ss] %s\n' "$(($(date +%s) - started))" "$*"; }

cleanup() {
  local rc=$?
  stage "cleanup"
  bash tests/cluster/prometheus.sh down >/dev/null 2>&1 || true
  bash tests/cluster/postgres.sh down >/dev/null 2>&1 || true
  stack_down >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT

stage "prerequisites"
bash tests/install-prereqs.sh

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "cargo deny: licences, bans and sources (offline; tests/deny/run.sh)"
bash tests/deny/run.sh

stage "build upstream control plane and node (cached by version)"
BIN_DIR=$(bash tests/cluster/build.sh)
export PATH="$BIN_DIR:$PATH"

stage "binaries the images carry (the dev profile is optimised; see Cargo.toml)"
cargo build --locked --bins
export RECOMMENDER_BIN_DIR="$PWD/target/debug"

stage "real node smoke test (its own cluster and database, stopped afterwards)"
stack_lock
bash tests/cluster/smoke.sh

stage "local cluster with a real node, and the project's images"
stack_up "$RECOMMENDER_BIN_DIR"

stage "PostgreSQL with MovieLens 100k (reachable from pods)"
bash tests/cluster/postgres.sh up
eval "$(bash tests/cluster/postgres.sh env)"
export RECOMMENDER_TEST_PG_URL RECOMMENDER_PG_POD_HOST RECOMMENDER_PG_POD_PORT

stage "unit and integration tests (includes CRD freshness)"
cargo test --workspace --locked --exclude recommender-e2e

stage "chart, RBAC and alert rules (with a server-side dry run on the local cluster)"
bash charts/tests/run.sh

stage "end-to-end tests"
cargo test -p recommender-e2e --locked --no-fail-fast -- --test-threads=1

stage "all tests passed in $(($(date +%s) - started))s"
