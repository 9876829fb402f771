#!/usr/bin/env bash
# The operator at scale: N RecommenderModels applied at once on a local cluster with a real node.
#
#   benches/operator/scale.sh                       # 200 models, 1 predictor each, 180 s quiet window
#   benches/operator/scale.sh --models 10 --quiet 60 --no-doc      # a quick try
#
# Options: --models N (200), --predictor-replicas N (1), --quiet SECONDS (180: the window at rest
# in which reconciles and status writes are counted), --timeout SECONDS (1200: how long to wait
# for steady state), --metrics-port PORT (8080: the operator's /metrics port in its pod),
# --doc FILE (docs/benchmarks-operator.md), --no-doc.
#
# It brings up its own control plane and real node (containerd, kubelet, kube-proxy, CoreDNS)
# with tests/stack.sh, on control-plane ports and a state folder of its own. A machine runs one
# real node at a time: it waits for the machine-wide lock (stack_lock) as the end-to-end suite
# does, and holds it until it has stopped everything. Environment, all optional:
# RECOMMENDER_STATE (/tmp/rm-scale), RECOMMENDER_{ETCD,ETCD_PEER,APISERVER,KCM,SCHEDULER}_PORT
# (53379, 53380, 57443, 51257, 51259), RECOMMENDER_BIN_DIR (target/debug: recommender-operator,
# -trainer and -predictor, built beforehand with `cargo build --bins`; images.sh builds the
# images from them).
#
# The operator is installed by its Helm chart and runs as a pod. What it measures, from the
# moment `kubectl create` starts sending the N resources:
# - time until every resource is steady: status.phase Serving with condition Serving/Available,
#   or a terminal state (phase Failed, or a candidate rejected by the gate), counted apart;
# - the operator's peak resident memory: VmHWM of its container's process, found on the host
#   through `ctr tasks ls` (and, beside it, the container's memory cgroup high-water mark);
# - reconciles per resource per minute at rest: recommender_operator_reconcile_total from the
#   operator's /metrics (through its pod IP) at the start and end of the quiet window, / N / min;
# - status writes of the online collector per resource per minute at rest, from
#   recommender_operator_online_status_writes_total when the build exports it.
# Targets (issue 6): steady within 120 s, peak memory under 100 MiB, at most 1 reconcile per
# resource per minute at rest. It then stops everything it started (also on failure) and writes
# the results between markers in the doc (the text around them is kept).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# One node: the figures are per node (its pods, its containerd's shims, its allocatable), and the
# models' volumes are pinned to it (tests/cluster/cluster.sh starts 3 by default).
export RECOMMENDER_NODES="${RECOMMENDER_NODES:-1}"

MODELS=200
REPLICAS=1
QUIET=180
TIMEOUT=1200
METRICS_PORT=8080
DOC="$REPO/docs/benchmarks-operator.md"
WRITE_DOC=1
NS=scale-bench
OP_NS=scale-operator
RELEASE=scale
TARGET_STEADY_S=120
TARGET_MEM_MIB=100
TARGET_RATE=1
# What each pod asks of the one 2-core node. The operator's defaults (trainer 500m / 512Mi,
# predictor 100m / 128Mi) would let the scheduler place only 4 trainers at a time on 2 CPUs, and
# the run would measure the queue. These requests let 200 trainers and 200 predictors be placed
# at once (1.4 CPU); the memory limits stay well above what they use on this data (a few MiB).
TRAINER_CPU=5m TRAINER_MEM=32Mi TRAINER_MEM_LIMIT=256Mi
PREDICTOR_CPU=2m PREDICTOR_MEM=16Mi PREDICTOR_MEM_LIMIT=128Mi
# Pods besides the models' on the node: CoreDNS and the operator.
SYSTEM_PODS=2
# cluster.sh's kubelet maxPods; the node's pod range (10.244.0.0/22) has 1021 addresses.
NODE_MAX_PODS=500
ONLINE_METRIC=recommender_operator_online_status_writes_total

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
# Every trainer and every predictor may be on the node at once (trainer pods only leave the
# count once they have succeeded).
PODS_NEEDED=$((MODELS * (1 + REPLICAS) + SYSTEM_PODS))
[ "$PODS_NEEDED" -le "$NODE_MAX_PODS" ] ||
  die "$MODELS models need up to $PODS_NEEDED pods at once; the node takes $NODE_MAX_PODS (MAX_PODS in tests/cluster/cluster.sh)"

export RECOMMENDER_STATE="${RECOMMENDER_STATE:-/tmp/rm-scale}"
export RECOMMENDER_ETCD_PORT="${RECOMMENDER_ETCD_PORT:-53379}"
export RECOMMENDER_ETCD_PEER_PORT="${RECOMMENDER_ETCD_PEER_PORT:-53380}"
export RECOMMENDER_APISERVER_PORT="${RECOMMENDER_APISERVER_PORT:-57443}"
export RECOMMENDER_KCM_PORT="${RECOMMENDER_KCM_PORT:-51257}"
export RECOMMENDER_SCHEDULER_PORT="${RECOMMENDER_SCHEDULER_PORT:-51259}"
BIN="${RECOMMENDER_BIN_DIR:-$REPO/target/debug}"
# A fresh etcd on every run.
unset RECOMMENDER_KEEP_DATA
# shellcheck source=tests/lib.sh disable=SC1091
source "$REPO/tests/lib.sh"
# shellcheck source=tests/stack.sh disable=SC1091
source "$REPO/tests/stack.sh"

for b in recommender-operator recommender-trainer recommender-predictor; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: cargo build --bins (or set RECOMMENDER_BIN_DIR)"
done
for tool in curl jq ctr; do command -v "$tool" >/dev/null || die "$tool is required"; done
[ "$(id -u)" = 0 ] || die "needs root (the real node)"

WORK="$RECOMMENDER_STATE/bench"
STARTED=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$STARTED" = 1 ]; then
    say "stopping the cluster and the node"
    stack_down >"$RECOMMENDER_STATE/bench-down.log" 2>&1 || say "cluster.sh down failed: see $RECOMMENDER_STATE/bench-down.log"
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

# --- cluster -----------------------------------------------------------------------------------
stack_lock # waits while another real node (an e2e run, the demo) runs on this machine
say "state in $RECOMMENDER_STATE, API server on 127.0.0.1:$RECOMMENDER_APISERVER_PORT"
STARTED=1
stack_down >/dev/null 2>&1 # a previous run that died leaves nothing to reuse
rm -rf "$RECOMMENDER_STATE/volumes/$NS" # nor models from an earlier run in the store
t=$(now)
stack_up "$BIN"
CLUSTER_UP_S=$(since "$t")
mkdir -p "$WORK"
ctr_() { ctr --address "$RECOMMENDER_CONTAINERD_ADDRESS" -n k8s.io "$@"; }

stack_crd
kubectl create namespace "$NS" >/dev/null

# The model store: a `local` PersistentVolume pre-bound to the claim, as the e2e harness does
# (tests/src/namespace.rs); one node, so every trainer and predictor shares it.
STORE="$RECOMMENDER_VOLUMES_DIR/$NS/model-store"
mkdir -p "$STORE/data"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: $NS-model-store}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {namespace: $NS, name: model-store}
  local: {path: $STORE}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$RECOMMENDER_NODE_NAME]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: model-store, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: $NS-model-store
  resources: {requests: {storage: 1Gi}}
YAML
kube_wait 60 -n "$NS" pvc/model-store --for=jsonpath='{.status.phase}'=Bound >/dev/null
DATA_USERS=200 DATA_ITEMS=100 DATA_RATINGS=5000
"$BIN/recommender-trainer" generate --users $DATA_USERS --items $DATA_ITEMS --ratings $DATA_RATINGS \
  --rank 5 --seed 1 --out "$STORE/data/ratings.tsv" 2>/dev/null
say "ratings: $DATA_RATINGS ($DATA_USERS users, $DATA_ITEMS items) in $STORE/data/ratings.tsv"

# --- operator ----------------------------------------------------------------------------------
# As a platform team installs it (tests/demo.sh): the chart, the project's images, one replica
# (so no leader election), watching the bench's namespace only. No model reads PostgreSQL, so it
# needs no Secret.
helm upgrade --install "$RELEASE" "$REPO/charts/recommender-operator" --namespace "$OP_NS" \
  --create-namespace --wait --timeout 180s \
  --set image.repository=local/recommender-operator --set image.tag=dev \
  --set workloadImages.trainer.repository=local/recommender-trainer --set workloadImages.trainer.tag=dev \
  --set workloadImages.predictor.repository=local/recommender-predictor --set workloadImages.predictor.tag=dev \
  --set "watchNamespaces={$NS}" --set rbac.secrets.enabled=false \
  --set metrics.port="$METRICS_PORT" >/dev/null
OP_SELECTOR="app.kubernetes.io/instance=$RELEASE"
op_pod_json() { kubectl -n "$OP_NS" get pods -l "$OP_SELECTOR" -o json; }
OP_JSON=$(op_pod_json)
OP_POD=$(jq -r '.items[0].metadata.name' <<<"$OP_JSON")
OP_IP=$(jq -r '.items[0].status.podIP' <<<"$OP_JSON")
OP_LIMITS=$(jq -r '.items[0].spec.containers[0].resources | "requests \(.requests.cpu) / \(.requests.memory), limits \(.limits.cpu) / \(.limits.memory)"' <<<"$OP_JSON")
op_restarts() { op_pod_json | jq '[.items[].status.containerStatuses[]?.restartCount] | add // 0'; }
# The container's process on the host: containerd's task of the pod's container ID.
op_pid() {
  local id
  id=$(op_pod_json | jq -r '.items[0].status.containerStatuses[0].containerID // "" | sub("^containerd://"; "")')
  [ -n "$id" ] && ctr_ tasks ls | awk -v id="$id" '$1 == id { print $2 }'
}
OP_PID=$(op_pid || true)
if [ -z "$OP_PID" ] || [ ! -d "/proc/$OP_PID" ]; then
  die "no host process for the operator's container (pod $OP_POD)"
fi
# Its memory cgroup (cgroup v1 here: the kubelet runs with cgroupfs): the high-water mark of the
# container's usage, page cache included, as a second opinion beside the process's VmHWM.
OP_CGROUP=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' "/proc/$OP_PID/cgroup")
cgroup_peak_bytes() { cat "/sys/fs/cgroup/memory$OP_CGROUP/memory.max_usage_in_bytes" 2>/dev/null || echo 0; }
# Whether the chart's CPU limit (500m) held the operator back: CFS periods it was throttled in.
OP_CPU_CGROUP=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ { print $2 ":" $3 }' "/proc/$OP_PID/cgroup")
cpu_throttled() {
  awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 } END { printf "%d of %d", t, p }' \
    "/sys/fs/cgroup/${OP_CPU_CGROUP%%:*}${OP_CPU_CGROUP#*:}/cpu.stat" 2>/dev/null || echo "?"
}

METRICS_URL="http://$OP_IP:$METRICS_PORT/metrics"
metric() { # name -> sum of its series on the operator's /metrics; empty when it is not exported
  { curl -sf "$METRICS_URL" || true; } | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2; f = 1 } END { if (f) print s }'
}
operator_alive() { [ -d "/proc/$OP_PID" ]; }
for _ in $(seq 1 100); do
  [ -n "$(metric recommender_operator_reconcile_total || true)" ] && break
  sleep 0.2
done
[ -n "$(metric recommender_operator_reconcile_total)" ] || die "no /metrics at $METRICS_URL after 20 s"
say "operator running: pod $OP_NS/$OP_POD ($OP_IP), host pid $OP_PID, $OP_LIMITS"

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
  trainer:
    resources:
      requests: {cpu: $TRAINER_CPU, memory: $TRAINER_MEM}
      limits: {memory: $TRAINER_MEM_LIMIT}
  predictor:
    replicas: $REPLICAS
    resources:
      requests: {cpu: $PREDICTOR_CPU, memory: $PREDICTOR_MEM}
      limits: {memory: $PREDICTOR_MEM_LIMIT}
YAML
done

# One line per poll: serving, terminal, and the phases of everything (e.g. Serving=150,Training=50).
census() {
  kubectl -n "$NS" get recommendermodels -o json | jq -r '
    def cond($t): ((.status.conditions // []) | map(select(.type == $t)) | first // {}).reason // "";
    [.items[] | {p: (.status.phase // "None"), s: cond("Serving"), g: cond("Promoted")}]
    | [ (map(select(.p == "Serving" and .s == "Available")) | length),
        (map(select(.p == "Failed" or (.p == "Pending" and (.g == "GateFailed" or .g == "NotBetter")))) | length),
        (map(.p) | group_by(.) | map("\(.[0])=\(length)") | join(",")) ]
    | @tsv'
}
pods_running() { kubectl -n "$NS" get pods --field-selector=status.phase=Running --no-headers 2>/dev/null | wc -l; }

say "creating $MODELS RecommenderModels (factors 10, epochs 10, folds 2, $REPLICAS predictor replica(s))"
TIMELINE="$WORK/timeline.tsv"
printf 'seconds\tsteady_serving\tterminal\tphases\tpods_running\toperator_rss_kib\n' >"$TIMELINE"
HWM_AT_START=$(vm_kib "$OP_PID" VmHWM)
CPU_AT_START=$(cpu_seconds "$OP_PID")
T0=$(now)
kubectl create -f "$MANIFEST" >/dev/null
APPLY_S=$(since "$T0")
say "created in ${APPLY_S}s; waiting for steady state (timeout ${TIMEOUT}s)"

STEADY_S="" FIRST_SERVING_S="" HALF_S="" SERVING=0 TERMINAL=0 PHASES=""
while :; do
  operator_alive || die "the operator's process $OP_PID is gone during the ramp-up ($(op_restarts) restart(s))"
  if line=$(census 2>/dev/null); then
    IFS=$'\t' read -r SERVING TERMINAL PHASES <<<"$line"
    el=$(since "$T0")
    running=$(pods_running)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$el" "$SERVING" "$TERMINAL" "$PHASES" "$running" "$(vm_kib "$OP_PID" VmRSS)" >>"$TIMELINE"
    say "t=${el}s steady=$SERVING terminal=$TERMINAL pods running=$running [$PHASES]"
    [ -z "$FIRST_SERVING_S" ] && [ "$SERVING" -gt 0 ] && FIRST_SERVING_S=$el
    [ -z "$HALF_S" ] && [ $((2 * (SERVING + TERMINAL))) -ge "$MODELS" ] && HALF_S=$el
    if [ $((SERVING + TERMINAL)) -ge "$MODELS" ]; then
      STEADY_S=$el
      break
    fi
  fi
  awk -v a="$T0" -v b="$(now)" -v t="$TIMEOUT" 'BEGIN { exit !(b - a > t) }' && break
  # Polling the API server costs the 2 shared cores too. `wait` (unlike a foreground sleep)
  # lets a TERM run the cleanup at once.
  sleep 5 &
  wait $!
done
RAMP_CPU_S=$(awk -v a="$CPU_AT_START" -v b="$(cpu_seconds "$OP_PID")" 'BEGIN { printf "%.1f", b - a }')
RECONCILES_RAMP=$(metric recommender_operator_reconcile_total)
LOAD_RAMP=$(cut -d' ' -f1-3 /proc/loadavg)

# --- at rest -----------------------------------------------------------------------------------
RATE="" QUIET_SERVING="" QUIET_CPU_S="" W1="" W2="" WRATE=""
if [ -n "$STEADY_S" ]; then
  say "steady after ${STEADY_S}s; counting reconciles and status writes at rest for ${QUIET}s"
  R1=$(metric recommender_operator_reconcile_total)
  W1=$(metric "$ONLINE_METRIC")
  C1=$(cpu_seconds "$OP_PID")
  TQ=$(now)
  sleep "$QUIET" &
  wait $!
  operator_alive || die "the operator's process $OP_PID is gone during the quiet window ($(op_restarts) restart(s))"
  R2=$(metric recommender_operator_reconcile_total)
  W2=$(metric "$ONLINE_METRIC")
  QUIET_ACTUAL=$(since "$TQ")
  QUIET_CPU_S=$(awk -v a="$C1" -v b="$(cpu_seconds "$OP_PID")" 'BEGIN { printf "%.1f", b - a }')
  per_min() { awk -v a="$1" -v b="$2" -v n="$MODELS" -v s="$QUIET_ACTUAL" 'BEGIN { printf "%.3f", (b - a) / n / (s / 60) }'; }
  RATE=$(per_min "$R1" "$R2")
  [ -n "$W1" ] && [ -n "$W2" ] && WRATE=$(per_min "$W1" "$W2")
  IFS=$'\t' read -r QUIET_SERVING _ QUIET_PHASES <<<"$(census)"
  say "reconciles $R1 -> $R2 in ${QUIET_ACTUAL}s: $RATE per resource per minute; still steady: $QUIET_SERVING [$QUIET_PHASES]"
  say "online status writes: ${WRATE:-n/a (metric not exported by this build)}${WRATE:+ per resource per minute ($W1 -> $W2)}"
fi

# --- what is left to read before stopping ------------------------------------------------------
PEAK_KIB=$(vm_kib "$OP_PID" VmHWM)
RSS_END_KIB=$(vm_kib "$OP_PID" VmRSS)
CGROUP_PEAK_B=$(cgroup_peak_bytes)
OP_RESTARTS=$(op_restarts)
OP_THROTTLED=$(cpu_throttled)
ERRORS=$(metric recommender_operator_reconcile_errors_total)
JOBS=$(kubectl -n "$NS" get jobs --no-headers 2>/dev/null | wc -l)
DEPLOYS=$(kubectl -n "$NS" get deployments --no-headers 2>/dev/null | wc -l)
PODS_RUNNING=$(pods_running)
# The node's own cost: the containers' processes, one shim per pod, kubelet and containerd.
TASKS=$(ctr_ tasks ls | awk 'NR > 1 && $3 == "RUNNING" { print $2 }')
PREDICTOR_RSS=$(for pid in $TASKS; do
  case $(readlink "/proc/$pid/exe" 2>/dev/null) in */recommender-predictor) vm_kib "$pid" VmRSS ;; esac
done | awk '{ s += $1; n++ } END { printf "%d processes, %.0f MiB", n, s / 1024 }')
SHIM_RSS=$(for d in /proc/[0-9]*; do
  case $(tr '\0' ' ' 2>/dev/null <"$d/cmdline") in
    *containerd-shim*"$RECOMMENDER_CONTAINERD_ADDRESS"*) vm_kib "${d#/proc/}" VmRSS ;;
  esac
done | awk '{ s += $1; n++ } END { printf "%d shims, %.0f MiB", n, s / 1024 }')
node_hwm() { local pid; pid=$(cat "$RECOMMENDER_STATE/pids/$1.pid" 2>/dev/null || true); [ -z "$pid" ] || vm_kib "$pid" VmHWM; }
KUBELET_HWM_KIB=$(node_hwm kubelet)
CONTAINERD_HWM_KIB=$(node_hwm containerd)
ALLOCATABLE=$(kubectl get node "$RECOMMENDER_NODE_NAME" -o json |
  jq -r '.status.allocatable | "\(.cpu) CPU / \(.memory) / \(.pods) pods"')
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
kubectl -n "$OP_NS" logs "$OP_POD" >"$WORK/operator.log" 2>&1 || true
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
  if [ -n "$WRATE" ]; then
    WRATE_FIG="$WRATE ($W1 → $W2 writes over ${QUIET_ACTUAL} s)"
  else
    WRATE_FIG="n/a (metric not exported by this build)"
  fi
else
  STEADY_OK=0
  STEADY_FIG="not steady after ${TIMEOUT} s: $SERVING Serving/Available, $TERMINAL terminal [$PHASES]"
  RATE_FIG="not measured (never steady)"
  RATE_VERDICT="**not measured**"
  WRATE_FIG="not measured (never steady)"
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
  echo "| build | \`$BIN\` (operator built $OP_BUILT), commit $COMMIT, images \`local/recommender-*:dev\` from those binaries |"
  echo "| workload | $MODELS RecommenderModels in one \`kubectl create\` (${APPLY_S} s), file source ml-100k format, $DATA_RATINGS ratings / $DATA_USERS users / $DATA_ITEMS items, factors 10, epochs 10, folds 2, $REPLICAS predictor replica(s) each; trainer requests $TRAINER_CPU / $TRAINER_MEM (limit $TRAINER_MEM_LIMIT), predictor $PREDICTOR_CPU / $PREDICTOR_MEM (limit $PREDICTOR_MEM_LIMIT) |"
  echo "| cluster | \`stack_up\` (\`cluster.sh up\` with the real node, images imported) ${CLUSTER_UP_S} s; node allocatable $ALLOCATABLE |"
  echo "| operator | Helm chart, 1 replica, pod \`$OP_NS/$OP_POD\`, $OP_LIMITS (the chart's defaults), $OP_RESTARTS restart(s) |"
  echo
  echo "| figure | measured | target | verdict |"
  echo "|---|---|---|---|"
  echo "| time to steady state | $STEADY_FIG | ≤ $TARGET_STEADY_S s | $(verdict "$STEADY_OK") |"
  echo "| operator peak memory (VmHWM of its container's process) | $(mib "$PEAK_KIB") MiB (at start $(mib "${HWM_AT_START:-0}") MiB, at the end RSS $(mib "$RSS_END_KIB") MiB; container memory cgroup v1 max_usage_in_bytes $(mib "$((CGROUP_PEAK_B / 1024))") MiB, page cache included) | < $TARGET_MEM_MIB MiB | $(verdict "$MEM_OK") |"
  echo "| reconciles per resource per minute at rest | $RATE_FIG | ≤ $TARGET_RATE | $RATE_VERDICT |"
  echo "| online status writes per resource per minute at rest (\`$ONLINE_METRIC\`) | $WRATE_FIG | – | – |"
  echo
  echo "| other observations | |"
  echo "|---|---|"
  echo "| first resource Serving | ${FIRST_SERVING_S:-never} s |"
  echo "| half of them steady | ${HALF_S:-never} s |"
  echo "| reconciles until steady | ${RECONCILES_RAMP:-?} ($(awk -v r="${RECONCILES_RAMP:-0}" -v n="$MODELS" 'BEGIN { printf "%.1f", r / n }') per resource) |"
  echo "| reconcile errors (whole run) | ${ERRORS:-0} |"
  echo "| operator CPU | ${RAMP_CPU_S} s until steady, ${QUIET_CPU_S:-–} s in the quiet window; throttled by its limit in $OP_THROTTLED CFS periods |"
  echo "| trainer Jobs / Deployments / running pods at the end | $JOBS / $DEPLOYS / $PODS_RUNNING |"
  echo "| predictor processes at the end | $PREDICTOR_RSS RSS in total |"
  echo "| containerd shims at the end | $SHIM_RSS RSS in total |"
  echo "| kubelet / containerd peak memory | $(mib "${KUBELET_HWM_KIB:-0}") MiB / $(mib "${CONTAINERD_HWM_KIB:-0}") MiB |"
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
