# shellcheck shell=bash
# Shared paths of the project's scripts, and the one way they wait for a Kubernetes object.
# Source it; it starts nothing.
# Where built upstream tools and the Python venvs live: outside the repository, reused across runs.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
export RECOMMENDER_CACHE="${RECOMMENDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/recommender-operator}"
# Runtime state of the local cluster and database: throw-away, outside the repository.
export RECOMMENDER_STATE="${RECOMMENDER_STATE:-/tmp/recommender-operator}"
# MovieLens lives beside the repository and must never be copied into it (licence).
export RECOMMENDER_SHARED="${RECOMMENDER_SHARED:-$(cd "$REPO_ROOT/.." && pwd)/shared}"

# kube_wait SECONDS ARGS...   `kubectl wait ARGS...` until it succeeds or SECONDS have passed.
# kubectl wait gives up at once, instead of waiting, while the object does not exist yet or its
# status has no conditions yet: a CRD just created (".status.conditions accessor error: <nil>"), a
# resource the operator has not written a status for, a selector that matches no pod yet. Those
# answers are retried until the deadline; then the last one is printed and it fails.
kube_wait() {
  local deadline=$((SECONDS + $1)) left out
  shift
  while :; do
    left=$((deadline - SECONDS))
    [ "$left" -ge 1 ] || left=1
    out=$(kubectl wait "$@" --timeout="${left}s" 2>&1) && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf 'kubectl wait %s: %s\n' "$*" "$out" >&2
      return 1
    fi
    sleep 1
  done
}
