# Shared paths for the project's scripts. Source it; it defines no behaviour of its own.
# Where built upstream tools and the Python venvs live: outside the repository, reused across runs.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
export RECOMMENDER_CACHE="${RECOMMENDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/recommender-operator}"
# Runtime state of the local cluster and database: throw-away, outside the repository.
export RECOMMENDER_STATE="${RECOMMENDER_STATE:-/tmp/recommender-operator}"
# MovieLens lives beside the repository and must never be copied into it (licence).
export RECOMMENDER_SHARED="${RECOMMENDER_SHARED:-$(cd "$REPO_ROOT/.." && pwd)/shared}"
