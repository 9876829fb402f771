#!/usr/bin/env bash
# What a rollout costs a predictor (issue 23's targets: per-request latency within 10 % of a
# predictor without one, two models at most twice one's memory). Two release predictors serve the
# same ml-100k SVD from one directory store, in the same run: one alone, one holding a candidate
# (the same data trained with another seed) in a canary with half the users on it. wrk measures
# both, interleaved (alone, rollout, alone, rollout) so drift of a shared machine falls on both.
#
#   benches/predictor/rollout.sh   # env: DURATION=10 CONNECTIONS=64 ROUNDS=2 ML100K=<path to u.data>
#
# Run it on an idle machine; prints a Markdown report and keeps it in
# ~/.cache/recommender-operator/predictor-bench/.
set -euo pipefail

source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10}
CONNS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-2}
read -r PORT_ALONE PORT_ROLLOUT < <(free_ports 2)

ensure_wrk
build_release
ensure_model
STORE=$WORK/rollout-store
mkdir -p "$STORE"
for spec in "rb-stable:0" "rb-candidate:1"; do
  version=${spec%:*}; seed=${spec##*:}
  if [[ ! -f $STORE/$version.model ]]; then
    log "training $version (seed $seed)"
    "$BIN/recommender-trainer" train --source "$DATA" --format ml-100k --out "$STORE/$version.model" \
      --version "$version" --seed "$seed" --folds 2 --report "$WORK/rollout-$version-report.json" >&2
  fi
done
sha() { sha256sum "$STORE/$1.model" | cut -d' ' -f1; }
cat > "$WORK/rollout.json" <<EOF
{"rolloutId": "bench", "stage": "canary", "candidateVersion": "rb-candidate", "candidateShare": 0.5}
EOF

start() {
  local port=$1; shift
  "$BIN/recommender-predictor" --store "$STORE" --model-version rb-stable --model-sha256 "$(sha rb-stable)" \
    --listen "127.0.0.1:$port" "$@" > "$WORK/rollout-predictor-$port.log" 2>&1 &
  PIDS+=($!)
}
start "$PORT_ALONE"
PID_ALONE=${PIDS[-1]}
start "$PORT_ROLLOUT" --candidate-version rb-candidate --candidate-sha256 "$(sha rb-candidate)" \
  --rollout-config "$WORK/rollout.json"
PID_ROLLOUT=${PIDS[-1]}
wait_ready "http://127.0.0.1:$PORT_ALONE/readyz"
wait_ready "http://127.0.0.1:$PORT_ROLLOUT/readyz"
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$PORT_ROLLOUT/v1/summary" | grep -q '"stage":"canary"' && break
  sleep 0.2
done
rss_alone=$(rss_mib "$PID_ALONE"); rss_rollout=$(rss_mib "$PID_ROLLOUT")


{
  echo "## Rollout overhead, run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $MACHINE; load generator on the same cores. ${DURATION}s per row, $CONNS connections, $ROUNDS rounds."
  echo "Command: \`benches/predictor/rollout.sh\` (DURATION=$DURATION CONNECTIONS=$CONNS ROUNDS=$ROUNDS) at commit $(git -C "$ROOT" rev-parse --short HEAD)"
  echo
  echo "| round | predictor | endpoint | req/s | p50 | p99 | errors |"
  echo "|---|---|---|---|---|---|---|"
  for round in $(seq 1 "$ROUNDS"); do
    for mode in predict recommend; do
      for spec in "alone:$PORT_ALONE" "canary 50 %:$PORT_ROLLOUT"; do
        name=${spec%:*}; port=${spec##*:}
        log "round $round, $name, $mode"
        echo "| $round | $name | $mode $(peak "$port" "$mode" "$WORK/rollout-wrk-raw.txt")"
      done
    done
  done
  echo
  arms=$(curl -fsS "http://127.0.0.1:$PORT_ROLLOUT/metrics" | grep -E '^recommender_predictor_rollout_request_duration_seconds_count' || true)
  echo "Answers per arm of the rollout predictor: $(tr '\n' ' ' <<<"$arms")"
  echo
  echo "Resident set after loading: alone $rss_alone MiB, with the candidate $rss_rollout MiB" \
       "(artifacts $(( $(stat -c %s "$STORE/rb-stable.model") / 1024 )) KiB each)."
} | tee "$WORK/rollout-results-$(date -u +%Y%m%dT%H%M).md"
