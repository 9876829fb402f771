#!/usr/bin/env bash
# The end-to-end suite alone, on a cluster of its own: builds the binaries, brings up the local
# stack (cluster with real nodes, RECOMMENDER_NODES of them, 3 by default, and the project's
# images; PostgreSQL; the S3 server of tests/cluster/s3.sh), runs the suite (or the tests the arguments select) and stops everything.
# Holds a machine-wide lock while the nodes are up: a machine runs one real cluster at a time, so
# concurrent runs wait their turn.
#
#   bash tests/e2e.sh                     every end-to-end test: concurrently, then those that
#                                         touch the whole cluster one at a time (tests/nextest.toml)
#   bash tests/e2e.sh --test failures     one file; any `cargo nextest run` arguments, e.g. a
#                                         filter: bash tests/e2e.sh -E 'test(/stale/)'
#   RECOMMENDER_E2E_KEEP=1 bash tests/e2e.sh ...   leave the stack up afterwards (and the lock
#                                         released): export what `tests/cluster/cluster.sh env`
#                                         `tests/cluster/postgres.sh env` and
#                                         `tests/cluster/s3.sh env` print
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
source tests/stack.sh

stack_lock
bash tests/install-prereqs.sh
BIN_DIR=$(bash tests/cluster/build.sh)
export PATH="$BIN_DIR:$PATH"
bash tests/cluster/s3.sh build >/dev/null
cargo build --locked --bins
cleanup() {
  local rc=$?
  [ "${RECOMMENDER_E2E_KEEP:-0}" = 1 ] || stack_down >/dev/null 2>&1
  exit "$rc"
}
trap cleanup EXIT
stack_up "$PWD/target/debug" --test-tools
stack_postgres_up
stack_s3_up
stack_e2e "$@"
