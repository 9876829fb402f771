#!/usr/bin/env bash
# A Prometheus server on the host for the live alert tests: it discovers the operator and predictor
# pods of the local cluster with kubernetes_sd_configs (the cluster's kubeconfig), selected as the
# chart's ServiceMonitor and PodMonitor select them, scrapes their pod IPs directly from the host
# every 2 s, and evaluates the chart's alert rules with every `for:` shortened.
#
#   prometheus.sh build     build the server (cached by version) and print its path
#   prometheus.sh up [--namespace NS] [--watch NS[,NS...]] [--set KEY=VALUE]...
#                           render the chart for an operator released as `rec` in NS (default
#                           recommender-system) watching those namespaces (default: all), with
#                           charts/tests/values-prometheus.yaml and the --set values, turn its
#                           ServiceMonitor, PodMonitor and PrometheusRule into prometheus.yml and
#                           rules.yaml (charts/tests/prometheus_config.py), and start a fresh
#                           server on them (one already running is stopped and its data dropped)
#   prometheus.sh down      stop it and delete its folder
#   prometheus.sh env       print `export RECOMMENDER_PROMETHEUS_URL=http://127.0.0.1:PORT`
#   prometheus.sh status    exit 0 when it is ready
#
# Why built rather than Debian's package: Debian builds Prometheus without Kubernetes service
# discovery (its changelog: "Kubernetes support has been completely removed"); its promtool still
# runs the chart's unit tests (charts/tests/tools.sh). The server here is upstream's, built from its
# Go module like the cluster's binaries (tests/cluster/build.sh); its go.mod's replace directives
# are copied into a wrapper module because `go install` refuses a module that has them.
#
# The server listens on 127.0.0.1 only, talks to the API server of KUBECONFIG and to the pods it
# scrapes, and to nothing else (no Alertmanager, no remote write). Needs KUBECONFIG for `up`.
# Environment: RECOMMENDER_PROM_STATE (default: "$RECOMMENDER_STATE-prometheus"),
# RECOMMENDER_PROM_PORT (59090), RECOMMENDER_PROM_FOR (10s, every alert's `for:`),
# PROMETHEUS_VERSION (2.55.1).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/lib.sh
source "$HERE/../lib.sh"
VERSION="${PROMETHEUS_VERSION:-2.55.1}"
STATE="${RECOMMENDER_PROM_STATE:-$RECOMMENDER_STATE-prometheus}"
PORT="${RECOMMENDER_PROM_PORT:-59090}"
FOR="${RECOMMENDER_PROM_FOR:-10s}"
CHART="$REPO_ROOT/charts/recommender-operator"
BIN_DIR="$RECOMMENDER_CACHE/bin/prometheus-v$VERSION"
PIDFILE="$STATE/prometheus.pid"
LOG="$STATE/prometheus.log"
URL="http://127.0.0.1:$PORT"

log() { printf '[prometheus] %s\n' "$*" >&2; }
die() { printf '[prometheus] ERROR: %s\n' "$*" >&2; exit 1; }

cmd_build() {
  if [ -x "$BIN_DIR/prometheus" ]; then
    echo "$BIN_DIR/prometheus"
    return
  fi
  command -v go >/dev/null || die "Go is needed to build Prometheus"
  # Prometheus 2.x is published as the Go module version v0.<minor>.<patch>.
  local module="v0.${VERSION#2.}" dir="$RECOMMENDER_CACHE/src/prometheus-v$VERSION" modfile
  export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
  log "building Prometheus $VERSION (github.com/prometheus/prometheus@$module) into $BIN_DIR (a few minutes, once)"
  mkdir -p "$dir" "$BIN_DIR"
  modfile=$(cd "$dir" && go mod download -json "github.com/prometheus/prometheus@$module" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -s "$modfile" ] || die "go mod download github.com/prometheus/prometheus@$module gave no go.mod"
  {
    echo "module local/prometheusbuild"
    echo
    grep -E '^go ' "$modfile"
    echo
    echo "require github.com/prometheus/prometheus $module"
    echo
    sed -n '/^replace (/,/^)/p' "$modfile"
    grep -E '^replace [^(]' "$modfile" || true
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
GO
  (cd "$dir" && go mod tidy -e >"$dir/tidy.log" 2>&1) || { tail -20 "$dir/tidy.log" >&2; die "go mod tidy"; }
  (cd "$dir" && nice go build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=$VERSION" \
    -o "$BIN_DIR/prometheus.tmp" github.com/prometheus/prometheus/cmd/prometheus) || die "go build prometheus"
  mv "$BIN_DIR/prometheus.tmp" "$BIN_DIR/prometheus"
  echo "$BIN_DIR/prometheus"
}

# The pid of the server this state folder started, if it still runs (checked by its command line,
# so a reused pid is never taken for it).
our_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--storage.tsdb.path=$STATE/data" || return 1
  echo "$pid"
}

stop_server() {
  local pid i
  pid=$(our_pid) || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pid $pid did not stop within 10 s of SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

cmd_up() {
  local namespace=recommender-system watch="" sets=() bin
  while [ $# -gt 0 ]; do
    case "$1" in
      --namespace) namespace="$2" && shift 2 ;;
      --watch) watch="$2" && shift 2 ;;
      --set) sets+=(--set "$2") && shift 2 ;;
      *) die "unknown argument $1 (up [--namespace NS] [--watch NS,...] [--set KEY=VALUE]...)" ;;
    esac
  done
  if [ -z "${KUBECONFIG:-}" ] || [ ! -r "$KUBECONFIG" ]; then
    die "KUBECONFIG must name the local cluster's kubeconfig (tests/cluster/cluster.sh env)"
  fi
  bin=$(cmd_build)
  # helm from the cluster's build cache (else go install of the same version) and a python with
  # PyYAML, as the chart tests find them.
  # shellcheck source=charts/tests/tools.sh
  RECOMMENDER_TOOLS="helm python" source "$REPO_ROOT/charts/tests/tools.sh"
  stop_server
  rm -rf "$STATE"
  mkdir -p "$STATE/data"
  [ -z "$watch" ] || sets+=(--set "watchNamespaces={$watch}")
  "$HELM" template rec "$CHART" --namespace "$namespace" --kube-version 1.34.4 \
    -f "$REPO_ROOT/charts/tests/values-prometheus.yaml" "${sets[@]}" >"$STATE/chart.yaml" ||
    die "helm template of the chart failed"
  "$PYTHON" "$REPO_ROOT/charts/tests/prometheus_config.py" "$STATE/chart.yaml" "$STATE" \
    --kubeconfig "$KUBECONFIG" --for "$FOR" >&2
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "port 127.0.0.1:$PORT is already in use (set RECOMMENDER_PROM_PORT)"
  fi
  # Detached from this shell: stdin, stdout and stderr are files, so a caller that waits for this
  # script's output does not wait for the server.
  setsid "$bin" --config.file="$STATE/prometheus.yml" --storage.tsdb.path="$STATE/data" \
    --storage.tsdb.retention.time=1d --web.listen-address="127.0.0.1:$PORT" \
    --log.level=info </dev/null >"$LOG" 2>&1 9>&- &
  echo $! >"$PIDFILE"
  local i
  for ((i = 0; i < 150; i++)); do
    if curl -sf "$URL/-/ready" >/dev/null 2>&1; then
      log "ready on $URL (config $STATE/prometheus.yml, rules $STATE/rules.yaml, log $LOG)"
      return 0
    fi
    our_pid >/dev/null || break
    sleep 0.2
  done
  tail -n 20 "$LOG" >&2 || true
  stop_server
  die "Prometheus did not become ready on $URL"
}

case "${1:-}" in
  build) cmd_build ;;
  up) shift && cmd_up "$@" ;;
  down)
    stop_server
    rm -rf "$STATE"
    log "stopped and removed $STATE"
    ;;
  env) echo "export RECOMMENDER_PROMETHEUS_URL=$URL" ;;
  status) our_pid >/dev/null && curl -sf "$URL/-/ready" >/dev/null ;;
  *)
    echo "usage: $0 build|up [--namespace NS] [--watch NS,...] [--set KEY=VALUE]...|down|env|status" >&2
    exit 2
    ;;
esac
