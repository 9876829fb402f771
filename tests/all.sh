#!/usr/bin/env bash
# Runs every test of the project, from a fresh machine: installs what is missing, then formatting,
# clippy, cargo deny, the fuzz targets' short run, the README's first command (tests/demo.sh,
# which brings up the local cluster with a real node the rest runs on), unit tests (with a real
# PostgreSQL), CRD freshness, the chart and alert tests, the end-to-end suite, and last that the
# cluster goes down leaving nothing behind.
# Exits non-zero on the first failure; prints how long each stage took, also then.
#
# Usage: bash tests/all.sh            (what .ci/run calls; no terminal or stdin needed; root)
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
source tests/stack.sh

started=$(date +%s)
stage_names=()
stage_seconds=()
current=""
current_started=0

# Closes the stage under way, if any, recording its duration.
stage_done() {
  [ -n "$current" ] || return 0
  stage_names+=("$current")
  stage_seconds+=($(($(date +%s) - current_started)))
  current=""
}

stage() {
  stage_done
  current=$*
  current_started=$(date +%s)
  printf '\n==> [%4ss] %s\n' "$((current_started - started))" "$current"
}

failed_stage=-1

# One line per stage, the failed one marked, and the total.
summary() { # exit-code
  local i mark
  printf '\n==> stage times\n'
  for i in "${!stage_names[@]}"; do
    mark=ok
    [ "$i" != "$failed_stage" ] || mark=FAILED
    printf '%6ss  %-6s  %s\n' "${stage_seconds[$i]}" "$mark" "${stage_names[$i]}"
  done
  mark=ok
  [ "$1" = 0 ] || mark=FAILED
  printf '%6ss  %-6s  %s\n' "$(($(date +%s) - started))" "$mark" total
}

cleanup() {
  local rc=$?
  stage_done
  [ "$rc" = 0 ] || failed_stage=$((${#stage_names[@]} - 1))
  stage "stop what still runs (PostgreSQL, the S3 server; after a failure, the cluster too)"
  stack_down >/dev/null 2>&1 || true
  stage_done
  summary "$rc"
  exit "$rc"
}
trap cleanup EXIT

stage "prerequisites"
bash tests/install-prereqs.sh

stage "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

stage "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets --locked -- -D warnings

stage "cargo deny: licences, bans and sources (offline; tests/deny/run.sh)"
bash tests/deny/run.sh

stage "fuzz targets over their corpora and findings, then a fixed number of runs (fuzz/run.sh ci; docs/fuzzing.md)"
bash fuzz/run.sh ci

stage "build upstream control plane, node and S3 server (cached by version)"
BIN_DIR=$(bash tests/cluster/build.sh)
export PATH="$BIN_DIR:$PATH"
bash tests/cluster/s3.sh build >/dev/null

stage "binaries the images carry (the dev profile is optimised; see Cargo.toml)"
cargo build --locked --bins
export RECOMMENDER_BIN_DIR="$PWD/target/debug"

stage "the README's first command, bash tests/demo.sh: a fresh cluster, the operator, a model served"
stack_lock
bash tests/demo.sh

stage "the network tools image, PostgreSQL with MovieLens 100k and the S3 server, on the demo's cluster"
stack_up "$RECOMMENDER_BIN_DIR" --test-tools
stack_postgres_up
stack_s3_up

stage "unit and integration tests (includes CRD freshness)"
cargo test --workspace --locked --exclude recommender-e2e

stage "chart, RBAC and alert rules (with a server-side dry run on the local cluster)"
bash charts/tests/run.sh

stage "end-to-end tests (concurrently, then those touching the whole cluster one at a time)"
stack_e2e

stage "down leaves nothing of the cluster behind, and up works again (tests/cluster/smoke.sh)"
bash tests/cluster/smoke.sh

stage_done
printf '\n==> all tests passed\n'
