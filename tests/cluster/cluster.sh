#!/usr/bin/env bash
# A throw-away Kubernetes control plane on loopback: etcd, kube-apiserver (TLS + RBAC),
# kube-controller-manager and kube-scheduler, built once by build.sh and cached by version.
#
#   cluster.sh up                  build if needed, start everything, wait for /readyz
#   cluster.sh down                stop exactly the processes `up` started (by recorded PID)
#   cluster.sh env                 print `export KEY=value` lines (KUBECONFIG, ports, paths)
#   cluster.sh status              show which components are running
#   cluster.sh stop|start|restart COMPONENT
#                                  one of etcd, kube-apiserver, kube-controller-manager,
#                                  kube-scheduler, node-agent (e.g. to restart the API server
#                                  under a test)
#
# With RECOMMENDER_BIN_DIR set (the folder of the project's binaries), `up` also starts the test
# node agent (tests/src/bin/node-agent.rs) as Node ${RECOMMENDER_NODE_NAME:-local-node}; its binary
# is RECOMMENDER_NODE_AGENT, else $RECOMMENDER_BIN_DIR/node-agent, else target/debug/node-agent.
#
# Environment: RECOMMENDER_STATE (state dir, default /tmp/recommender-cluster),
# RECOMMENDER_ETCD_PORT (52379), RECOMMENDER_ETCD_PEER_PORT (52380),
# RECOMMENDER_APISERVER_PORT (56443), RECOMMENDER_KCM_PORT (50257),
# RECOMMENDER_SCHEDULER_PORT (50259), RECOMMENDER_KEEP_DATA=1 keeps etcd data across `up`,
# RECOMMENDER_READY_TIMEOUT (seconds, 120). Versions and the cache location as in build.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${RECOMMENDER_STATE:-/tmp/recommender-cluster}"
ETCD_PORT="${RECOMMENDER_ETCD_PORT:-52379}"
ETCD_PEER_PORT="${RECOMMENDER_ETCD_PEER_PORT:-52380}"
API_PORT="${RECOMMENDER_APISERVER_PORT:-56443}"
KCM_PORT="${RECOMMENDER_KCM_PORT:-50257}"
SCHED_PORT="${RECOMMENDER_SCHEDULER_PORT:-50259}"
READY_TIMEOUT="${RECOMMENDER_READY_TIMEOUT:-120}"
SERVICE_CIDR="10.96.0.0/16"
NODE_NAME="${RECOMMENDER_NODE_NAME:-local-node}"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
# Start order; `down` stops in reverse, the node agent first.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler node-agent)

PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
KUBECONFIG_PATH="$STATE/kubeconfig"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

bin_dir() {
  # build.sh prints the cache folder; it is a no-op when everything is already built.
  "$HERE/build.sh" </dev/null
}

# --- certificates -------------------------------------------------------------------------------

gen_client_cert() { # name CN O
  local name=$1 cn=$2 org=$3 subj
  [ -s "$PKI/$name.crt" ] && return
  subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org/CN=$cn"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" \
    -out "$PKI/$name.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

gen_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [ ! -s "$PKI/ca.crt" ]; then
    log "generating a throw-away CA and certificates in $PKI"
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -days 3650 -sha256 \
      -subj "/CN=recommender-local-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI/ca.crt" 2>/dev/null
  fi
  if [ ! -s "$PKI/apiserver.crt" ]; then
    openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/apiserver.key" -subj "/CN=kube-apiserver" \
      -out "$PKI/apiserver.csr" 2>/dev/null
    cat >"$PKI/apiserver.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
      -days 3650 -sha256 -extfile "$PKI/apiserver.ext" -out "$PKI/apiserver.crt" 2>/dev/null
    rm -f "$PKI/apiserver.csr" "$PKI/apiserver.ext"
  fi
  if [ ! -s "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  # The bootstrap RBAC policy already binds these user names to the roles each component needs.
  gen_client_cert admin kubernetes-admin system:masters
  gen_client_cert controller-manager system:kube-controller-manager ""
  gen_client_cert scheduler system:kube-scheduler ""
}

# The audit log shows who did what: the e2e tests read it to prove that the operator installed by
# the chart acted as its own ServiceAccount. Only ServiceAccounts outside kube-system are logged,
# which leaves out the control plane's own controllers and the admin user of the tests.
write_audit_policy() {
  cat >"$STATE/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
EOF
}

write_kubeconfig() { # path cert-name user
  local path=$1 name=$2 user=$3
  cat >"$path.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    client-certificate: $PKI/$name.crt
    client-key: $PKI/$name.key
contexts:
- name: local
  context:
    cluster: local
    user: $user
current-context: local
EOF
  mv "$path.tmp" "$path"
}

# --- processes ----------------------------------------------------------------------------------

pid_of() { # component -> pid if the recorded process is alive and still runs our binary
  local c=$1 f="$PIDS/$1.pid" pid exe
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ -d "/proc/$pid" ] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  case "$exe" in */"$c" | */"$c (deleted)") echo "$pid" ;; *) return 1 ;; esac
}

component_args() { # component -> argv (one per line)
  case $1 in
    etcd)
      printf '%s\n' --name=recommender --data-dir="$STATE/etcd-data" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="recommender=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync=true --log-level=warn \
        --quota-backend-bytes=2147483648
      ;;
    kube-apiserver)
      printf '%s\n' --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --service-account-issuer="https://kubernetes.default.svc.cluster.local" \
        --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC \
        --allow-privileged=true --endpoint-reconciler-type=none \
        --audit-policy-file="$STATE/audit-policy.yaml" --audit-log-path="$LOGS/audit.log" \
        --audit-log-format=json --audit-log-maxsize=100 --audit-log-maxbackup=1 \
        --cert-dir="$STATE/apiserver-certs" --v=1
      ;;
    kube-controller-manager)
      printf '%s\n' --kubeconfig="$STATE/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$STATE/kcm-certs" \
        --leader-elect=false --service-account-private-key-file="$PKI/sa.key" \
        --root-ca-file="$PKI/ca.crt" --cluster-signing-cert-file="$PKI/ca.crt" \
        --cluster-signing-key-file="$PKI/ca.key" --use-service-account-credentials=true \
        --concurrent-job-syncs=10 --concurrent-deployment-syncs=10 --v=1
      ;;
    kube-scheduler)
      printf '%s\n' --kubeconfig="$STATE/scheduler.kubeconfig" \
        --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
        --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --cert-dir="$STATE/scheduler-certs" \
        --leader-elect=false --v=1
      ;;
    node-agent)
      printf '%s\n' --kubeconfig="$KUBECONFIG_PATH" --bin-dir="${RECOMMENDER_BIN_DIR:?}" \
        --state-dir="$STATE/node" --node-name="$NODE_NAME"
      ;;
    *) die "unknown component '$1' (one of: ${COMPONENTS[*]})" ;;
  esac
}

node_agent_bin() {
  local candidate
  for candidate in "${RECOMMENDER_NODE_AGENT:-}" "${RECOMMENDER_BIN_DIR:-}/node-agent" \
    "$REPO_ROOT/target/debug/node-agent" "$REPO_ROOT/target/release/node-agent"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && [ -f "$candidate" ]; then
      echo "$candidate"
      return
    fi
  done
  return 1
}

port_of() {
  case $1 in
    etcd) echo "$ETCD_PORT" ;; kube-apiserver) echo "$API_PORT" ;;
    kube-controller-manager) echo "$KCM_PORT" ;; kube-scheduler) echo "$SCHED_PORT" ;;
    node-agent) echo 0 ;;
  esac
}

fail_with_log() { # component reason
  log "$1: $2"
  if [ -s "$LOGS/$1.log" ]; then
    log "last lines of $LOGS/$1.log:"
    tail -n 25 "$LOGS/$1.log" >&2
  fi
  # A failed `up` leaves nothing half-started behind.
  if [ "${UP_IN_PROGRESS:-0}" = 1 ]; then
    UP_IN_PROGRESS=0
    log "stopping the cluster's components"
    cmd_down
  fi
  exit 1
}

port_busy() { # port -> 0 if something listens on 127.0.0.1:port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_component() {
  local c=$1 bins=$2 pid args
  if pid=$(pid_of "$c"); then
    log "$c already running (pid $pid)"
    return
  fi
  if [ "$c" != node-agent ] && port_busy "$(port_of "$c")"; then
    fail_with_log "$c" "port 127.0.0.1:$(port_of "$c") is already in use by another process (set RECOMMENDER_*_PORT to move it)"
  fi
  mapfile -t args < <(component_args "$c")
  mkdir -p "$LOGS" "$PIDS"
  [ "$c" != kube-apiserver ] || write_audit_policy
  local program="$bins/$c"
  if [ "$c" = node-agent ]; then
    program=$(node_agent_bin) || fail_with_log "$c" "no node-agent binary: cargo build -p recommender-e2e --bin node-agent (or set RECOMMENDER_NODE_AGENT)"
  fi
  # setsid: the components outlive this script and do not get the caller's terminal signals.
  setsid "$program" "${args[@]}" >>"$LOGS/$c.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PIDS/$c.pid"
  sleep 0.3
  [ -d "/proc/$pid" ] || fail_with_log "$c" "exited right after start"
  log "started $c (pid $pid, log $LOGS/$c.log)"
}

stop_component() {
  local c=$1 pid i
  if ! pid=$(pid_of "$c"); then
    rm -f "$PIDS/$c.pid"
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 25); do
    [ -d "/proc/$pid" ] || break
    sleep 0.2
  done
  if [ -d "/proc/$pid" ]; then
    log "$c (pid $pid) still running 5s after SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Reap if it is our child (it is not when `down` runs in another shell; init reaps it then).
  wait "$pid" 2>/dev/null || true
  rm -f "$PIDS/$c.pid"
  log "stopped $c (pid $pid)"
}

wait_until() { # component description command...
  local c=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    pid_of "$c" >/dev/null || fail_with_log "$c" "exited while waiting for $what"
    [ $SECONDS -lt $deadline ] || fail_with_log "$c" "not $what after ${READY_TIMEOUT}s"
    sleep 0.3
  done
}

etcd_healthy() { curl -sf "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
apiserver_ready() {
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" | grep -q '^ok$'
}
node_ready() {
  "$(cat "$STATE/bin-dir")/kubectl" --kubeconfig "$KUBECONFIG_PATH" get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' | grep -q True
}
component_healthy() { curl -sfk "https://127.0.0.1:$(port_of "$1")/healthz" | grep -q '^ok$'; }

start_one() {
  local c=$1 bins=$2
  start_component "$c" "$bins"
  case $c in
    etcd) wait_until etcd "healthy" etcd_healthy ;;
    kube-apiserver) wait_until kube-apiserver "ready (/readyz)" apiserver_ready ;;
    node-agent) wait_until node-agent "Ready as Node $NODE_NAME" node_ready ;;
    *) wait_until "$c" "healthy (/healthz)" component_healthy "$c" ;;
  esac
}

# --- commands -----------------------------------------------------------------------------------

cmd_up() {
  local bins c
  command -v openssl >/dev/null || die "openssl is required"
  command -v curl >/dev/null || die "curl is required"
  bins=$(bin_dir) || die "building the control-plane binaries failed (see the output above)"
  for c in "${COMPONENTS[@]:0:4}"; do [ -x "$bins/$c" ] || die "$bins/$c is missing after build"; done
  mkdir -p "$STATE" "$LOGS" "$PIDS"
  echo "$bins" >"$STATE/bin-dir"
  # A fresh cluster gets fresh node folders too (claims, pod logs), unless asked to keep them.
  if ! pid_of etcd >/dev/null && [ "${RECOMMENDER_KEEP_DATA:-0}" != 1 ]; then
    rm -rf "$STATE/etcd-data"
    pid_of node-agent >/dev/null || rm -rf "$STATE/node"
  fi
  gen_pki
  write_kubeconfig "$KUBECONFIG_PATH" admin kubernetes-admin
  write_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  write_kubeconfig "$STATE/scheduler.kubeconfig" scheduler system:kube-scheduler
  UP_IN_PROGRESS=1
  for c in "${COMPONENTS[@]:0:4}"; do start_one "$c" "$bins"; done
  if [ -n "${RECOMMENDER_BIN_DIR:-}" ]; then
    start_one node-agent "$bins"
  else
    log "RECOMMENDER_BIN_DIR is not set: no node agent, pods will stay Pending"
  fi
  UP_IN_PROGRESS=0
  log "control plane ready: export KUBECONFIG=$KUBECONFIG_PATH"
}

cmd_down() {
  local i
  # Reverse order: controllers first so they do not log errors about a vanished API server.
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_component "${COMPONENTS[$i]}"; done
}

cmd_env() {
  local bins=""
  [ -s "$STATE/bin-dir" ] && bins=$(cat "$STATE/bin-dir")
  echo "export KUBECONFIG=$KUBECONFIG_PATH"
  echo "export RECOMMENDER_STATE=$STATE"
  echo "export RECOMMENDER_K8S_BIN=$bins"
  echo "export RECOMMENDER_APISERVER_URL=https://127.0.0.1:$API_PORT"
  echo "export RECOMMENDER_CA_FILE=$PKI/ca.crt"
  echo "export RECOMMENDER_NODE_NAME=$NODE_NAME"
  echo "export RECOMMENDER_NODE_STATE=$STATE/node"
  echo "export RECOMMENDER_AUDIT_LOG=$LOGS/audit.log"
}

cmd_status() {
  local c pid rc=0
  for c in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$c"); then
      printf '%-24s running (pid %s)\n' "$c" "$pid"
    else
      printf '%-24s stopped\n' "$c"
      [ "$c" = node-agent ] || rc=1
    fi
  done
  if apiserver_ready; then echo "apiserver /readyz: ok"; else echo "apiserver /readyz: not ready"; rc=1; fi
  return $rc
}

valid_component() {
  local c
  for c in "${COMPONENTS[@]}"; do [ "$c" = "${1:-}" ] && return; done
  die "unknown component '${1:-}' (one of: ${COMPONENTS[*]})"
}

case "${1:-}" in
  stop | start | restart) valid_component "${2:-}" ;;
esac
case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  stop) stop_component "$2" ;;
  start) start_one "$2" "$(bin_dir)" ;;
  restart) stop_component "${2:?component}" && start_one "$2" "$(bin_dir)" ;;
  *)
    echo "usage: $0 up|down|env|status|stop COMPONENT|start COMPONENT|restart COMPONENT" >&2
    exit 2
    ;;
esac
