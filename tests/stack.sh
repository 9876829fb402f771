# The local stack the demo and the end-to-end tests run on: the control plane and the test node
# agent (both from cluster.sh). Source it after lib.sh.
#
# stack_up BIN_DIR   starts them with the node running BIN_DIR's binaries, exports KUBECONFIG and
#                    puts kubectl (built by build.sh) first on PATH.
# stack_down         stops them (the agent stops its pods' processes).

stack_up() {
  RECOMMENDER_BIN_DIR="$1" bash "$REPO_ROOT/tests/cluster/cluster.sh" up
  eval "$(bash "$REPO_ROOT/tests/cluster/cluster.sh" env)"
  export KUBECONFIG PATH="$RECOMMENDER_K8S_BIN:$PATH"
}

stack_down() {
  bash "$REPO_ROOT/tests/cluster/cluster.sh" down || true
}

# Stops the process recorded in a pid file with SIGTERM, then SIGKILL after 10 s.
stop_pidfile() {
  local file="$1" pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}
