# shellcheck shell=bash
# Shared by the predictor benchmarks (run.sh, rollout.sh, soak.sh, slow_clients.sh): where things
# live, the load generator, release binaries, the ml-100k model and free loopback ports. Source it.
# Tools and data live under ~/.cache/recommender-operator, never in the repository.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/recommender-operator
WORK=$CACHE/predictor-bench
DATA=${ML100K:-$ROOT/../shared/datasets/ml-100k/u.data}
BIN=$ROOT/target/release
mkdir -p "$WORK"
log() { echo "[bench] $*" >&2; }

ensure_wrk() {
  command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
}

# Release builds of the predictor and the trainer.
build_release() {
  log "building release binaries"
  (cd "$ROOT" && cargo build --release -q -p recommender-predictor -p recommender-trainer)
}

# SVD trained by our trainer on ml-100k (Surprise's defaults), plus the known user and item ids.
ensure_model() {
  [[ -f $DATA ]] || { log "ml-100k u.data not found at $DATA (set ML100K)"; exit 1; }
  if [[ ! -f $WORK/ml-100k.model ]]; then
    log "training our SVD on ml-100k"
    "$BIN/recommender-trainer" train --source "$DATA" --format ml-100k --out "$WORK/ml-100k.model" \
      --version ml100k-bench --folds 2 --report "$WORK/train-report.json" >&2
  fi
  cut -f1 "$DATA" | sort -u > "$WORK/users.txt"
  cut -f2 "$DATA" | sort -u > "$WORK/items.txt"
}

# Prints N free loopback ports, so a busy port (another run, another engineer) cannot mix results.
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])' "$1"
}

wait_ready() {
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  log "$1 never answered"; exit 1
}

# wrk at saturation on PORT, random known ids (BENCH_MODE predict or recommend), DURATION seconds
# over CONNS connections: "req/s | p50 | p99 | errors |"; wrk's own output is appended to RAW.
peak() {
  local port=$1 mode=$2 raw=${3:-$WORK/wrk-raw.txt} out
  out=$(BENCH_MODE=$mode BENCH_USERS=$WORK/users.txt BENCH_ITEMS=$WORK/items.txt \
    wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$HERE/random_ids.lua" "http://127.0.0.1:$port")
  echo "$out" >> "$raw"
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
  echo "| $rps | $p50 | $p99 | ${errors:-none} |"
}

# Resident set of a process in MiB.
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# shellcheck disable=SC2034  # read by the scripts that source this file
MACHINE="$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/Mem:/ {print $2}') GiB"

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
