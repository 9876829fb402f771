#!/usr/bin/env bash
# Smoke test of the real node (tests/cluster/cluster.sh with RECOMMENDER_NODE=real) with the
# project's own images, on a cluster it starts itself and tears down:
#   - images built from the Dockerfile (images.sh) run as 65532 with a read-only root filesystem,
#     seccomp RuntimeDefault, no capabilities and a memory limit (checked on the host's view of
#     the container process);
#   - a trainer Job reads MovieLens from the host's PostgreSQL through a selectorless Service +
#     EndpointSlice (by its DNS name) and writes the model into a `local` PersistentVolume
#     (fsGroup 65532); a predictor Deployment mounts it read-only and serves it;
#   - the predictor's ClusterIP answers from the host and from another pod; DNS resolves
#     <svc>.<ns>.svc.cluster.local and refuses outside names; kubectl logs (plain text), exec and
#     port-forward work; the operator image, in a pod, reaches the API server through the
#     `kubernetes` Service with TLS (kube-rs in-cluster config) and stays Ready across an API
#     server restart;
#   - a pod cannot reach outside addresses (eth0's gateway, eth0's address, an unused ClusterIP):
#     the host's containment rules drop those packets;
#   - `down` leaves no bridge, interface, KUBE-/CNI-/RECOMMENDER- iptables chain, process, mount
#     or network namespace of the node behind, and `up` works again afterwards (then `down`).
#
#   tests/cluster/smoke.sh
#
# Environment: RECOMMENDER_BIN_DIR (cargo's output folder; default target/debug, built with
# `cargo build --bins` when a binary is missing), RECOMMENDER_SMOKE_KEEP=1 leaves the cluster,
# PostgreSQL and the smoke namespace up for debugging (and skips the down/up cycle),
# RECOMMENDER_STATE and the ports as in cluster.sh. Needs root.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
NS=smoke
KEEP="${RECOMMENDER_SMOKE_KEEP:-0}"
BIN="${RECOMMENDER_BIN_DIR:-$REPO/target/debug}"
WORK="$(mktemp -d /tmp/recommender-smoke.XXXXXX)"
CLUSTER_STARTED=0
PG_STARTED=0
PF_PID=""
export RECOMMENDER_NODE=real
started=$SECONDS

say() { printf '[smoke %3ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
ok() { printf '[smoke %3ss] ok: %s\n' "$((SECONDS - started))" "$*" >&2; }
fail() {
  printf '[smoke] FAILED: %s\n' "$*" >&2
  if [ -n "${K:-}" ]; then
    "$K" get nodes -o wide >&2 2>/dev/null || true
    "$K" -n "$NS" get all,pv,pvc -o wide >&2 2>/dev/null || true
    "$K" -n "$NS" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
  fi
  exit 1
}

cleanup() {
  local rc=$?
  [ -z "$PF_PID" ] || kill "$PF_PID" 2>/dev/null || true
  if [ "$KEEP" != 1 ]; then
    [ $PG_STARTED = 0 ] || "$HERE/postgres.sh" down >/dev/null 2>&1 || true
    [ $CLUSTER_STARTED = 0 ] || "$HERE/cluster.sh" down >/dev/null 2>&1 || true
  else
    say "RECOMMENDER_SMOKE_KEEP=1: cluster, PostgreSQL and namespace $NS left up (tests/cluster/cluster.sh down to stop)"
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "the real node needs root"

# --- binaries, cluster, images, database -------------------------------------------------------
for b in recommender-operator recommender-trainer recommender-predictor; do
  if [ ! -x "$BIN/$b" ]; then
    say "building the project's binaries into $BIN"
    (cd "$REPO" && cargo build -q --locked --bins -p recommender-operator -p recommender-trainer -p recommender-predictor) ||
      fail "cargo build failed"
    break
  fi
done

# Folders the node's components create at fixed places: `down` must remove those it created.
host_paths_before=""
for d in /run/containerd /run/netns /var/lib/kubelet /var/log/containers /etc/cni; do
  [ -e "$d" ] && host_paths_before+=" $d"
done
t0=$SECONDS
"$HERE/cluster.sh" up || fail "cluster.sh up"
CLUSTER_STARTED=1
UP_SECONDS=$((SECONDS - t0))
eval "$("$HERE/cluster.sh" env)"
K="$RECOMMENDER_K8S_BIN/kubectl"
ok "cluster.sh up in ${UP_SECONDS}s: node $RECOMMENDER_NODE_NAME Ready at $RECOMMENDER_NODE_IP, CoreDNS available"

t0=$SECONDS
"$HERE/images.sh" --test-tools "$BIN" >"$WORK/images.txt" || fail "images.sh"
ok "images.sh in $((SECONDS - t0))s: $(tr '\n' ' ' <"$WORK/images.txt")"

# A PostgreSQL already running (tests/all.sh starts one first) is restarted to listen on the node
# address too, and left running afterwards.
"$HERE/postgres.sh" status >/dev/null 2>&1 || PG_STARTED=1
"$HERE/postgres.sh" up || fail "postgres.sh up"
eval "$("$HERE/postgres.sh" env)"
[ "$RECOMMENDER_PG_POD_HOST" = "$RECOMMENDER_NODE_IP" ] || fail "postgres.sh env: pod host $RECOMMENDER_PG_POD_HOST is not the node address"
ss -ltn | grep -q "$RECOMMENDER_NODE_IP:$RECOMMENDER_PG_POD_PORT " || fail "PostgreSQL does not listen on $RECOMMENDER_NODE_IP:$RECOMMENDER_PG_POD_PORT"
ok "PostgreSQL listens on 127.0.0.1 and $RECOMMENDER_PG_POD_HOST:$RECOMMENDER_PG_POD_PORT"

# --- workloads -----------------------------------------------------------------------------------
# The PersistentVolume shape the tests create per claim: `local`, pre-bound to its claim, pinned
# to the node, in a folder of the state dir that the test creates first.
VOLUME_DIR="$RECOMMENDER_VOLUMES_DIR/$NS/models"
rm -rf "$VOLUME_DIR"
mkdir -p "$VOLUME_DIR"

"$K" create namespace "$NS" >/dev/null
"$K" apply -f "$REPO/crds/" >/dev/null
"$K" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: $NS-models}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  volumeMode: Filesystem
  claimRef: {namespace: $NS, name: models}
  local: {path: $VOLUME_DIR}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$RECOMMENDER_NODE_NAME]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: models, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: $NS-models
  resources: {requests: {storage: 1Gi}}
---
# PostgreSQL on the host, reached like an external database.
apiVersion: v1
kind: Service
metadata: {name: postgres, namespace: $NS}
spec:
  ports: [{name: postgres, port: 5432, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: postgres-host
  namespace: $NS
  labels: {kubernetes.io/service-name: postgres, endpointslice.kubernetes.io/managed-by: recommender-tests}
addressType: IPv4
ports: [{name: postgres, port: $RECOMMENDER_PG_POD_PORT, protocol: TCP}]
endpoints: [{addresses: ["$RECOMMENDER_PG_POD_HOST"], conditions: {ready: true}}]
---
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: $NS}
stringData: {password: "$PGPASSWORD"}
YAML

# What every pod of the smoke test runs with: the operator's own hardening.
POD_SECURITY='securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: {type: RuntimeDefault}}'
CONTAINER_SECURITY='securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}'

"$K" apply -f - >/dev/null <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: train, namespace: $NS}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      $POD_SECURITY
      containers:
      - name: trainer
        image: local/recommender-trainer:dev
        imagePullPolicy: IfNotPresent
        args: [train, --source, postgres, --pg-host, postgres.$NS.svc.cluster.local, --pg-port, "5432",
               --pg-database, "$PGDATABASE", --pg-user, "$PGUSER", --algorithm, baseline, --folds, "2",
               --out, /models/v1.model, --version, v1]
        env: [{name: PGPASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}]
        resources: {limits: {memory: 512Mi}, requests: {cpu: 100m, memory: 128Mi}}
        $CONTAINER_SECURITY
        volumeMounts: [{name: models, mountPath: /models}]
      volumes: [{name: models, persistentVolumeClaim: {claimName: models}}]
YAML
PVC_PHASE=$("$K" -n "$NS" get pvc models -o jsonpath='{.status.phase}')
"$K" -n "$NS" wait pvc/models --for=jsonpath='{.status.phase}'=Bound --timeout=30s >/dev/null ||
  fail "claim models not Bound (phase $PVC_PHASE)"
ok "PersistentVolume $NS-models (local, pre-bound) Bound to claim $NS/models"
"$K" -n "$NS" wait job/train --for=condition=Complete --timeout=300s >/dev/null || {
  "$K" -n "$NS" logs job/train --tail=20 >&2 || true
  fail "the trainer Job did not complete"
}
report=$("$K" -n "$NS" get pods -l job-name=train -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.message}')
grep -q '"rows":100000' <<<"$report" || fail "trainer report does not say 100000 rows: $report"
ok "trainer Job read 100000 ratings from PostgreSQL via postgres.$NS.svc.cluster.local (selectorless Service -> $RECOMMENDER_PG_POD_HOST:$RECOMMENDER_PG_POD_PORT)"
owner=$(stat -c '%u:%g %a' "$VOLUME_DIR/v1.model")
case $owner in "65532:65532 "*) ;; *) fail "model file owner/mode on the host: $owner (want 65532:65532)" ;; esac
ok "the trainer (uid 65532) wrote $VOLUME_DIR/v1.model ($owner; folder $(stat -c '%u:%g %a' "$VOLUME_DIR") after fsGroup)"

"$K" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: predictor, namespace: $NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: predictor}}
  template:
    metadata: {labels: {app: predictor}}
    spec:
      $POD_SECURITY
      containers:
      - name: predictor
        image: local/recommender-predictor:dev
        imagePullPolicy: IfNotPresent
        args: [--model, /models/v1.model]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
        resources: {limits: {memory: 256Mi}, requests: {cpu: 50m, memory: 64Mi}}
        $CONTAINER_SECURITY
        volumeMounts: [{name: models, mountPath: /models, readOnly: true}]
      volumes: [{name: models, persistentVolumeClaim: {claimName: models, readOnly: true}}]
---
apiVersion: v1
kind: Service
metadata: {name: predictor, namespace: $NS}
spec:
  selector: {app: predictor}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: nettools, namespace: $NS}
spec:
  terminationGracePeriodSeconds: 1
  $POD_SECURITY
  containers:
  - name: tools
    image: local/recommender-nettools:dev
    imagePullPolicy: IfNotPresent
    resources: {limits: {memory: 32Mi}}
    $CONTAINER_SECURITY
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: operator, namespace: $NS}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: $NS-operator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: operator, namespace: $NS}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: operator, namespace: $NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: operator}}
  template:
    metadata: {labels: {app: operator}}
    spec:
      serviceAccountName: operator
      $POD_SECURITY
      containers:
      - name: operator
        image: local/recommender-operator:dev
        imagePullPolicy: IfNotPresent
        args: [--namespace, $NS, --leader-elect, "false"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
        resources: {limits: {memory: 128Mi}, requests: {cpu: 50m, memory: 32Mi}}
        $CONTAINER_SECURITY
YAML
for d in predictor operator; do
  "$K" -n "$NS" wait "deployment/$d" --for=condition=Available --timeout=120s >/dev/null ||
    fail "deployment $d did not become available"
done
"$K" -n "$NS" wait pod/nettools --for=condition=Ready --timeout=60s >/dev/null || fail "pod nettools not Ready"
ok "predictor serves the model from the read-only claim; operator Ready (kube-rs in-cluster client via 10.96.0.1:443, TLS); nettools Ready"

# --- the containers as the host sees them --------------------------------------------------------
container_pid() { # app-label container -> host PID of the container's process
  local id
  id=$("$K" -n "$NS" get pods -l "app=$1" -o jsonpath="{.items[0].status.containerStatuses[?(@.name==\"$2\")].containerID}")
  ctr --address "$RECOMMENDER_CONTAINERD_ADDRESS" -n k8s.io tasks ls | awk -v id="${id#containerd://}" '$1 == id {print $2}'
}
pid=$(container_pid predictor predictor)
{ [ -n "$pid" ] && [ -d "/proc/$pid" ]; } || fail "no host process for the predictor container"
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
gid=$(awk '/^Gid:/ {print $2}' "/proc/$pid/status")
groups=$(awk '/^Groups:/ {$1=""; print $0}' "/proc/$pid/status")
capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
capbnd=$(awk '/^CapBnd:/ {print $2}' "/proc/$pid/status")
seccomp=$(awk '/^Seccomp:/ {print $2}' "/proc/$pid/status")
nnp=$(awk '/^NoNewPrivs:/ {print $2}' "/proc/$pid/status")
rootopts=$(awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo")
modelopts=$(awk '$5 == "/models" {print $6}' "/proc/$pid/mountinfo")
memcg=$(awk -F: '$2 == "memory" {print $3}' "/proc/$pid/cgroup")
limit=$(cat "/sys/fs/cgroup/memory$memcg/memory.limit_in_bytes")
[ "$uid/$gid" = 65532/65532 ] || fail "predictor runs as uid $uid gid $gid"
case " $groups " in *" 65532 "*) ;; *) fail "predictor lacks the fsGroup 65532 (groups:$groups)" ;; esac
[ "$capeff/$capbnd" = 0000000000000000/0000000000000000 ] || fail "predictor has capabilities: eff $capeff bnd $capbnd"
[ "$seccomp" = 2 ] || fail "predictor is not under a seccomp filter (Seccomp: $seccomp)"
[ "$nnp" = 1 ] || fail "predictor may gain privileges (NoNewPrivs: $nnp)"
case ",$rootopts," in *,ro,*) ;; *) fail "predictor's root filesystem is not read-only ($rootopts)" ;; esac
case ",$modelopts," in *,ro,*) ;; *) fail "predictor's /models is not read-only ($modelopts)" ;; esac
[ "$limit" = $((256 * 1024 * 1024)) ] || fail "predictor's memory cgroup limit is $limit, want 256Mi"
ok "predictor process $pid: uid/gid 65532, groups$groups, no capabilities, seccomp filter, no_new_privs, / ro, /models ro, memory limit 256Mi ($memcg)"

# --- Services, DNS, containment ------------------------------------------------------------------
# Before the host sends anything to a ClusterIP: the service range must be routed into recnode0.
contained() { ip -4 route get "$1" | grep -q " dev recnode0 " || fail "$1 is not routed into recnode0: $(ip -4 route get "$1")"; }
svc_ip=$("$K" -n "$NS" get svc predictor -o jsonpath='{.spec.clusterIP}')
contained "$svc_ip"
# kube-proxy programs a new Service within a second or two (minSyncPeriod 1s).
for _ in $(seq 1 30); do
  curl -sf --max-time 2 "http://$svc_ip/readyz" >"$WORK/svc.out" 2>/dev/null && break
  sleep 0.5
done
grep -q '"model_version":"v1"' "$WORK/svc.out" || fail "host -> ClusterIP $svc_ip:80 did not answer /readyz with v1"
contained 10.96.0.1
code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' --cacert "$RECOMMENDER_CA_FILE" https://10.96.0.1/readyz)
[ "$code" = 401 ] || [ "$code" = 200 ] || [ "$code" = 403 ] || fail "host -> https://10.96.0.1/readyz (TLS, CA verified): HTTP $code"
ok "host -> predictor ClusterIP $svc_ip:80: /readyz serves v1; host -> kubernetes 10.96.0.1:443: TLS verified, HTTP $code"

# A Service whose endpoint is outside: the host's traffic to it must not leave (RECOMMENDER-OUTPUT).
"$K" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: outside, namespace: $NS}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: outside, namespace: $NS, labels: {kubernetes.io/service-name: outside}}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints: [{addresses: ["192.0.2.1"], conditions: {ready: true}}]
YAML
out_ip=$("$K" -n "$NS" get svc outside -o jsonpath='{.spec.clusterIP}')
for _ in $(seq 1 50); do iptables-save -t nat | grep -q -- "-d $out_ip/32" && break; sleep 0.2; done
contained "$out_ip"
before=$(iptables -w 5 -L RECOMMENDER-OUTPUT -v -n -x | awk '$3 == "DROP" {n += $1} END {print n + 0}')
if curl -s --max-time 3 -o /dev/null "http://$out_ip/"; then fail "host reached Service $out_ip -> 192.0.2.1"; fi
after=$(iptables -w 5 -L RECOMMENDER-OUTPUT -v -n -x | awk '$3 == "DROP" {n += $1} END {print n + 0}')
[ "$after" -gt "$before" ] || fail "host -> $out_ip (endpoint 192.0.2.1) failed, but not by RECOMMENDER-OUTPUT"
ok "host -> Service $out_ip with endpoint 192.0.2.1: dropped by RECOMMENDER-OUTPUT"

tools() { "$K" -n "$NS" exec nettools -- "$@" </dev/null; }
answer=$(printf 'GET /readyz HTTP/1.0\r\n\r\n' | "$K" -n "$NS" exec -i nettools -- /usr/bin/nc -w 5 "predictor.$NS.svc.cluster.local" 80) ||
  fail "pod -> predictor.$NS.svc.cluster.local:80 failed"
grep -q '200 OK' <<<"$answer" || fail "pod -> Service: unexpected answer: $answer"
grep -q '"model_version":"v1"' <<<"$answer" || fail "pod -> Service: unexpected answer: $answer"
ok "pod nettools -> predictor.$NS.svc.cluster.local:80 (DNS + ClusterIP): 200, v1"

resolved=$(tools /usr/bin/getent hosts "predictor.$NS.svc.cluster.local" | awk '{print $1}')
[ "$resolved" = "$svc_ip" ] || fail "DNS: predictor.$NS.svc.cluster.local -> '$resolved', want $svc_ip"
resolved=$(tools /usr/bin/getent hosts kubernetes.default | awk '{print $1}')
[ "$resolved" = 10.96.0.1 ] || fail "DNS: kubernetes.default (search path) -> '$resolved', want 10.96.0.1"
for name in example.com www.debian.org. deb.debian.org; do
  if out=$(tools /usr/bin/getent hosts "$name" 2>&1); then fail "DNS resolved an outside name: $name -> $out"; fi
done
ok "DNS in a pod: predictor.$NS.svc.cluster.local -> $svc_ip, kubernetes.default -> 10.96.0.1; example.com, www.debian.org, deb.debian.org not resolved"

drops() { iptables -w 5 -L "$1" -v -n -x | awk '$3 == "DROP" {n += $1} END {print n + 0}'; }
gateway=$(ip -4 route show default | awk '{print $3; exit}')
eth_addr=$(ip -4 -o addr show scope global | awk -v n="$RECOMMENDER_NODE_IP/32" '$4 != n {sub("/.*", "", $4); print $4; exit}')
for target in "${gateway:-192.0.2.1}:80" "192.0.2.1:443" "10.96.255.254:80"; do
  before=$(drops RECOMMENDER-FORWARD)
  if tools /usr/bin/nc -z -w 3 "${target%:*}" "${target#*:}" 2>/dev/null; then fail "a pod reached $target"; fi
  after=$(drops RECOMMENDER-FORWARD)
  [ "$after" -gt "$before" ] || fail "pod -> $target failed, but not by the containment rule (drops $before -> $after)"
done
if [ -n "$eth_addr" ]; then
  before=$(drops RECOMMENDER-INPUT)
  if tools /usr/bin/nc -z -w 3 "$eth_addr" 22 2>/dev/null; then fail "a pod reached the host at $eth_addr:22"; fi
  [ "$(drops RECOMMENDER-INPUT)" -gt "$before" ] || fail "pod -> $eth_addr:22 failed, but not by the containment rule"
fi
ok "pod -> ${gateway:-192.0.2.1}:80, 192.0.2.1:443, unused ClusterIP 10.96.255.254:80 dropped by RECOMMENDER-FORWARD; pod -> host's ${eth_addr:-(none)}:22 dropped by RECOMMENDER-INPUT"
# CNI's ipMasq would add POSTROUTING rules for the pod addresses; the only MASQUERADE allowed is
# kube-proxy's for packets it marked (host -> ClusterIP, hairpin), which stay on this machine.
masq=$(iptables-save -t nat | grep -E -- '-j (MASQUERADE|SNAT)' | grep -v '^-A KUBE-POSTROUTING ' || true)
[ -z "$masq" ] || fail "unexpected source NAT rules: $masq"
masq=$(iptables-save -t nat | grep -E '^-A POSTROUTING .*-s 10\.244\.' || true)
[ -z "$masq" ] || fail "POSTROUTING rules for pod addresses (CNI ipMasq?): $masq"
first=$(iptables -w 5 -L FORWARD -n --line-numbers | awk 'NR == 3 {print $2}')
[ "$first" = RECOMMENDER-FORWARD ] || fail "RECOMMENDER-FORWARD is not the first rule of FORWARD ($first)"
ok "no masquerading of the pod range; RECOMMENDER-FORWARD is first in FORWARD"

# --- kubectl logs, exec, port-forward ------------------------------------------------------------
"$K" -n "$NS" logs deployment/predictor >"$WORK/predictor.log" || fail "kubectl logs predictor"
"$K" -n "$NS" logs job/train >"$WORK/train.log" || fail "kubectl logs train"
"$K" -n "$NS" logs deployment/operator >"$WORK/operator.log" || fail "kubectl logs operator"
for f in predictor train operator; do
  [ -s "$WORK/$f.log" ] || fail "kubectl logs $f is empty"
  if grep -q $'\x1b' "$WORK/$f.log"; then fail "kubectl logs $f has ANSI escape codes: $(head -n 2 "$WORK/$f.log" | cat -v)"; fi
done
ok "kubectl logs (via the kubelet's webhook-authorised API): plain text, e.g. '$(head -n 1 "$WORK/predictor.log" | cut -c1-100)'"

code=$(curl -sk --max-time 5 -o /dev/null -w '%{http_code}' "https://$RECOMMENDER_NODE_IP:${RECOMMENDER_KUBELET_PORT:-10250}/pods")
[ "$code" = 401 ] || fail "the kubelet API answered an anonymous request with HTTP $code (want 401)"
ok "kubelet API at $RECOMMENDER_NODE_IP:${RECOMMENDER_KUBELET_PORT:-10250}: anonymous request refused (401); logs/exec/port-forward go through the API server's client certificate and webhook authorisation"

version=$("$K" -n "$NS" exec deployment/predictor -- /usr/local/bin/recommender-predictor --version) || fail "kubectl exec"
case $version in "recommender-predictor "*) ;; *) fail "kubectl exec: unexpected output '$version'" ;; esac
ok "kubectl exec predictor -- recommender-predictor --version: $version"

pf_port=$((20000 + RANDOM % 20000))
"$K" -n "$NS" port-forward svc/predictor "$pf_port:80" >"$WORK/pf.log" 2>&1 &
PF_PID=$!
for _ in $(seq 1 50); do
  curl -sf --max-time 2 "http://127.0.0.1:$pf_port/readyz" >"$WORK/pf.out" 2>/dev/null && break
  sleep 0.2
done
grep -q '"model_version":"v1"' "$WORK/pf.out" 2>/dev/null || fail "kubectl port-forward: no answer on 127.0.0.1:$pf_port ($(cat "$WORK/pf.log"))"
kill "$PF_PID" 2>/dev/null || true
wait "$PF_PID" 2>/dev/null || true
PF_PID=""
ok "kubectl port-forward svc/predictor $pf_port:80: /readyz serves v1"

# --- the API server restarts under a running operator pod ----------------------------------------
restarts_before=$("$K" -n "$NS" get pods -l app=operator -o jsonpath='{.items[0].status.containerStatuses[0].restartCount}')
"$HERE/cluster.sh" restart kube-apiserver || fail "cluster.sh restart kube-apiserver"
sleep 3
"$K" -n "$NS" wait pods -l app=operator --for=condition=Ready --timeout=60s >/dev/null || fail "operator not Ready after the API server restart"
"$K" wait "node/$RECOMMENDER_NODE_NAME" --for=condition=Ready --timeout=60s >/dev/null || fail "node not Ready after the API server restart"
curl -sf --max-time 5 "http://$svc_ip/readyz" >/dev/null || fail "predictor ClusterIP unreachable after the API server restart"
restarts_after=$("$K" -n "$NS" get pods -l app=operator -o jsonpath='{.items[0].status.containerStatuses[0].restartCount}')
ok "API server restarted: operator pod Ready (restarts $restarts_before -> $restarts_after), node Ready, Services still answer"

if [ "$KEEP" = 1 ]; then
  say "OK (cluster kept: eval \"\$(tests/cluster/cluster.sh env)\")"
  exit 0
fi

# --- down leaves nothing; up works again ---------------------------------------------------------
# The network namespaces of our sandboxes, from containerd's container specs.
our_netns() {
  local id
  for id in $(ctr --address "$RECOMMENDER_CONTAINERD_ADDRESS" -n k8s.io containers ls -q); do
    ctr --address "$RECOMMENDER_CONTAINERD_ADDRESS" -n k8s.io containers info "$id" | python3 -c '
import json, sys
for n in (json.load(sys.stdin).get("Spec") or {}).get("linux", {}).get("namespaces") or []:
    if n.get("type") == "network" and "/netns/" in n.get("path", ""):
        print(n["path"])'
  done
}
mapfile -t pod_netns < <(our_netns)
[ ${#pod_netns[@]} -ge 4 ] || fail "expected the network namespaces of at least 4 pods, found ${#pod_netns[@]}"
check_clean() {
  local what=$1 left
  [ ! -d "/sys/class/net/$RECOMMENDER_BRIDGE" ] || fail "$what: bridge $RECOMMENDER_BRIDGE still exists"
  [ ! -d /sys/class/net/recnode0 ] || fail "$what: interface recnode0 still exists"
  ! ip -4 route show | grep -q "^$RECOMMENDER_SERVICE_CIDR" || fail "$what: a route for the service range is left"
  left=$({ iptables-save; ip6tables-save; } | grep -E '^:(KUBE-|CNI-|RECOMMENDER-)|-j (KUBE-|CNI-|RECOMMENDER-)' || true)
  [ -z "$left" ] || fail "$what: iptables chains left: $left"
  left=$(awk -v s="$RECOMMENDER_STATE/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo)
  [ -z "$left" ] || fail "$what: mounts left: $left"
  for c in containerd kubelet kube-proxy etcd kube-apiserver; do
    [ ! -s "$RECOMMENDER_STATE/pids/$c.pid" ] || fail "$what: $c still recorded as running"
  done
  for p in /proc/[0-9]*; do
    case $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null || true) in
      *"$RECOMMENDER_STATE/"*) fail "$what: a process of the cluster is left: $(tr '\0' ' ' <"$p/cmdline")" ;;
    esac
  done
  [ "$(sysctl -n net.ipv4.ip_forward)" = "$(awk '$1 == "net.ipv4.ip_forward" {print $2}' "$WORK/sysctl.before")" ] ||
    fail "$what: net.ipv4.ip_forward not restored"
  for d in /run/containerd /run/netns /var/lib/kubelet /var/log/containers /etc/cni; do
    case "$host_paths_before " in *" $d "*) ;; *) [ ! -e "$d" ] || fail "$what: $d was created and is left" ;; esac
  done
}
cp "$RECOMMENDER_STATE/sysctl.saved" "$WORK/sysctl.before"
[ $PG_STARTED = 0 ] || "$HERE/postgres.sh" down >/dev/null 2>&1
PG_STARTED=0
"$K" delete namespace "$NS" --wait=false >/dev/null
"$HERE/cluster.sh" down || fail "cluster.sh down"
CLUSTER_STARTED=0
check_clean "after down"
for n in "${pod_netns[@]}"; do [ ! -e "$n" ] || fail "network namespace $n of a pod is left"; done
ok "down: no bridge, interface, route, KUBE-/CNI-/RECOMMENDER- chain, mount, process, pod netns (${#pod_netns[@]}) or host folder left; sysctls restored"

t0=$SECONDS
"$HERE/cluster.sh" up || fail "cluster.sh up after down"
CLUSTER_STARTED=1
ok "up again after down in $((SECONDS - t0))s (node Ready, CoreDNS available)"
"$HERE/cluster.sh" down || fail "cluster.sh down (second)"
CLUSTER_STARTED=0
check_clean "after the second down"
ok "second down clean"
say "OK: all checks passed (first up ${UP_SECONDS}s)"
