#!/usr/bin/env bash
# The operator at scale: N RecommenderModels applied at once on a local cluster of its own.
#
#   benches/operator/scale.sh                       # 200 models, 1 predictor each, 180 s quiet window
#   benches/operator/scale.sh --models 20 --quiet 60 --no-doc      # a quick try
#
# Options: --models N (200), --predictor-replicas N (1), --quiet SECONDS (180: the window at rest
# in which reconciles are counted), --timeout SECONDS (600: how long to wait for steady state),
# --metrics-port PORT (58080), --doc FILE (docs/benchmarks-operator.md), --no-doc.
#
# It starts its own control plane and node agent with tests/cluster/cluster.sh, on ports and a
# state folder that do not collide with the default ones (the end-to-end suite can run at the same
# time, but then both share the cores and the figures say little). Environment, all optional:
# RECOMMENDER_STATE (/tmp/rm-scale), RECOMMENDER_{ETCD,ETCD_PEER,APISERVER,KCM,SCHEDULER}_PORT
# (53379, 53380, 57443, 51257, 51259), RECOMMENDER_BIN_DIR (target/debug: recommender-operator,
# -trainer, -predictor and node-agent, built beforehand with `cargo build --bins`).
#
# What it measures, from the moment `kubectl create` starts sending the N resources:
# - time until every resource is steady: status.phase Serving with condition Serving/Available,
#   or a terminal state (phase Failed, or a candidate rejected by the gate), counted apart;
# - the operator's peak resident memory (VmHWM of its process, read from /proc);
# - reconciles per resource per minute at rest: recommender_operator_reconcile_total from the
#   operator's /metrics at the start and end of the quiet window, / N / minutes.
# Targets (issue 6): steady within 120 s, peak memory under 100 MiB, at most 1 reconcile per
# resource per minute at rest. It then stops everything it started and writes the results
# between markers in the doc (the text around them is kept).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$REPO/benches/operator"

MODELS=200
REPLICAS=1
QUIET=180
TIMEOUT=600
METRICS_PORT=58080
DOC="$REPO/docs/benchmarks-operator.md"
WRITE_DOC=1
NS=scale-bench
TARGET_STEADY_S=120
TARGET_MEM_MIB=100
TARGET_RATE=1

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { printf '[scale] ERROR: %s\n' "$*" >&2; exit 1; }
say() { printf '[scale] %s\n' "$*" >&2; }
need_int() { [[ $2 =~ ^[0-9]+$ ]] || die "$1 needs a whole number, got '$2'"; }

while [ $# -gt 0 ]; do
  case $1 in
    --models) need_int "$1" "${2:-}"; MODELS=$2; shift 2 ;;
    --predictor-replicas) need_int "$1" "${2:-}"; REPLICAS=$2; shift 2 ;;
    --quiet) need_int "$1" "${2:-}"; QUIET=$2; shift 2 ;;
    --timeout) need_int "$1" "${2:-}"; TIMEOUT=$2; shift 2 ;;
    --metrics-port) need_int "$1" "${2:-}"; METRICS_PORT=$2; shift 2 ;;
    --doc) DOC=${2:?--doc needs a file}; shift 2 ;;
    --no-doc) WRITE_DOC=0; shift ;;
    -h | --help) usage ;;
    *) printf 'unknown option: %s\n' "$1" >&2; usage ;;
  esac
done
[ "$MODELS" -ge 1 ] || die "--models must be at least 1"
[ "$QUIET" -ge 10 ] || die "--quiet must be at least 10 seconds"

export RECOMMENDER_STATE="${RECOMMENDER_STATE:-/tmp/rm-scale}"
export RECOMMENDER_ETCD_PORT="${RECOMMENDER_ETCD_PORT:-53379}"
export RECOMMENDER_ETCD_PEER_PORT="${RECOMMENDER_ETCD_PEER_PORT:-53380}"
export RECOMMENDER_APISERVER_PORT="${RECOMMENDER_APISERVER_PORT:-57443}"
export RECOMMENDER_KCM_PORT="${RECOMMENDER_KCM_PORT:-51257}"
export RECOMMENDER_SCHEDULER_PORT="${RECOMMENDER_SCHEDULER_PORT:-51259}"
export RECOMMENDER_BIN_DIR="${RECOMMENDER_BIN_DIR:-$REPO/target/debug}"
# A fresh etcd and fresh node folders on every run.
unset RECOMMENDER_KEEP_DATA
# A node big enough for N trainers and N predictors at once (see node-agent-large.sh).
export SCALE_REAL_NODE_AGENT="${RECOMMENDER_NODE_AGENT:-$RECOMMENDER_BIN_DIR/node-agent}"
export RECOMMENDER_NODE_AGENT="$HERE/node-agent-large.sh"

CLUSTER="$REPO/tests/cluster/cluster.sh"
BIN=$RECOMMENDER_BIN_DIR
for b in recommender-operator recommender-trainer recommender-predictor; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: cargo build --bins (or set RECOMMENDER_BIN_DIR)"
done
[ -x "$SCALE_REAL_NODE_AGENT" ] || die "$SCALE_REAL_NODE_AGENT is missing: cargo build -p recommender-e2e --bin node-agent"
for tool in curl jq; do command -v "$tool" >/dev/null || die "$tool is required"; done
if (exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT") 2>/dev/null; then
  die "127.0.0.1:$METRICS_PORT is in use; pick another with --metrics-port"
fi

OP_PID=""
CLUSTER_STARTED=0
OP_LOG="$RECOMMENDER_STATE/logs/operator.log"
WORK="$RECOMMENDER_STATE/bench"

stop_operator() {
  [ -n "$OP_PID" ] || return 0
  if [ -d "/proc/$OP_PID" ]; then
    kill -TERM "$OP_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$OP_PID" ] || break; sleep 0.2; done
    [ -d "/proc/$OP_PID" ] && kill -KILL "$OP_PID" 2>/dev/null
    wait "$OP_PID" 2>/dev/null || true
  fi
  OP_PID=""
}

# The agent stops its pods on SIGTERM, but cluster.sh gives it only 5 s before SIGKILL; with
# hundreds of pods some may outlive it. Those are exactly the trainer/predictor processes whose
# working folder is under this run's node folder.
sweep_pod_processes() {
  local d pid cwd exe left=0
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    cwd=$(readlink "$d/cwd" 2>/dev/null) || continue
    case $cwd in "$RECOMMENDER_STATE/node/"*) ;; *) continue ;; esac
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    case ${exe##*/} in recommender-trainer* | recommender-predictor*) ;; *) continue ;; esac
    kill -KILL "$pid" 2>/dev/null && left=$((left + 1))
  done
  [ "$left" -eq 0 ] || say "killed $left pod process(es) left behind by the node agent"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_operator
  if [ "$CLUSTER_STARTED" = 1 ]; then
    say "stopping the cluster"
    "$CLUSTER" down || true
    sweep_pod_processes
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
vm_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
cpu_seconds() { # pid -> user+system CPU seconds so far
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / hz }' "/proc/$1/stat"
}
metric() { # name -> value of an unlabelled series on the operator's /metrics
  curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v n="$1" '$1 == n { print $2; exit }'
}
operator_alive() { [ -n "$OP_PID" ] && [ -d "/proc/$OP_PID" ]; }

# --- cluster -----------------------------------------------------------------------------------
say "state in $RECOMMENDER_STATE, API server on 127.0.0.1:$RECOMMENDER_APISERVER_PORT"
"$CLUSTER" down >/dev/null 2>&1 || true # a previous run that died leaves nothing to reuse
CLUSTER_STARTED=1
t=$(now)
"$CLUSTER" up
CLUSTER_UP_S=$(since "$t")
eval "$("$CLUSTER" env)"
K="$RECOMMENDER_K8S_BIN/kubectl"
mkdir -p "$WORK" "$RECOMMENDER_STATE/logs"

"$K" apply --server-side -f "$REPO/crds/recommendermodels.yaml" >/dev/null
"$K" wait --for=condition=Established crd/recommendermodels.recommender.dev --timeout=60s >/dev/null
"$K" create namespace "$NS" >/dev/null
"$K" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: model-store, namespace: $NS}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 1Gi}}
YAML
"$K" -n "$NS" wait pvc/model-store --for=jsonpath='{.status.phase}'=Bound --timeout=60s >/dev/null
STORE=$("$K" get pv "$("$K" -n "$NS" get pvc model-store -o jsonpath='{.spec.volumeName}')" \
  -o jsonpath='{.spec.hostPath.path}')
[ -n "$STORE" ] || die "the model-store volume has no hostPath"
mkdir -p "$STORE/data"
DATA_USERS=200 DATA_ITEMS=100 DATA_RATINGS=5000
"$BIN/recommender-trainer" generate --users $DATA_USERS --items $DATA_ITEMS --ratings $DATA_RATINGS \
  --rank 5 --seed 1 --out "$STORE/data/ratings.tsv" 2>/dev/null
say "ratings: $DATA_RATINGS ($DATA_USERS users, $DATA_ITEMS items) in $STORE/data/ratings.tsv"

# --- operator ----------------------------------------------------------------------------------
: >"$OP_LOG" # this run's log only (cluster.sh keeps its logs across runs)
setsid "$BIN/recommender-operator" --namespace "$NS" --leader-elect false \
  --metrics-addr "127.0.0.1:$METRICS_PORT" \
  --trainer-image local/recommender-trainer:dev --predictor-image local/recommender-predictor:dev \
  >>"$OP_LOG" 2>&1 </dev/null &
OP_PID=$!
for _ in $(seq 1 100); do
  [ -n "$(metric recommender_operator_reconcile_total || true)" ] && break
  operator_alive || { tail -n 20 "$OP_LOG" >&2; die "the operator exited at start (log $OP_LOG)"; }
  sleep 0.2
done
[ -n "$(metric recommender_operator_reconcile_total)" ] || die "no /metrics on 127.0.0.1:$METRICS_PORT after 20 s"
say "operator running (pid $OP_PID, log $OP_LOG)"

# --- the N resources ---------------------------------------------------------------------------
MANIFEST="$WORK/models.yaml"
: >"$MANIFEST"
for i in $(seq -w 1 "$MODELS" | sed 's/^/m/'); do
  cat >>"$MANIFEST" <<YAML
---
apiVersion: recommender.dev/v1alpha1
kind: RecommenderModel
metadata: {name: $i, namespace: $NS}
spec:
  source: {file: {path: data/ratings.tsv, format: ml-100k}}
  modelStore: {claimName: model-store}
  hyperparameters: {factors: 10, epochs: 10}
  folds: 2
  seed: 1
  predictor: {replicas: $REPLICAS}
YAML
done

# One line per poll: serving, terminal, and the phases of everything (e.g. Serving=150,Training=50).
census() {
  "$K" -n "$NS" get recommendermodels -o json | jq -r '
    def cond($t): ((.status.conditions // []) | map(select(.type == $t)) | first // {}).reason // "";
    [.items[] | {p: (.status.phase // "None"), s: cond("Serving"), g: cond("Promoted")}]
    | [ (map(select(.p == "Serving" and .s == "Available")) | length),
        (map(select(.p == "Failed" or (.p == "Pending" and (.g == "GateFailed" or .g == "NotBetter")))) | length),
        (map(.p) | group_by(.) | map("\(.[0])=\(length)") | join(",")) ]
    | @tsv'
}

say "creating $MODELS RecommenderModels (factors 10, epochs 10, folds 2, $REPLICAS predictor replica(s))"
TIMELINE="$WORK/timeline.tsv"
printf 'seconds\tsteady_serving\tterminal\tphases\toperator_rss_kib\n' >"$TIMELINE"
HWM_AT_START=$(vm_kib "$OP_PID" VmHWM)
CPU_AT_START=$(cpu_seconds "$OP_PID")
T0=$(now)
"$K" create -f "$MANIFEST" >/dev/null
APPLY_S=$(since "$T0")
say "created in ${APPLY_S}s; waiting for steady state (timeout ${TIMEOUT}s)"

STEADY_S="" FIRST_SERVING_S="" HALF_S="" SERVING=0 TERMINAL=0 PHASES=""
while :; do
  operator_alive || { tail -n 20 "$OP_LOG" >&2; die "the operator died during the ramp-up (log $OP_LOG)"; }
  if line=$(census 2>/dev/null); then
    IFS=$'\t' read -r SERVING TERMINAL PHASES <<<"$line"
    el=$(since "$T0")
    printf '%s\t%s\t%s\t%s\t%s\n' "$el" "$SERVING" "$TERMINAL" "$PHASES" "$(vm_kib "$OP_PID" VmRSS)" >>"$TIMELINE"
    say "t=${el}s steady=$SERVING terminal=$TERMINAL [$PHASES]"
    [ -z "$FIRST_SERVING_S" ] && [ "$SERVING" -gt 0 ] && FIRST_SERVING_S=$el
    [ -z "$HALF_S" ] && [ $((2 * (SERVING + TERMINAL))) -ge "$MODELS" ] && HALF_S=$el
    if [ $((SERVING + TERMINAL)) -ge "$MODELS" ]; then
      STEADY_S=$el
      break
    fi
  fi
  awk -v a="$T0" -v b="$(now)" -v t="$TIMEOUT" 'BEGIN { exit !(b - a > t) }' && break
  sleep 2
done
RAMP_CPU_S=$(awk -v a="$CPU_AT_START" -v b="$(cpu_seconds "$OP_PID")" 'BEGIN { printf "%.1f", b - a }')
RECONCILES_RAMP=$(metric recommender_operator_reconcile_total)
LOAD_RAMP=$(cut -d' ' -f1-3 /proc/loadavg)

# --- at rest -----------------------------------------------------------------------------------
RATE="" QUIET_SERVING="" QUIET_CPU_S=""
if [ -n "$STEADY_S" ]; then
  say "steady after ${STEADY_S}s; counting reconciles at rest for ${QUIET}s"
  R1=$(metric recommender_operator_reconcile_total)
  C1=$(cpu_seconds "$OP_PID")
  TQ=$(now)
  sleep "$QUIET"
  operator_alive || die "the operator died during the quiet window (log $OP_LOG)"
  R2=$(metric recommender_operator_reconcile_total)
  QUIET_ACTUAL=$(since "$TQ")
  QUIET_CPU_S=$(awk -v a="$C1" -v b="$(cpu_seconds "$OP_PID")" 'BEGIN { printf "%.1f", b - a }')
  RATE=$(awk -v a="$R1" -v b="$R2" -v n="$MODELS" -v s="$QUIET_ACTUAL" 'BEGIN { printf "%.3f", (b - a) / n / (s / 60) }')
  IFS=$'\t' read -r QUIET_SERVING _ QUIET_PHASES <<<"$(census)"
  say "reconciles $R1 -> $R2 in ${QUIET_ACTUAL}s: $RATE per resource per minute; still steady: $QUIET_SERVING [$QUIET_PHASES]"
fi

# --- what is left to read before stopping ------------------------------------------------------
PEAK_KIB=$(vm_kib "$OP_PID" VmHWM)
RSS_END_KIB=$(vm_kib "$OP_PID" VmRSS)
ERRORS=$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" |
  awk '$1 ~ /^recommender_operator_reconcile_errors_total/ { s += $2 } END { print s + 0 }')
JOBS=$("$K" -n "$NS" get jobs --no-headers 2>/dev/null | wc -l)
DEPLOYS=$("$K" -n "$NS" get deployments --no-headers 2>/dev/null | wc -l)
PODS_RUNNING=$("$K" -n "$NS" get pods --field-selector=status.phase=Running --no-headers 2>/dev/null | wc -l)
AGENT_PID=$(cat "$RECOMMENDER_STATE/pids/node-agent.pid" 2>/dev/null || echo "")
AGENT_HWM_KIB=$([ -n "$AGENT_PID" ] && vm_kib "$AGENT_PID" VmHWM || echo "")
PREDICTOR_RSS_MIB=$(for d in /proc/[0-9]*; do
  case $(readlink "$d/cwd" 2>/dev/null) in "$RECOMMENDER_STATE/node/"*) ;; *) continue ;; esac
  case $(readlink "$d/exe" 2>/dev/null) in */recommender-predictor) awk '$1 == "VmRSS:" { print $2 }' "$d/status" 2>/dev/null ;; esac
done | awk '{ s += $1; n++ } END { printf "%d processes, %.0f MiB", n, s / 1024 }')
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$OP_LOG" "$WORK/operator.log" 2>/dev/null || true
stop_operator
say "peak operator memory: $((PEAK_KIB / 1024)) MiB (VmHWM ${PEAK_KIB} KiB)"

# --- results -----------------------------------------------------------------------------------
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
verdict() { if [ "$1" = 1 ]; then echo "**met**"; else echo "**missed**"; fi; }
if [ -n "$STEADY_S" ]; then
  STEADY_OK=$(awk -v s="$STEADY_S" -v t="$TARGET_STEADY_S" 'BEGIN { print (s <= t) ? 1 : 0 }')
  STEADY_FIG="${STEADY_S} s ($SERVING Serving/Available, $TERMINAL terminal)"
  RATE_OK=$(awk -v r="$RATE" -v t="$TARGET_RATE" 'BEGIN { print (r <= t) ? 1 : 0 }')
  RATE_FIG="$RATE ($R1 → $R2 reconciles over ${QUIET_ACTUAL} s; ${QUIET_SERVING} still Serving at the end)"
  RATE_VERDICT=$(verdict "$RATE_OK")
else
  STEADY_OK=0
  STEADY_FIG="not steady after ${TIMEOUT} s: $SERVING Serving/Available, $TERMINAL terminal [$PHASES]"
  RATE_FIG="not measured (never steady)"
  RATE_VERDICT="**not measured**"
fi
MEM_OK=$(awk -v k="$PEAK_KIB" -v t="$TARGET_MEM_MIB" 'BEGIN { print (k / 1024 < t) ? 1 : 0 }')
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM_TOTAL=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
OP_BUILT=$(date -u -r "$BIN/recommender-operator" +%Y-%m-%dT%H:%MZ)
CMD="benches/operator/scale.sh --models $MODELS --predictor-replicas $REPLICAS --quiet $QUIET --timeout $TIMEOUT"

RESULTS="$WORK/results.md"
{
  echo "### Run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| command | \`$CMD\` |"
  echo "| machine | $(nproc) cores, $CPU_MODEL, $MEM_TOTAL RAM, load average $LOAD_RAMP at steady state, $LOAD_END at the end |"
  echo "| build | \`$BIN\` (operator built $OP_BUILT), commit $COMMIT |"
  echo "| workload | $MODELS RecommenderModels in one \`kubectl create\` (${APPLY_S} s), file source ml-100k format, $DATA_RATINGS ratings / $DATA_USERS users / $DATA_ITEMS items, factors 10, epochs 10, folds 2, $REPLICAS predictor replica(s) each |"
  echo "| cluster | \`cluster.sh up\` ${CLUSTER_UP_S} s; node advertising ${SCALE_NODE_CPU:-256} CPU / ${SCALE_NODE_MEMORY:-1Ti} / ${SCALE_NODE_MAX_PODS:-1000} pods (\`node-agent-large.sh\`) |"
  echo
  echo "| figure | measured | target | verdict |"
  echo "|---|---|---|---|"
  echo "| time to steady state | $STEADY_FIG | ≤ $TARGET_STEADY_S s | $(verdict "$STEADY_OK") |"
  echo "| operator peak memory (VmHWM) | $(mib "$PEAK_KIB") MiB (at start $(mib "${HWM_AT_START:-0}") MiB, at the end RSS $(mib "$RSS_END_KIB") MiB) | < $TARGET_MEM_MIB MiB | $(verdict "$MEM_OK") |"
  echo "| reconciles per resource per minute at rest | $RATE_FIG | ≤ $TARGET_RATE | $RATE_VERDICT |"
  echo
  echo "| other observations | |"
  echo "|---|---|"
  echo "| first resource Serving | ${FIRST_SERVING_S:-never} s |"
  echo "| half of them steady | ${HALF_S:-never} s |"
  echo "| reconciles until steady | ${RECONCILES_RAMP:-?} ($(awk -v r="${RECONCILES_RAMP:-0}" -v n="$MODELS" 'BEGIN { printf "%.1f", r / n }') per resource) |"
  echo "| reconcile errors (whole run) | $ERRORS |"
  echo "| operator CPU | ${RAMP_CPU_S} s until steady, ${QUIET_CPU_S:-–} s in the quiet window |"
  echo "| trainer Jobs / Deployments / running pods at the end | $JOBS / $DEPLOYS / $PODS_RUNNING |"
  echo "| predictor processes at the end | $PREDICTOR_RSS_MIB RSS in total |"
  echo "| node agent peak memory | $(mib "${AGENT_HWM_KIB:-0}") MiB |"
  echo
  echo "<details><summary>Progress (seconds after create; steady = Serving/Available)</summary>"
  echo
  echo '```'
  column -t -s $'\t' "$TIMELINE" 2>/dev/null || cat "$TIMELINE"
  echo '```'
  echo
  echo "</details>"
} >"$RESULTS"
cat "$RESULTS"

if [ "$WRITE_DOC" = 1 ]; then
  BEGIN_MARK='<!-- scale.sh results: begin -->'
  END_MARK='<!-- scale.sh results: end -->'
  if [ ! -f "$DOC" ]; then
    printf '# Operator benchmark\n\n%s\n%s\n' "$BEGIN_MARK" "$END_MARK" >"$DOC"
  elif ! grep -qF "$BEGIN_MARK" "$DOC"; then
    printf '\n%s\n%s\n' "$BEGIN_MARK" "$END_MARK" >>"$DOC"
  fi
  awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v f="$RESULTS" '
    $0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }' "$DOC" >"$DOC.tmp"
  mv "$DOC.tmp" "$DOC"
  say "results written to $DOC"
fi
