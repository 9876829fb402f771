#!/usr/bin/env bash
# The end-to-end suite alone, on a cluster of its own: builds the binaries, brings up the local
# cluster with a real node and the project's images, PostgreSQL, runs the suite (or the tests
# matching FILTER), and stops everything. Holds a machine-wide lock while the node is up: a
# machine runs one real node at a time, so concurrent runs wait their turn.
#
#   bash tests/e2e.sh                   every end-to-end test
#   bash tests/e2e.sh --test failures   one file; any `cargo test` arguments (filters after --)
#   RECOMMENDER_E2E_KEEP=1 bash tests/e2e.sh ...   leave the cluster up afterwards (and the lock
#                                       released): export what `tests/cluster/cluster.sh env` prints
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
source tests/stack.sh

stack_lock

bash tests/install-prereqs.sh
BIN_DIR=$(bash tests/cluster/build.sh)
export PATH="$BIN_DIR:$PATH"
cargo build --locked --bins
cleanup() {
  local rc=$?
  if [ "${RECOMMENDER_E2E_KEEP:-0}" != 1 ]; then
    bash tests/cluster/prometheus.sh down >/dev/null 2>&1 || true
    bash tests/cluster/postgres.sh down >/dev/null 2>&1 || true
    stack_down >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
stack_up "$PWD/target/debug"
bash tests/cluster/postgres.sh up
eval "$(bash tests/cluster/postgres.sh env)"
export RECOMMENDER_TEST_PG_URL RECOMMENDER_PG_POD_HOST RECOMMENDER_PG_POD_PORT
RUST_TEST_THREADS=1 cargo test -p recommender-e2e --locked --no-fail-fast "$@"
