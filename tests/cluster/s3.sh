#!/usr/bin/env bash
# A real S3-compatible server for the tests: SeaweedFS (`weed server`: master, volume server, filer
# and S3 gateway in one process), built from its published Go module and cached by version like the
# cluster's binaries. Signed requests only: anonymous access is refused because an identities file
# is given, with keys generated once per state folder.
#
#   s3.sh build         build `weed` (cached by version) and print its path
#   s3.sh up            start the server on 127.0.0.1 and create the bucket; when the node address
#                       (cluster.sh's NODE_IP) exists, forward NODE_IP:PORT to the S3 port so pods
#                       reach it (run `up` again after `cluster.sh up` to add the forward). A no-op
#                       when all of that already runs.
#   s3.sh stop          stop the server and the forward, keep the data (a store outage)
#   s3.sh start         start them again after `stop`, with the same data and keys
#   s3.sh down          stop everything and delete the state folder
#   s3.sh env           print `export KEY=value` lines (below)
#   s3.sh manifest NS   print a selectorless Service `s3` and its EndpointSlice for namespace NS,
#                       so pods reach the server as http://s3.NS.svc.cluster.local (port 80) and
#                       https://s3.NS.svc.cluster.local (port 443)
#   s3.sh status        exit 0 when the S3 gateway answers a signed request
#   s3.sh mb BUCKET     create BUCKET (as admin) if it does not exist: a test's own bucket
#   s3.sh get BUCKET/KEY FILE
#   s3.sh put FILE BUCKET/KEY
#                       read an object into FILE / write FILE over an object (as admin, a plain
#                       PutObject that overwrites): what a test does behind the store's back
#
# TLS: the gateway also serves HTTPS on PORT+8 with a certificate from a CA generated into
# $STATE/tls (ca.crt is what a client trusts, e.g. through the store's --store-ca-file), for
# localhost, 127.0.0.1, the node address and s3.$RECOMMENDER_S3_TLS_NAMESPACE.svc.cluster.local.
#
# Identities (SeaweedFS's s3.config file, $STATE/identities.json, mode 600):
#   admin        Admin: creates the bucket; for tests that create or delete buckets
#   recommender  Read, Write, List, Tagging on every bucket (what trainer, predictor and operator use);
#                not Admin, so it cannot create buckets
#   reader       Read and List only (a write is refused with AccessDenied: the read-only fault tests)
#
# `env` prints RECOMMENDER_S3_PORT, RECOMMENDER_S3_ENDPOINT (host side, http://127.0.0.1:PORT), RECOMMENDER_S3_POD_HOST,
# RECOMMENDER_S3_POD_PORT and RECOMMENDER_S3_POD_ENDPOINT (what pods use, NODE_IP:PORT, through the
# Service of `manifest`), RECOMMENDER_S3_TLS_ENDPOINT, RECOMMENDER_S3_POD_TLS_PORT and
# RECOMMENDER_S3_CA_FILE (HTTPS), RECOMMENDER_S3_REGION, RECOMMENDER_S3_BUCKET, the key pairs
# RECOMMENDER_S3_{,READONLY_,ADMIN_}ACCESS_KEY_ID / ..._SECRET_ACCESS_KEY, and
# RECOMMENDER_S3_STATE (so a test can `stop` and `start` this server).
#
# Network: every SeaweedFS listener (master, volume, filer, their gRPC ports and the S3 gateway's)
# is bound to 127.0.0.1. Pods reach the S3 ports only: `socat` listens on NODE_IP:PORT (and the
# HTTPS port) and forwards to 127.0.0.1, because SeaweedFS binds its S3 gateway's gRPC port (an
# unauthenticated identity-cache service) to the same address as the S3 port, so binding the
# gateway itself to the node address would expose that too (and the filer's gRPC IAM service is
# unauthenticated, as its own log warns). Telemetry is off; the Iceberg and Lance catalog ports are
# off; buckets are never created implicitly (`-s3.autoCreateBucket=false`, so a missing bucket
# stays missing). `weed server` also opens Unix sockets at fixed paths named by port
# (/tmp/seaweedfs-<service>-grpc-<port>.sock): two servers on the same ports would share them even
# in separate network namespaces, so give a second one another RECOMMENDER_S3_PORT.
#
# Environment: RECOMMENDER_S3_STATE (default "$RECOMMENDER_STATE-s3"), RECOMMENDER_S3_PORT (58333;
# SeaweedFS's own ports are PORT+1 to PORT+7 on 127.0.0.1, HTTPS PORT+8), RECOMMENDER_S3_BUCKET
# (recommender-models), RECOMMENDER_S3_REGION (us-east-1), RECOMMENDER_NODE_IP (10.250.0.1),
# RECOMMENDER_S3_TLS_NAMESPACE (e2e-s3-tls), SEAWEEDFS_VERSION (the Go module version below).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/lib.sh
source "$HERE/../lib.sh"
# A pseudo-version: the Go proxy lists no version of this module (`go list -m -versions` is
# empty; upstream's release tags are not Go semver tags). `weed version` says 30GB 4.53.
VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
STATE="${RECOMMENDER_S3_STATE:-$RECOMMENDER_STATE-s3}"
PORT="${RECOMMENDER_S3_PORT:-58333}"
BUCKET="${RECOMMENDER_S3_BUCKET:-recommender-models}"
REGION="${RECOMMENDER_S3_REGION:-us-east-1}"
NODE_IP="${RECOMMENDER_NODE_IP:-10.250.0.1}"
TLS_NAMESPACE="${RECOMMENDER_S3_TLS_NAMESPACE:-e2e-s3-tls}"
TLS_PORT=$((PORT + 8))
BIN_DIR="$RECOMMENDER_CACHE/bin/seaweedfs-$VERSION"
DATA="$STATE/data"
KEYS="$STATE/keys.env"
IDENTITIES="$STATE/identities.json"
PIDFILE="$STATE/weed.pid"
LOG="$STATE/weed.log"
TLS="$STATE/tls"
ENDPOINT="http://127.0.0.1:$PORT"
# How many connections the forward serves at once (socat forks one child per connection).
FORWARD_MAX=64

log() { printf '[s3] %s\n' "$*" >&2; }
die() { printf '[s3] ERROR: %s\n' "$*" >&2; exit 1; }

cmd_build() {
  if [ -x "$BIN_DIR/weed" ]; then
    echo "$BIN_DIR/weed"
    return
  fi
  command -v go >/dev/null || die "Go is needed to build SeaweedFS"
  local dir="$RECOMMENDER_CACHE/src/seaweedfs-$VERSION" modfile start=$SECONDS
  export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
  log "building SeaweedFS (github.com/seaweedfs/seaweedfs@$VERSION) into $BIN_DIR (about 5 minutes on 2 cores, once)"
  mkdir -p "$dir" "$BIN_DIR"
  modfile=$(cd "$dir" && go mod download -json "github.com/seaweedfs/seaweedfs@$VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -s "$modfile" ] || die "go mod download github.com/seaweedfs/seaweedfs@$VERSION gave no go.mod"
  # `go install module@version` refuses a module with replace directives, so a wrapper module
  # requires it and copies them.
  {
    echo "module local/seaweedfsbuild"
    echo
    grep -E '^go ' "$modfile"
    echo
    echo "require github.com/seaweedfs/seaweedfs $VERSION"
    echo
    sed -n '/^replace (/,/^)/p' "$modfile"
    grep -E '^replace [^(]' "$modfile" || true
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
GO
  (cd "$dir" && go mod tidy -e >"$dir/tidy.log" 2>&1) || { tail -20 "$dir/tidy.log" >&2; die "go mod tidy"; }
  (cd "$dir" && nice go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/weed.tmp" github.com/seaweedfs/seaweedfs/weed) ||
    die "go build weed"
  mv "$BIN_DIR/weed.tmp" "$BIN_DIR/weed"
  log "built $BIN_DIR/weed in $((SECONDS - start)) s"
  echo "$BIN_DIR/weed"
}

# Keys made once per state folder, so `stop`/`start` and a second `up` keep them.
make_keys() {
  [ -s "$KEYS" ] && [ -s "$IDENTITIES" ] && return
  mkdir -p "$STATE"
  local name access secret mask
  mask=$(umask)
  umask 077
  : >"$KEYS"
  for name in ADMIN RW READONLY; do
    access=$(openssl rand -hex 10 | tr 'a-f' 'A-F')
    secret=$(openssl rand -base64 30 | tr '+/' '-_')
    printf '%s_ACCESS=%s\n%s_SECRET=%s\n' "$name" "$access" "$name" "$secret" >>"$KEYS"
  done
  # shellcheck source=/dev/null
  source "$KEYS"
  cat >"$IDENTITIES" <<JSON
{"identities": [
  {"name": "admin", "credentials": [{"accessKey": "$ADMIN_ACCESS", "secretKey": "$ADMIN_SECRET"}],
   "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
  {"name": "recommender", "credentials": [{"accessKey": "$RW_ACCESS", "secretKey": "$RW_SECRET"}],
   "actions": ["Read", "Write", "List", "Tagging"]},
  {"name": "reader", "credentials": [{"accessKey": "$READONLY_ACCESS", "secretKey": "$READONLY_SECRET"}],
   "actions": ["Read", "List"]}
]}
JSON
  umask "$mask"
}

load_keys() {
  [ -s "$KEYS" ] || die "no keys in $STATE: run '$0 up' first"
  # shellcheck source=/dev/null
  source "$KEYS"
}

# The pid a pid file names, if that process still runs with this state folder in its command line
# (so a reused pid is never taken for ours).
alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  echo "$pid"
}
weed_pid() { alive "$PIDFILE" "-dir=$DATA"; }
forward_pid() { alive "$STATE/forward-$1.pid" "TCP-LISTEN:$1,bind=$NODE_IP"; }

node_ip_exists() { ip -4 -o addr show to "$NODE_IP/32" 2>/dev/null | grep -q .; }

port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# A signed request as an identity: `s3_curl ADMIN GET /` and so on; prints the HTTP status. The
# key pair goes to curl on stdin, not in its command line, where `ps` would show it.
s3_curl() {
  local who="$1" method="$2" path="$3" access secret
  access="${who}_ACCESS" secret="${who}_SECRET"
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$method" --aws-sigv4 "aws:amz:$REGION:s3" \
    --config - "$ENDPOINT$path" <<<"user = \"${!access}:${!secret}\"" || echo 000
}

# `s3_copy ADMIN GET /BUCKET/KEY FILE` (into FILE) or `s3_copy ADMIN PUT /BUCKET/KEY FILE` (from
# it); fails unless the server answers 200.
s3_copy() {
  local who="$1" method="$2" path="$3" file="$4" access secret status
  access="${who}_ACCESS" secret="${who}_SECRET"
  local body=(-o "$file")
  [ "$method" = GET ] || body=(-o /dev/null -T "$file")
  status=$(curl -s "${body[@]}" -w '%{http_code}' --max-time 30 -X "$method" \
    --aws-sigv4 "aws:amz:$REGION:s3" --config - "$ENDPOINT$path" \
    <<<"user = \"${!access}:${!secret}\"") || status=000
  [ "$status" = 200 ] || die "$method $path answered HTTP $status"
}

# A CA and a server certificate it signed, made once per state folder (P-256, the CA and
# end-entity extensions webpki requires).
make_tls() {
  [ -s "$TLS/server.crt" ] && [ -s "$TLS/ca.crt" ] && return
  mkdir -p "$TLS"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 -new "${ec[@]}" -keyout "$TLS/ca.key" -out "$TLS/ca.crt" -days 3650 \
    -subj "/CN=recommender test S3 CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || die "openssl could not make the test CA"
  openssl req -new "${ec[@]}" -keyout "$TLS/server.key" -out "$TLS/server.csr" -subj "/CN=s3" 2>/dev/null ||
    die "openssl could not make the server key"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,DNS:s3.$TLS_NAMESPACE.svc.cluster.local,DNS:s3.$TLS_NAMESPACE.svc" \
    >"$TLS/server.ext"
  openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" -CAcreateserial \
    -out "$TLS/server.crt" -days 825 -extfile "$TLS/server.ext" 2>/dev/null || die "openssl could not sign the server certificate"
  chmod 600 "$TLS/server.key" "$TLS/ca.key"
}

start_weed() {
  local bin i p
  if weed_pid >/dev/null; then
    log "already running on $ENDPOINT"
    return 0
  fi
  bin=$(cmd_build)
  for ((p = PORT; p <= PORT + 8; p++)); do
    port_busy 127.0.0.1 "$p" && die "port 127.0.0.1:$p is already in use (set RECOMMENDER_S3_PORT; SeaweedFS uses PORT to PORT+8)"
  done
  mkdir -p "$DATA"
  # Every bucket is a SeaweedFS collection, which grows its own volumes (seven at a time for
  # replication 000) and never shares them: the suite makes a bucket per test namespace, so the
  # volume server takes many. Volumes are not preallocated; an unused one costs two small files.
  # Detached from this shell (setsid, files for stdio) so a caller waiting on this script's output
  # does not wait for the server; 8>&- 9>&-: it holds neither this script's lock nor the real node's.
  setsid "$bin" -logtostderr=true server -dir="$DATA" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port=$((PORT + 1)) -master.port.grpc=$((PORT + 2)) \
    -volume.port=$((PORT + 3)) -volume.port.grpc=$((PORT + 4)) \
    -filer -filer.port=$((PORT + 5)) -filer.port.grpc=$((PORT + 6)) \
    -filer.localSocket="$STATE/filer.sock" \
    -s3 -s3.port="$PORT" -s3.port.grpc=$((PORT + 7)) -s3.ip.bind=127.0.0.1 \
    -s3.localSocket="$STATE/s3.sock" -s3.config="$IDENTITIES" \
    -s3.port.https="$TLS_PORT" -s3.cert.file="$TLS/server.crt" -s3.key.file="$TLS/server.key" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.autoCreateBucket=false \
    -master.telemetry=false -master.volumeSizeLimitMB=256 -volume.max=2000 \
    </dev/null >>"$LOG" 2>&1 8>&- 9>&- &
  echo $! >"$PIDFILE"
  for ((i = 0; i < 300; i++)); do
    if [ "$(s3_curl ADMIN GET /)" = 200 ]; then
      log "S3 gateway ready on $ENDPOINT (data $DATA, log $LOG)"
      return 0
    fi
    weed_pid >/dev/null || break
    sleep 0.2
  done
  tail -n 30 "$LOG" >&2 || true
  stop_pid "$(weed_pid || true)" weed 0
  die "SeaweedFS did not answer a signed request on $ENDPOINT"
}

# Pods reach the S3 ports, and nothing else of SeaweedFS, through these forwards (see the top).
start_forwards() {
  node_ip_exists || return 0
  if ! command -v socat >/dev/null; then
    [ "$(id -u)" = 0 ] || die "socat is missing and this is not root: apt-get install socat"
    log "installing Debian's socat"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends socat </dev/null >/dev/null ||
      die "apt-get install socat failed"
  fi
  local port i
  for port in "$PORT" "$TLS_PORT"; do
    forward_pid "$port" >/dev/null && continue
    port_busy "$NODE_IP" "$port" && die "port $NODE_IP:$port is already in use"
    setsid socat "TCP-LISTEN:$port,bind=$NODE_IP,reuseaddr,fork,max-children=$FORWARD_MAX" \
      "TCP:127.0.0.1:$port" </dev/null >>"$STATE/forward.log" 2>&1 8>&- 9>&- &
    echo $! >"$STATE/forward-$port.pid"
    for ((i = 0; i < 50; i++)); do
      port_busy "$NODE_IP" "$port" && break
      sleep 0.1
    done
    port_busy "$NODE_IP" "$port" || die "socat did not listen on $NODE_IP:$port (log $STATE/forward.log)"
  done
  log "pods reach it on $NODE_IP:$PORT (HTTPS $NODE_IP:$TLS_PORT), forwarded to 127.0.0.1"
}

# SIGTERM, then SIGKILL after GRACE seconds: after SIGTERM `weed server` keeps running for 15 to
# 25 s (its volume growth retries), so waiting it out would make every outage test that long.
stop_pid() {
  local pid="$1" what="$2" grace="$3" i
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  die "$what (pid $pid) is still running after SIGKILL"
}

stop_all() {
  local port
  for port in "$PORT" "$TLS_PORT"; do
    stop_pid "$(forward_pid "$port" || true)" socat 2
    rm -f "$STATE/forward-$port.pid"
  done
  stop_pid "$(weed_pid || true)" weed "${1:-5}"
  rm -f "$PIDFILE"
  # `weed server` puts its gRPC sockets at fixed paths named by port (command/server.go), which a
  # SIGKILL leaves behind; two servers on the same ports, even in two network namespaces, would
  # share them.
  rm -f "/tmp/seaweedfs-master-grpc-$((PORT + 2)).sock" "/tmp/seaweedfs-volume-grpc-$((PORT + 4)).sock" \
    "/tmp/seaweedfs-filer-grpc-$((PORT + 6)).sock" "/tmp/seaweedfs-s3-grpc-$((PORT + 7)).sock"
}

create_bucket() {
  local bucket="${1:-$BUCKET}" status
  status=$(s3_curl ADMIN HEAD "/$bucket")
  [ "$status" = 200 ] && return 0
  status=$(s3_curl ADMIN PUT "/$bucket")
  [ "$status" = 200 ] || die "creating bucket $bucket answered HTTP $status"
  log "created bucket $bucket"
}

cmd_up() {
  make_keys
  load_keys
  make_tls
  start_weed
  create_bucket
  start_forwards
}

cmd_env() {
  load_keys
  echo "export RECOMMENDER_S3_PORT=$PORT"
  echo "export RECOMMENDER_S3_ENDPOINT=$ENDPOINT"
  echo "export RECOMMENDER_S3_POD_HOST=$NODE_IP"
  echo "export RECOMMENDER_S3_POD_PORT=$PORT"
  echo "export RECOMMENDER_S3_POD_ENDPOINT=http://$NODE_IP:$PORT"
  echo "export RECOMMENDER_S3_TLS_ENDPOINT=https://127.0.0.1:$TLS_PORT"
  echo "export RECOMMENDER_S3_POD_TLS_PORT=$TLS_PORT"
  echo "export RECOMMENDER_S3_CA_FILE=$TLS/ca.crt"
  echo "export RECOMMENDER_S3_REGION=$REGION"
  echo "export RECOMMENDER_S3_BUCKET=$BUCKET"
  echo "export RECOMMENDER_S3_ACCESS_KEY_ID=$RW_ACCESS"
  echo "export RECOMMENDER_S3_SECRET_ACCESS_KEY=$RW_SECRET"
  echo "export RECOMMENDER_S3_READONLY_ACCESS_KEY_ID=$READONLY_ACCESS"
  echo "export RECOMMENDER_S3_READONLY_SECRET_ACCESS_KEY=$READONLY_SECRET"
  echo "export RECOMMENDER_S3_ADMIN_ACCESS_KEY_ID=$ADMIN_ACCESS"
  echo "export RECOMMENDER_S3_ADMIN_SECRET_ACCESS_KEY=$ADMIN_SECRET"
  echo "export RECOMMENDER_S3_STATE=$STATE"
}

# An external service the way a cluster reaches one, as the tests reach PostgreSQL.
cmd_manifest() {
  local ns="${1:-}"
  [ -n "$ns" ] || die "usage: $0 manifest NAMESPACE"
  cat <<YAML
apiVersion: v1
kind: Service
metadata: {name: s3, namespace: $ns}
spec:
  ports:
  - {name: s3, port: 80, protocol: TCP}
  - {name: s3-tls, port: 443, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: s3-host
  namespace: $ns
  labels: {kubernetes.io/service-name: s3}
addressType: IPv4
ports: [{name: s3, port: $PORT, protocol: TCP}, {name: s3-tls, port: $TLS_PORT, protocol: TCP}]
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
YAML
}

# One command at a time per state folder (two `up`s at once would race for the ports).
locked() {
  mkdir -p "$(dirname "$STATE")"
  exec 8>"$STATE.lock"
  flock 8
}

case "${1:-}" in
  build) cmd_build ;;
  up) locked && cmd_up ;;
  start)
    locked
    if [ ! -s "$KEYS" ] || [ ! -d "$DATA" ]; then die "no server state in $STATE: run '$0 up' first"; fi
    load_keys
    start_weed
    start_forwards
    ;;
  stop) locked && stop_all && log "stopped (data kept in $STATE)" ;;
  down)
    locked
    stop_all 25
    rm -rf "$STATE"
    log "stopped and removed $STATE"
    ;;
  env) cmd_env ;;
  manifest) cmd_manifest "${2:-}" ;;
  status) weed_pid >/dev/null && load_keys && [ "$(s3_curl RW GET "/$BUCKET?list-type=2&max-keys=1")" = 200 ] ;;
  mb)
    [ -n "${2:-}" ] || die "usage: $0 mb BUCKET"
    load_keys && create_bucket "$2"
    ;;
  get)
    [ -n "${3:-}" ] || die "usage: $0 get BUCKET/KEY FILE"
    load_keys && s3_copy ADMIN GET "/$2" "$3"
    ;;
  put)
    [ -n "${3:-}" ] || die "usage: $0 put FILE BUCKET/KEY"
    load_keys && s3_copy ADMIN PUT "/$3" "$2"
    ;;
  *)
    echo "usage: $0 build|up|start|stop|down|env|manifest NAMESPACE|status|mb BUCKET|get BUCKET/KEY FILE|put FILE BUCKET/KEY" >&2
    exit 2
    ;;
esac
