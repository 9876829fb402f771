#!/usr/bin/env bash
# `promtool check metrics` on scrapes of the real binaries, and a check that they export the
# metric names the alerts and the dashboard query.
#
#   check_metrics.sh BIN_DIR
#
# BIN_DIR holds the built binaries (e.g. target/debug). The predictor is started on a loopback
# port with a model path that does not exist yet: it serves /metrics before any model is loaded.
# The operator is started only when KUBECONFIG is set (it needs an API server) and when its --help
# offers --metrics-addr; otherwise that part is skipped with a note. Each process started here is
# stopped by its PID on exit.
set -euo pipefail

BIN_DIR="${1:?usage: check_metrics.sh BIN_DIR}"
: "${PROMTOOL:?PROMTOOL must point at promtool (source tools.sh)}"
WORK="$(mktemp -d)"
PIDS=()
# Each binary must exit on SIGTERM within its pod's termination grace (30 s by default); one that
# does not is a failure here, not a hung test run.
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 250); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "FAIL $(tr '\0' ' ' </proc/"$pid"/cmdline) did not exit within 25 s of SIGTERM" >&2
      kill -KILL "$pid" 2>/dev/null || true
      rc=1
    fi
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# scrape NAME URL: waits up to 20 s for the endpoint, saves the body to $WORK/NAME.prom.
scrape() {
  local i
  for ((i = 0; i < 100; i++)); do
    if curl -sf "$2" -o "$WORK/$1.prom"; then return 0; fi
    sleep 0.2
  done
  echo "FAIL $1: no answer from $2" >&2
  return 1
}

# require NAME METRIC...: each metric family must appear in the scrape.
require() {
  local name=$1 missing=()
  shift
  local m
  for m in "$@"; do
    grep -qE "^$m(\{| )" "$WORK/$name.prom" || missing+=("$m")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "FAIL $name does not export: ${missing[*]}" >&2
    return 1
  fi
}

lint() { # lint NAME: promtool's exposition-format and naming checks
  if ! "$PROMTOOL" check metrics <"$WORK/$1.prom" >"$WORK/$1.lint" 2>&1; then
    cat "$WORK/$1.lint" >&2
    echo "FAIL promtool check metrics: $1" >&2
    return 1
  fi
}

# --- predictor ------------------------------------------------------------------------------------
if [ -x "$BIN_DIR/recommender-predictor" ]; then
  port="$(free_port)"
  "$BIN_DIR/recommender-predictor" --model "$WORK/none.model" --listen "127.0.0.1:$port" >"$WORK/predictor.log" 2>&1 &
  PIDS+=("$!")
  scrape predictor "http://127.0.0.1:$port/metrics"
  lint predictor
  # What the dashboard's serving panels query.
  require predictor \
    recommender_predictor_http_requests_total \
    recommender_predictor_http_request_duration_seconds_bucket \
    recommender_predictor_online_rmse recommender_predictor_online_mae \
    recommender_predictor_suggestion_acceptance_ratio \
    recommender_predictor_active_users recommender_predictor_engaged_users \
    recommender_predictor_model_load_failures_total
  echo "ok   promtool check metrics: predictor ($(grep -vc '^#' "$WORK/predictor.prom") samples), dashboard metrics present"
else
  echo "note: no $BIN_DIR/recommender-predictor; predictor scrape skipped"
fi

# --- operator -------------------------------------------------------------------------------------
op="$BIN_DIR/recommender-operator"
if [ -z "${KUBECONFIG:-}" ]; then
  echo "note: KUBECONFIG not set; operator scrape skipped (it needs an API server)"
elif [ ! -x "$op" ] || ! "$op" --help 2>/dev/null | grep -q -- '--metrics-addr'; then
  echo "note: $op missing or without --metrics-addr; operator scrape skipped"
else
  port="$(free_port)"
  # Watch only a namespace nobody uses, so that this operator never competes with one that a test
  # runs against the same API server.
  scope=()
  "$op" --help | grep -q -- '--namespace' && scope=(--namespace "metrics-check-$$" --leader-elect false)
  "$op" --metrics-addr "127.0.0.1:$port" "${scope[@]}" >"$WORK/operator.log" 2>&1 &
  PIDS+=("$!")
  scrape operator "http://127.0.0.1:$port/metrics" || { tail -20 "$WORK/operator.log" >&2; exit 1; }
  lint operator
  # Families that exist before any RecommenderModel does; the per-model gauges appear with models.
  require operator recommender_operator_reconcile_total recommender_operator_reconcile_duration_seconds_bucket ||
    { echo "(families present: $(grep -oE '^recommender_[a-z_]+' "$WORK/operator.prom" | sort -u | tr '\n' ' '))" >&2; exit 1; }
  echo "ok   promtool check metrics: operator ($(grep -vc '^#' "$WORK/operator.prom") samples)"
fi
