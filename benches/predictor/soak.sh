#!/usr/bin/env bash
# Soak benchmark: recommender-predictor (release, default settings, SVD on ml-100k) under a fixed
# mixed load on loopback for MINUTES: 60% single predictions, 30% top-10 suggestions, 10% feedback
# from users never seen before (soak.lua, wrk with a fixed pause per connection). Every INTERVAL
# seconds it records the window's throughput, p50/p99 latency and errors (wrk) and the
# predictor's resident set, then says whether memory stayed flat and whether p99 drifted.
#
#   benches/predictor/soak.sh    # env: MINUTES=10 INTERVAL=30 CONNECTIONS=64 DELAY_MS=5
#                                #      ML100K=<path to u.data>
#
# Flat memory: the resident set at the end is within 5% (or 4 MiB) of its highest value in the
# first quarter of the run, after warm-up. Drift: the median p99 of the last quarter of windows
# over that of the first quarter (above 1.5 is reported as drift).
# Prints a Markdown report and keeps it in ~/.cache/recommender-operator/predictor-bench/.
set -euo pipefail

source "$(dirname "$0")/lib.sh"
MINUTES=${MINUTES:-10}
INTERVAL=${INTERVAL:-30}
CONNS=${CONNECTIONS:-64}
DELAY_MS=${DELAY_MS:-5}
WINDOWS=$(python3 -c "import math; print(max(1, math.ceil($MINUTES * 60 / $INTERVAL)))")
read -r PORT < <(free_ports 1)

ensure_wrk
build_release
ensure_model

"$BIN/recommender-predictor" --model "$WORK/ml-100k.model" --listen "127.0.0.1:$PORT" \
  > "$WORK/soak-predictor.log" 2>&1 &
PID=$!; PIDS+=("$PID")
wait_ready "http://127.0.0.1:$PORT/readyz"
START_RSS=$(rss_mib "$PID")

# wrk prints latencies as 812.00us, 1.23ms or 1.02s: all in ms here.
ms() { awk -v q="$1" '$1==q {v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
  f = (u=="us") ? 0.001 : (u=="s") ? 1000 : 1; printf "%.3f", v * f}'; }

ROWS=$WORK/soak-rows.tsv
: > "$ROWS"
feedback_users=0
for window in $(seq 1 "$WINDOWS"); do
  log "window $window of $WINDOWS (${INTERVAL}s)"
  out=$(BENCH_USERS=$WORK/users.txt BENCH_ITEMS=$WORK/items.txt BENCH_RUN=$window \
    BENCH_DELAY_MS=$DELAY_MS wrk -t2 -c"$CONNS" -d"${INTERVAL}s" --latency -s "$HERE/soak.lua" \
    "http://127.0.0.1:$PORT")
  echo "$out" >> "$WORK/soak-wrk-raw.txt"
  feedback_users=$((feedback_users + $(awk '/^feedback_users/ {print $2}' <<<"$out")))
  printf '%d\t%s\t%s\t%s\t%s\t%s\t%d\n' $((window * INTERVAL)) \
    "$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")" \
    "$(ms 50% <<<"$out")" "$(ms 99% <<<"$out")" \
    "$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")" \
    "$(rss_mib "$PID")" "$feedback_users" >> "$ROWS"
done
END_RSS=$(rss_mib "$PID")

{
  echo "## Soak run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $MACHINE; load generator on the same cores."
  echo "Command: \`benches/predictor/soak.sh\` (MINUTES=$MINUTES INTERVAL=$INTERVAL CONNECTIONS=$CONNS DELAY_MS=$DELAY_MS)"
  echo "Resident set at start (model loaded, no traffic): $START_RSS MiB; at the end: $END_RSS MiB."
  echo
  echo "| t (s) | req/s | p50 (ms) | p99 (ms) | errors | RSS (MiB) | feedback users so far |"
  echo "|---|---|---|---|---|---|---|"
  awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7}' "$ROWS"
  echo
  python3 - "$ROWS" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
rss = [float(r[5]) for r in rows]
p99 = [float(r[3]) for r in rows]
errors = sum(int(r[4]) for r in rows)
quarter = max(1, len(rows) // 4)
early_rss = max(rss[:quarter])
growth = rss[-1] - early_rss
flat = growth <= max(4.0, 0.05 * early_rss)
drift = statistics.median(p99[-quarter:]) / statistics.median(p99[:quarter])
print(f"Memory: highest in the first quarter {early_rss:.1f} MiB, at the end {rss[-1]:.1f} MiB "
      f"({growth:+.1f} MiB): {'flat' if flat else 'GROWING'}.")
print(f"p99: median of the last quarter / first quarter = {drift:.2f}: "
      f"{'no drift' if drift <= 1.5 else 'DRIFT'}. Errors: {errors}.")
PY
} | tee "$WORK/soak-$(date -u +%Y%m%dT%H%M).md"
