#!/usr/bin/env bash
# Smoke test of the local cluster and the node agent with stand-in "binaries" (shell scripts):
# a Job completes with its termination message, a failing Job reports exit code and message, a
# Deployment with a readiness probe becomes available and serves on each pod's own loopback
# address, deletion stops the processes, and `down` leaves nothing running.
#
#   tests/cluster/smoke.sh          (RECOMMENDER_SMOKE_KEEP=1 leaves the cluster up afterwards)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
NS=smoke
WORK="$(mktemp -d /tmp/recommender-smoke.XXXXXX)"
BIN="$WORK/bin"
NODE_STATE="$WORK/node"
AGENT_PID=""
CLUSTER_STARTED=0

say() { printf '[smoke %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() {
  printf '[smoke] FAILED: %s\n' "$*" >&2
  if [ -n "${KUBECONFIG:-}" ] && [ -n "${K:-}" ]; then
    "$K" -n "$NS" get jobs,deploy,pods -o wide >&2 2>/dev/null || true
    "$K" -n "$NS" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 15 >&2 || true
  fi
  [ -s "$WORK/agent.log" ] && { say "node agent log (tail):"; tail -n 30 "$WORK/agent.log" >&2; }
  exit 1
}

cleanup() {
  local rc=$?
  if [ -n "$AGENT_PID" ] && [ -d "/proc/$AGENT_PID" ]; then
    kill -TERM "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
  fi
  # A kept cluster must not schedule onto a node nobody runs any more.
  if [ -n "${K:-}" ] && [ "${RECOMMENDER_SMOKE_KEEP:-0}" = 1 ]; then
    "$K" delete node smoke-node --ignore-not-found >/dev/null 2>&1 || true
  fi
  if [ $CLUSTER_STARTED = 1 ] && [ "${RECOMMENDER_SMOKE_KEEP:-0}" != 1 ]; then
    "$HERE/cluster.sh" down || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

# --- stand-in binaries ---------------------------------------------------------------------------
mkdir -p "$BIN"
cat >"$BIN/recommender-sleeper" <<'SH'
#!/bin/sh
# Usage: recommender-sleeper REPORT_PATH OUT_DIR EXIT_CODE WORDS...
report=$1 out=$2 code=$3
shift 3
echo "sleeper running as $(id -un) with args: $*"
mkdir -p "$out" && echo "$*" >"$out/written-by-$HOSTNAME"
printf '%s' "$* secret=$SMOKE_SECRET pod=$POD_NAME ip=$POD_IP" >"$report"
exit "$code"
SH
cat >"$BIN/recommender-webserver" <<'SH'
#!/bin/sh
# Usage: recommender-webserver ADDR PORT ; serves its working directory until stopped.
echo "serving on $1:$2"
exec python3 -m http.server --bind "$1" "$2"
SH
chmod +x "$BIN"/*

# --- cluster and agent ---------------------------------------------------------------------------
"$HERE/cluster.sh" up || fail "the control plane did not start"
CLUSTER_STARTED=1
eval "$("$HERE/cluster.sh" env)"
K="$RECOMMENDER_K8S_BIN/kubectl"

AGENT="${RECOMMENDER_NODE_AGENT:-}"
if [ -z "$AGENT" ]; then
  say "building the node agent"
  (cd "$REPO" && cargo build -q -p recommender-e2e --bin node-agent) || fail "cargo build of node-agent failed"
  AGENT="$REPO/target/debug/node-agent"
fi
setsid "$AGENT" --bin-dir "$BIN" --state-dir "$NODE_STATE" --node-name smoke-node \
  >"$WORK/agent.log" 2>&1 </dev/null &
AGENT_PID=$!
"$K" wait node/smoke-node --for=condition=Ready --timeout=60s >/dev/null || fail "node did not become Ready"
say "node smoke-node is Ready"

# --- workloads -----------------------------------------------------------------------------------
"$K" create namespace "$NS" >/dev/null
"$K" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Secret
metadata: {name: smoke, namespace: $NS}
stringData: {token: s3cr3t}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: store, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: ok, namespace: $NS}
spec:
  backoffLimit: 0
  template:
    spec:
      nodeSelector: {kubernetes.io/hostname: smoke-node}
      restartPolicy: Never
      containers:
      - name: main
        image: local/recommender-sleeper:dev
        args: [/dev/termination-log, /models/out, "0", hello, "\$(POD_NAME)"]
        env:
        - {name: SMOKE_SECRET, valueFrom: {secretKeyRef: {name: smoke, key: token}}}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        volumeMounts: [{name: store, mountPath: /models}]
      volumes: [{name: store, persistentVolumeClaim: {claimName: store}}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: broken, namespace: $NS}
spec:
  backoffLimit: 0
  template:
    spec:
      nodeSelector: {kubernetes.io/hostname: smoke-node}
      restartPolicy: Never
      containers:
      - name: main
        image: local/recommender-sleeper:dev
        args: [/dev/termination-log, /scratch, "3", bad, input]
        env:
        - {name: SMOKE_SECRET, value: none}
        volumeMounts: [{name: scratch, mountPath: /scratch}]
      volumes: [{name: scratch, emptyDir: {}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: $NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      # The cluster may have other nodes (e.g. local-node with another bin dir).
      nodeSelector: {kubernetes.io/hostname: smoke-node}
      containers:
      - name: web
        image: local/recommender-webserver:dev
        args: ["\$(POD_IP)", "8080"]
        env:
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: http}
          periodSeconds: 1
        livenessProbe:
          httpGet: {path: /, port: http}
          initialDelaySeconds: 1
          periodSeconds: 1
YAML

"$K" -n "$NS" wait job/ok --for=condition=Complete --timeout=90s >/dev/null || fail "job ok did not complete"
msg=$("$K" -n "$NS" get pods -l job-name=ok -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.message}')
pod=$("$K" -n "$NS" get pods -l job-name=ok -o jsonpath='{.items[0].metadata.name}')
ip=$("$K" -n "$NS" get pods -l job-name=ok -o jsonpath='{.items[0].status.podIP}')
expected="hello $pod secret=s3cr3t pod=$pod ip=$ip"
[ "$msg" = "$expected" ] || fail "termination message of job ok: got '$msg', want '$expected'"
case "$ip" in 127.1.*) ;; *) fail "pod IP $ip is not a 127.1.x.y address" ;; esac
[ -f "$NODE_STATE/volumes/pvc/$NS/store/out/written-by-$pod" ] || fail "job ok did not write into the claim's folder"
say "job ok completed; message: $msg"

"$K" -n "$NS" wait job/broken --for=condition=Failed --timeout=90s >/dev/null || fail "job broken did not fail"
code=$("$K" -n "$NS" get pods -l job-name=broken -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}')
msg=$("$K" -n "$NS" get pods -l job-name=broken -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.message}')
[ "$code" = 3 ] || fail "job broken: exit code $code, want 3"
case "$msg" in "bad input secret=none"*) ;; *) fail "job broken: message '$msg'" ;; esac
say "job broken failed with exit code $code and message: $msg"

"$K" -n "$NS" wait deployment/web --for=condition=Available --timeout=90s >/dev/null || fail "deployment web did not become available"
"$K" -n "$NS" wait pods -l app=web --for=condition=Ready --timeout=60s >/dev/null || fail "web pods not Ready"
ips=$("$K" -n "$NS" get pods -l app=web -o jsonpath='{.items[*].status.podIP}')
n=0
for ip in $ips; do
  curl -sf "http://$ip:8080/" >/dev/null || fail "web pod at $ip:8080 does not answer"
  n=$((n + 1))
done
[ $n = 2 ] || fail "expected 2 web pods, found $n ($ips)"
restarts=$("$K" -n "$NS" get pods -l app=web -o jsonpath='{.items[*].status.containerStatuses[0].restartCount}')
[ "$restarts" = "0 0" ] || fail "web pods restarted although their liveness probe passes: $restarts"
say "deployment web available; pods answer at $ips"

# --- deletion ------------------------------------------------------------------------------------
"$K" delete namespace "$NS" --timeout=90s >/dev/null || fail "namespace $NS was not deleted"
left=$(pgrep -f "$BIN/" || true)
[ -z "$left" ] || fail "processes of deleted pods still running: $left"
say "namespace deleted, no pod processes left"

kill -TERM "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=""
if [ "${RECOMMENDER_SMOKE_KEEP:-0}" != 1 ]; then
  "$HERE/cluster.sh" down
  CLUSTER_STARTED=0
  state="${RECOMMENDER_STATE:-/tmp/recommender-cluster}"
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler; do
    [ ! -s "$state/pids/$c.pid" ] || fail "$c still recorded as running after down"
  done
  say "cluster down"
fi
say "OK"
