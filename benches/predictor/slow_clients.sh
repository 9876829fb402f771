#!/usr/bin/env bash
# Slow-client benchmark over real TCP on loopback: recommender-predictor (release, SVD on
# ml-100k) with --header-read-timeout HEADER_TIMEOUT; STALLED sockets each send the first line of
# a request and then nothing, while fresh requests keep arriving on new connections
# (predictor/examples/slow_clients.rs). Reports how long the server took to close the stalled
# sockets, whether the fresh requests were answered meanwhile, and the predictor's resident set
# with the sockets open.
#
#   benches/predictor/slow_clients.sh   # env: STALLED=3000 HEADER_TIMEOUT=10 ML100K=<path to u.data>
#
# STALLED stays under the default --max-connections (4096), so every stalled socket is served
# until its timeout and fresh clients still find a slot; above it, the excess is closed at accept.
set -euo pipefail

source "$(dirname "$0")/lib.sh"
STALLED=${STALLED:-3000}
HEADER_TIMEOUT=${HEADER_TIMEOUT:-10}
read -r PORT < <(free_ports 1)
# One descriptor per socket on each side, both in this process tree.
ulimit -n $((2 * STALLED + 1024))

build_release
(cd "$ROOT" && cargo build --release -q -p recommender-predictor --example slow_clients)
ensure_model

"$BIN/recommender-predictor" --model "$WORK/ml-100k.model" --listen "127.0.0.1:$PORT" \
  --header-read-timeout "${HEADER_TIMEOUT}s" > "$WORK/slow-clients-predictor.log" 2>&1 &
PID=$!; PIDS+=("$PID")
wait_ready "http://127.0.0.1:$PORT/readyz"
IDLE_RSS=$(rss_mib "$PID")

# The predictor's resident set while the sockets are open, sampled until the driver ends.
PEAK=$WORK/slow-clients-peak
echo "$IDLE_RSS" > "$PEAK"
(while kill -0 "$PID" 2>/dev/null; do
  r=$(rss_mib "$PID"); awk -v r="$r" '{exit !(r > $1)}' "$PEAK" && echo "$r" > "$PEAK"; sleep 0.2
done) &
SAMPLER=$!; PIDS+=("$SAMPLER")

log "$STALLED stalled sockets, header timeout ${HEADER_TIMEOUT}s"
TABLE=$("$BIN/examples/slow_clients" "127.0.0.1:$PORT" "$STALLED" "$HEADER_TIMEOUT")
kill "$SAMPLER" 2>/dev/null || true
METRICS=$(curl -fsS "http://127.0.0.1:$PORT/metrics")

{
  echo "## Slow-client run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $MACHINE; the driver on the same cores."
  echo "Command: \`benches/predictor/slow_clients.sh\` (STALLED=$STALLED HEADER_TIMEOUT=$HEADER_TIMEOUT)"
  echo
  echo "$TABLE"
  echo "| predictor resident set: idle / highest with the sockets open | $IDLE_RSS MiB / $(cat "$PEAK") MiB |"
  echo "| predictor's count of header timeouts / connections refused at accept | $(awk '/^recommender_predictor_connection_timeouts_total\{timeout="header"\}/ {print $2}' <<<"$METRICS") / $(awk '/^recommender_predictor_connections_rejected_total/ {print $2}' <<<"$METRICS") |"
} | tee "$WORK/slow-clients-$(date -u +%Y%m%dT%H%M).md"
