# shellcheck shell=bash
# The local stack the demo, the end-to-end tests and the benchmarks run on, brought up and down
# the same way by each of them: the control plane and the real nodes (tests/cluster/cluster.sh)
# with the project's images imported into every node's containerd (tests/cluster/images.sh),
# PostgreSQL with MovieLens (tests/cluster/postgres.sh), and the Prometheus a live alert test
# may have left (tests/cluster/prometheus.sh). Source it after lib.sh.
#
# stack_lock            waits for, then holds until the shell exits, the machine-wide lock of
#                       the real node
# stack_up BIN_DIR [--test-tools]
#                       starts the cluster, imports images built from BIN_DIR's binaries (and the
#                       network tools image the end-to-end tests exec into), exports KUBECONFIG and
#                       the cluster's variables, and puts kubectl and helm (build.sh) first on PATH
# stack_postgres_up     starts PostgreSQL (after stack_up, so that pods reach it) and exports
#                       what `postgres.sh env` prints
# stack_postgres_down   stops the PostgreSQL this shell started, if it did
# stack_s3_up           starts the S3 server (after stack_up, so that pods reach it through the
#                       node address) and exports what `s3.sh env` prints
# stack_s3_down         stops the S3 server this shell started, if it did, and deletes its data
# stack_crd             applies crds/ and waits until the API server serves it
# stack_e2e [ARGS]      the end-to-end suite on the running stack: `cargo nextest run` of the
#                       recommender-e2e crate's tests with tests/nextest.toml and ARGS
# stack_down            stops the Prometheus a test may have left, the PostgreSQL and S3 server
#                       this shell started, and the cluster (and what the node left: bridge, rules, mounts)

export RECOMMENDER_NODE=real

stack_up() {
  bash "$REPO_ROOT/tests/cluster/cluster.sh" up
  eval "$(bash "$REPO_ROOT/tests/cluster/cluster.sh" env)"
  export PATH="$RECOMMENDER_K8S_BIN:$PATH"
  local tools=()
  [ "${2:-}" != --test-tools ] || tools=(--test-tools)
  bash "$REPO_ROOT/tests/cluster/images.sh" "${tools[@]}" "$1" >/dev/null
}

stack_postgres_up() {
  STACK_POSTGRES=1
  bash "$REPO_ROOT/tests/cluster/postgres.sh" up
  eval "$(bash "$REPO_ROOT/tests/cluster/postgres.sh" env)"
}

stack_postgres_down() {
  [ "${STACK_POSTGRES:-0}" = 0 ] || bash "$REPO_ROOT/tests/cluster/postgres.sh" down >/dev/null 2>&1 || true
  STACK_POSTGRES=0
}

stack_s3_up() {
  STACK_S3=1
  bash "$REPO_ROOT/tests/cluster/s3.sh" up
  eval "$(bash "$REPO_ROOT/tests/cluster/s3.sh" env)"
}

stack_s3_down() {
  [ "${STACK_S3:-0}" = 0 ] || bash "$REPO_ROOT/tests/cluster/s3.sh" down >/dev/null 2>&1 || true
  STACK_S3=0
}

stack_crd() {
  kubectl apply --server-side --force-conflicts -f "$REPO_ROOT/crds/recommendermodels.yaml" >/dev/null
  kube_wait 60 --for=condition=Established crd/recommendermodels.recommender.dev >/dev/null
}

stack_e2e() {
  # --workspace with a filter rather than -p: the test binaries are built with the features the
  # whole workspace unifies, as the unit tests' are, so nothing is compiled twice.
  cargo nextest run --workspace --locked --config-file "$REPO_ROOT/tests/nextest.toml" \
    -E 'package(recommender-e2e)' "$@"
}

stack_down() {
  bash "$REPO_ROOT/tests/cluster/prometheus.sh" down >/dev/null 2>&1 || true
  stack_postgres_down
  stack_s3_down
  bash "$REPO_ROOT/tests/cluster/cluster.sh" down || true
}

# A machine runs one real node at a time (two kube-proxies would rewrite each other's rules), so
# concurrent test runs take turns instead of failing.
stack_lock() {
  local lock="${RECOMMENDER_NODE_LOCK:-/tmp/recommender-real-node.lock}"
  exec 9>"$lock"
  if ! flock -n 9; then
    echo "[stack] another real node runs on this machine; waiting for $lock" >&2
    flock 9
  fi
}
