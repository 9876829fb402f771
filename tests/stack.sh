# shellcheck shell=bash
# The local stack the demo and the end-to-end tests run on: the control plane and the real node
# (tests/cluster/cluster.sh) with the project's images imported into the node's containerd
# (tests/cluster/images.sh). Source it after lib.sh.
#
# stack_up BIN_DIR   starts them, imports images built from BIN_DIR's binaries, exports
#                    KUBECONFIG and the cluster's variables, and puts kubectl and helm (built by
#                    build.sh) first on PATH.
# stack_down         stops them and removes what the node left (bridge, rules, mounts).

export RECOMMENDER_NODE=real

stack_up() {
  bash "$REPO_ROOT/tests/cluster/cluster.sh" up
  eval "$(bash "$REPO_ROOT/tests/cluster/cluster.sh" env)"
  export PATH="$RECOMMENDER_K8S_BIN:$PATH"
  bash "$REPO_ROOT/tests/cluster/images.sh" "$1" >/dev/null
}

stack_down() {
  bash "$REPO_ROOT/tests/cluster/cluster.sh" down || true
}

# Waits for, then holds until this shell exits, the machine-wide lock of the real node: a machine
# runs one at a time (two kube-proxies would rewrite each other's rules), so concurrent test runs
# take turns instead of failing.
stack_lock() {
  local lock="${RECOMMENDER_NODE_LOCK:-/tmp/recommender-real-node.lock}"
  exec 9>"$lock"
  if ! flock -n 9; then
    echo "[stack] another real node runs on this machine; waiting for $lock" >&2
    flock 9
  fi
}
