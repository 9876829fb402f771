#!/usr/bin/env bash
# A throw-away Kubernetes cluster on this machine: etcd, kube-apiserver (TLS + RBAC),
# kube-controller-manager and kube-scheduler, built once by build.sh and cached by version, plus
# one node. The node is either
#   real   containerd, the CNI bridge, kubelet, kube-proxy and CoreDNS: pods are real containers
#          in network namespaces on a bridge of this machine, contained (see "Network" below).
#          Needs root. The default.
#   none   no node: pods stay Pending (RECOMMENDER_NODE=none).
#
#   cluster.sh up                  build if needed, start everything, wait until ready (real node:
#                                  node Ready and CoreDNS available)
#   cluster.sh down                stop exactly what `up` started (recorded PIDs); real node: also
#                                  its containers, mounts, bridge, iptables rules, interface
#   cluster.sh env                 print `export KEY=value` lines (KUBECONFIG, ports, addresses)
#   cluster.sh status              show which components are running
#   cluster.sh stop|start|restart COMPONENT
#                                  one of etcd, kube-apiserver, kube-controller-manager,
#                                  kube-scheduler, containerd, kubelet, kube-proxy
#                                  (e.g. to restart the API server under a test)
#
# Network of the real node (one per machine):
#   - node address NODE_IP (10.250.0.1/32) on `recnode0`, an ifb interface this script creates:
#     ifb devices drop whatever is routed into them, so the service range is routed there
#     (`10.96.0.0/16 dev recnode0 src NODE_IP`): a ClusterIP kube-proxy does not translate goes
#     nowhere, yet local connect() works and kube-proxy's DNAT applies.
#   - the API server listens on NODE_IP; 127.0.0.1:PORT reaches it through a nat OUTPUT DNAT rule.
#     The `kubernetes` Service points at NODE_IP:PORT. kubelet listens on NODE_IP too.
#   - pods on bridge `recbr0`, 10.244.0.0/22, no masquerade (CNI ipMasq false); iptables chains
#     RECOMMENDER-FORWARD (nothing forwarded between the bridge and any other interface),
#     RECOMMENDER-INPUT (pods reach only NODE_IP on the host) and RECOMMENDER-OUTPUT (traffic
#     kube-proxy redirected may only go to pods or NODE_IP), each first in its built-in chain;
#     IPv6 forwarding to and from the bridge is dropped too.
#   - CoreDNS serves cluster.local (and the reverse zones of the pod and service ranges) only,
#     forwards nothing; NodePorts only on NODE_IP.
#
# Environment: RECOMMENDER_STATE (state dir, default /tmp/recommender-cluster),
# RECOMMENDER_ETCD_PORT (52379), RECOMMENDER_ETCD_PEER_PORT (52380),
# RECOMMENDER_APISERVER_PORT (56443), RECOMMENDER_KCM_PORT (50257),
# RECOMMENDER_SCHEDULER_PORT (50259), RECOMMENDER_KUBELET_PORT (10250, on NODE_IP),
# RECOMMENDER_KUBELET_HEALTHZ_PORT (10248), RECOMMENDER_PROXY_HEALTHZ_PORT (10256),
# RECOMMENDER_PROXY_METRICS_PORT (10249), RECOMMENDER_NODE_IP (10.250.0.1),
# RECOMMENDER_NODE_NAME (local-node), RECOMMENDER_KEEP_DATA=1 keeps etcd data across `up`,
# RECOMMENDER_READY_TIMEOUT (seconds, 120). Versions and the cache location as in build.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${RECOMMENDER_STATE:-/tmp/recommender-cluster}"
ETCD_PORT="${RECOMMENDER_ETCD_PORT:-52379}"
ETCD_PEER_PORT="${RECOMMENDER_ETCD_PEER_PORT:-52380}"
API_PORT="${RECOMMENDER_APISERVER_PORT:-56443}"
KCM_PORT="${RECOMMENDER_KCM_PORT:-50257}"
SCHED_PORT="${RECOMMENDER_SCHEDULER_PORT:-50259}"
KUBELET_PORT="${RECOMMENDER_KUBELET_PORT:-10250}"
KUBELET_HEALTHZ_PORT="${RECOMMENDER_KUBELET_HEALTHZ_PORT:-10248}"
PROXY_HEALTHZ_PORT="${RECOMMENDER_PROXY_HEALTHZ_PORT:-10256}"
PROXY_METRICS_PORT="${RECOMMENDER_PROXY_METRICS_PORT:-10249}"
READY_TIMEOUT="${RECOMMENDER_READY_TIMEOUT:-120}"
SERVICE_CIDR="10.96.0.0/16"
KUBERNETES_SERVICE_IP="10.96.0.1"
DNS_IP="10.96.0.10"
CLUSTER_CIDR="10.244.0.0/16"
NODE_POD_SUBNET="10.244.0.0/22"
NODE_IP="${RECOMMENDER_NODE_IP:-10.250.0.1}"
NODE_IFACE=recnode0
BRIDGE=recbr0
NODE_NAME="${RECOMMENDER_NODE_NAME:-local-node}"
MAX_PODS=500
CONTROL_PLANE=(etcd kube-apiserver kube-controller-manager kube-scheduler)
REAL_NODE=(containerd kubelet kube-proxy)
ALL_COMPONENTS=("${CONTROL_PLANE[@]}" "${REAL_NODE[@]}")
# iptables chains of this script, and prefixes of the chains kubelet, kube-proxy and the CNI
# plugins add (removed by `down`).
OUR_CHAINS_RE='^(KUBE-|CNI-|RECOMMENDER-)'

PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
KUBECONFIG_PATH="$STATE/kubeconfig"
CONTAINERD_SOCK="$STATE/containerd.sock"
VOLUMES="$STATE/volumes"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

bin_dir() {
  # build.sh prints the cache folder; it is a no-op when everything is already built.
  "$HERE/build.sh" </dev/null
}

# The node mode of the cluster in STATE: what `up` recorded while it runs, else the environment.
mode_from_env() { echo "${RECOMMENDER_NODE:-real}"; }
recorded_mode() { cat "$STATE/node-mode" 2>/dev/null || true; }
MODE="$(recorded_mode)"
[ -n "$MODE" ] || MODE="$(mode_from_env)"
case $MODE in real | none) ;; *) die "RECOMMENDER_NODE must be real or none (got '$MODE')" ;; esac

kubectl_() { "$(cat "$STATE/bin-dir")/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# --- certificates -------------------------------------------------------------------------------

sign() { # name subject ext-lines...
  local name=$1 subj=$2
  shift 2
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" \
    -out "$PKI/$name.csr" 2>/dev/null
  printf '%s\n' "$@" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

gen_client_cert() { # name CN O
  local name=$1 cn=$2 org=$3 subj
  [ -s "$PKI/$name.crt" ] && return
  subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org/CN=$cn"
  sign "$name" "$subj" "extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature,keyEncipherment"
}

has_san() { openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | grep -q "IP Address:$2\(,\|$\)"; }

gen_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [ ! -s "$PKI/ca.crt" ]; then
    log "generating a throw-away CA and certificates in $PKI"
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -days 3650 -sha256 \
      -subj "/CN=recommender-local-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI/ca.crt" 2>/dev/null
  fi
  # The serving certificate covers loopback, the node address and the `kubernetes` Service.
  if [ ! -s "$PKI/apiserver.crt" ] || ! has_san "$PKI/apiserver.crt" "$NODE_IP"; then
    sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  fi
  if [ ! -s "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  # The bootstrap RBAC policy already binds these user names to the roles each component needs.
  gen_client_cert admin kubernetes-admin system:masters
  gen_client_cert controller-manager system:kube-controller-manager ""
  gen_client_cert scheduler system:kube-scheduler ""
  if [ "$MODE" = real ]; then
    # The Node authorizer and NodeRestriction know the kubelet by this name and group.
    gen_client_cert "node-$NODE_NAME" "system:node:$NODE_NAME" system:nodes
    gen_client_cert kube-proxy system:kube-proxy ""
    # The API server's identity towards kubelets (logs, exec, port-forward), bound to
    # system:kubelet-api-admin by `up`.
    gen_client_cert apiserver-kubelet-client kube-apiserver-kubelet-client ""
    if [ ! -s "$PKI/kubelet-$NODE_NAME.crt" ] || ! has_san "$PKI/kubelet-$NODE_NAME.crt" "$NODE_IP"; then
      sign "kubelet-$NODE_NAME" "/O=system:nodes/CN=system:node:$NODE_NAME" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
    fi
  fi
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

write_kubeconfig() { # path cert-name user [server]
  local path=$1 name=$2 user=$3 server=${4:-https://127.0.0.1:$API_PORT}
  cat >"$path.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $server
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

# --- configuration of the real node -------------------------------------------------------------

pause_image() { echo "docker.io/local/pause:$(cat "$1/pause.version")"; }
coredns_image() { echo "local/coredns:$(cat "$1/coredns.version")"; }

# Replaces a file only when its content changes: kube-proxy exits when its configuration file
# changes, and containerd reloads the CNI configuration; a second `up` must disturb neither.
write_if_changed() { # path < content
  cat >"$1.new"
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else mv "$1.new" "$1"; fi
}

write_node_config() { # bins
  local bins=$1
  mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/kubelet" "$STATE/pod-logs" "$VOLUMES"
  write_if_changed "$STATE/containerd/config.toml" <<EOF
# containerd of the local cluster: its own root, state and socket; nothing system-wide.
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # Lowering oom_score_adj is refused without CAP_SYS_RESOURCE; without this every sandbox fails.
  restrict_oom_score_adj = true
  sandbox_image = "$(pause_image "$bins")"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
EOF
  write_if_changed "$STATE/cni/net.d/10-recommender.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "recommender-pods",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "ranges": [[{"subnet": "$NODE_POD_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$STATE/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
  write_if_changed "$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-$NODE_NAME.crt
tlsPrivateKeyFile: $PKI/kubelet-$NODE_NAME.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 30s}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 30s, cacheUnauthorizedTTL: 5s}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
# Pods get the cluster's DNS only: no search domains or resolvers of the host.
resolvConf: ""
maxPods: $MAX_PODS
podLogsDir: $STATE/pod-logs
volumePluginDir: $STATE/kubelet/volume-plugins
enforceNodeAllocatable: []
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
serializeImagePulls: false
EOF
  write_if_changed "$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $STATE/kube-proxy.kubeconfig
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: [$NODE_IP/32]
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
iptables:
  localhostNodePorts: false
  masqueradeAll: false
  minSyncPeriod: 1s
  syncPeriod: 30s
EOF
}

coredns_manifests() { # image
  cat <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # cluster.local and the reverse zones of the pod and service ranges only; no forward plugin,
  # so any other name is refused and nothing leaves the machine.
  Corefile: |
    cluster.local:1053 244.10.in-addr.arpa:1053 96.10.in-addr.arpa:1053 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local 244.10.in-addr.arpa 96.10.in-addr.arpa {
            pods insecure
            ttl 30
        }
        cache 30
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      tolerations: [{key: CriticalAddonsOnly, operator: Exists}]
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: coredns
        image: $1
        imagePullPolicy: IfNotPresent
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 1053, protocol: UDP}
        - {name: dns-tcp, containerPort: 1053, protocol: TCP}
        - {name: health, containerPort: 8080, protocol: TCP}
        - {name: ready, containerPort: 8181, protocol: TCP}
        resources:
          requests: {cpu: 50m, memory: 32Mi}
          limits: {memory: 128Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        readinessProbe:
          httpGet: {path: /ready, port: ready}
          periodSeconds: 2
        livenessProbe:
          httpGet: {path: /health, port: health}
          initialDelaySeconds: 10
          periodSeconds: 10
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes:
      - name: config
        configMap: {name: coredns, items: [{key: Corefile, path: Corefile}]}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: dns, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: dns-tcp, protocol: TCP}
EOF
}

# The API server's client identity towards the kubelet may use the kubelet API (logs, exec,
# port-forward), as kubeadm sets it up.
bootstrap_manifests() {
  cat <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "recommender:kube-apiserver-kubelet-client"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]
EOF
}

# --- network of the real node -------------------------------------------------------------------

SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic
  kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait)

# Folders containerd, its shims and the kubelet create at fixed places outside the state dir, and
# /etc/cni, where buildah (images.sh, run by `up`) would put its network lock if not told otherwise.
HOST_PATHS=(/run/containerd /run/netns /var/lib/kubelet /var/log/containers /etc/cni)

# kubelet sets kernel tunables it expects (overcommit, panic) and the CNI bridge turns on
# forwarding: record the machine's values once, `down` puts them back. Likewise which of
# HOST_PATHS did not exist yet: `down` removes those again (when nothing but sockets is left).
save_sysctls() {
  [ -s "$STATE/sysctl.saved" ] && return
  local d
  for d in "${HOST_PATHS[@]}"; do [ -e "$d" ] || echo "$d"; done >"$STATE/host-paths.created"
  local k v
  for k in "${SYSCTLS[@]}"; do
    v=$(sysctl -n "$k" 2>/dev/null) && printf '%s %s\n' "$k" "$v"
  done >"$STATE/sysctl.saved.tmp"
  mv "$STATE/sysctl.saved.tmp" "$STATE/sysctl.saved"
}

remove_host_paths() {
  local d
  [ -s "$STATE/host-paths.created" ] || return 0
  while read -r d; do
    [ -d "$d" ] || continue
    find "$d" -type s -delete 2>/dev/null || true
    find "$d" -depth -type d -empty -delete 2>/dev/null || true
    [ ! -e "$d" ] || log "left $d: something other than our empty folders is in it"
  done <"$STATE/host-paths.created"
  rm -f "$STATE/host-paths.created"
}

restore_sysctls() {
  [ -s "$STATE/sysctl.saved" ] || return 0
  local k v
  while read -r k v; do
    [ "$(sysctl -n "$k" 2>/dev/null || true)" = "$v" ] || sysctl -qw "$k=$v" 2>/dev/null || log "could not restore $k=$v"
  done <"$STATE/sysctl.saved"
  rm -f "$STATE/sysctl.saved"
}

ipt() { local cmd=$1; shift; "$cmd" -w 5 "$@"; }

ensure_chain() { # cmd table chain
  ipt "$1" -t "$2" -N "$3" 2>/dev/null || ipt "$1" -t "$2" -F "$3"
}

# Our jump first in a built-in chain: kubelet and kube-proxy insert theirs at the top too.
ensure_first() { # cmd table builtin target
  local cmd=$1 t=$2 c=$3 target=$4 first
  first=$(ipt "$cmd" -t "$t" -L "$c" -n --line-numbers | awk 'NR==3 {print $2}')
  [ "$first" = "$target" ] && return
  while ipt "$cmd" -t "$t" -D "$c" -j "$target" 2>/dev/null; do :; done
  ipt "$cmd" -t "$t" -I "$c" 1 -j "$target"
}

iface_owner() { cat "/sys/class/net/$NODE_IFACE/ifalias" 2>/dev/null || true; }
# False while another cluster's real node owns the machine's node network (its chains too).
net_ours() { [ ! -d "/sys/class/net/$NODE_IFACE" ] || [ "$(iface_owner)" = "recommender:$STATE" ]; }

net_up() {
  local owner
  owner=$(iface_owner)
  if [ -d "/sys/class/net/$NODE_IFACE" ] && [ "$owner" != "recommender:$STATE" ]; then
    die "$NODE_IFACE belongs to another cluster (${owner:-unknown}); one real node per machine: stop that cluster first"
  fi
  save_sysctls
  if [ ! -d "/sys/class/net/$NODE_IFACE" ]; then
    log "creating $NODE_IFACE ($NODE_IP/32) and routing $SERVICE_CIDR into it"
    ip link add "$NODE_IFACE" type ifb
    ip link set "$NODE_IFACE" alias "recommender:$STATE"
  fi
  sysctl -qw "net.ipv6.conf.$NODE_IFACE.disable_ipv6=1" 2>/dev/null || true
  ip addr replace "$NODE_IP/32" dev "$NODE_IFACE"
  ip link set "$NODE_IFACE" up
  ip route replace "$SERVICE_CIDR" dev "$NODE_IFACE" src "$NODE_IP"
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1

  # Pods talk to each other, to Services and to the node address; nothing is forwarded between
  # the bridge and any other interface, in either direction.
  ensure_chain iptables filter RECOMMENDER-FORWARD
  ipt iptables -A RECOMMENDER-FORWARD -i "$BRIDGE" -o "$BRIDGE" -j RETURN
  ipt iptables -A RECOMMENDER-FORWARD -i "$BRIDGE" -m comment --comment "pods reach nothing beyond this machine" -j DROP
  ipt iptables -A RECOMMENDER-FORWARD -o "$BRIDGE" -m comment --comment "nothing from elsewhere reaches pods" -j DROP
  # On the host, pods reach the node address only (API server, kubelet, PostgreSQL).
  ensure_chain iptables filter RECOMMENDER-INPUT
  ipt iptables -A RECOMMENDER-INPUT -i "$BRIDGE" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  ipt iptables -A RECOMMENDER-INPUT -i "$BRIDGE" -d "$NODE_IP/32" -j RETURN
  ipt iptables -A RECOMMENDER-INPUT -i "$BRIDGE" -m comment --comment "pods reach only the node address on the host" -j DROP
  # What kube-proxy (or our API server rule) redirected from the host goes to pods or the node
  # address. (Matched by the new destination, in the original direction only: OUTPUT's -o is
  # still the route before the DNAT, and replies of such connections carry the DNAT state too.)
  ensure_chain iptables filter RECOMMENDER-OUTPUT
  ipt iptables -A RECOMMENDER-OUTPUT -m conntrack --ctstate DNAT --ctdir ORIGINAL -d "$CLUSTER_CIDR" -j RETURN
  ipt iptables -A RECOMMENDER-OUTPUT -m conntrack --ctstate DNAT --ctdir ORIGINAL -d "$NODE_IP/32" -j RETURN
  ipt iptables -A RECOMMENDER-OUTPUT -m conntrack --ctstate DNAT --ctdir ORIGINAL -m comment --comment "Service traffic stays on this machine" -j DROP
  # 127.0.0.1:API_PORT reaches the API server, which listens on the node address.
  ensure_chain iptables nat RECOMMENDER-APISERVER
  ipt iptables -t nat -A RECOMMENDER-APISERVER -d 127.0.0.1/32 -p tcp --dport "$API_PORT" \
    -j DNAT --to-destination "$NODE_IP:$API_PORT"
  # Pods have IPv6 link-local addresses only: nothing of theirs is forwarded or accepted.
  ensure_chain ip6tables filter RECOMMENDER-FORWARD
  ipt ip6tables -A RECOMMENDER-FORWARD -i "$BRIDGE" -j DROP
  ipt ip6tables -A RECOMMENDER-FORWARD -o "$BRIDGE" -j DROP
  ensure_chain ip6tables filter RECOMMENDER-INPUT
  ipt ip6tables -A RECOMMENDER-INPUT -i "$BRIDGE" -j DROP
  ensure_jumps
}

ensure_jumps() {
  ensure_first iptables filter FORWARD RECOMMENDER-FORWARD
  ensure_first iptables filter INPUT RECOMMENDER-INPUT
  ensure_first iptables filter OUTPUT RECOMMENDER-OUTPUT
  ensure_first iptables nat OUTPUT RECOMMENDER-APISERVER
  ensure_first ip6tables filter FORWARD RECOMMENDER-FORWARD
  ensure_first ip6tables filter INPUT RECOMMENDER-INPUT
}

# Removes every chain of ours, kubelet's, kube-proxy's and the CNI plugins' (and the jumps to
# them) from all tables, IPv4 and IPv6: one iptables-restore per table, rule by rule if that fails.
remove_chains() {
  local cmd t c chains n dump
  for cmd in iptables ip6tables; do
    for t in filter nat mangle raw; do
      dump=$("$cmd-save" -t "$t" 2>/dev/null) || continue
      chains=$(awk '/^:/ {print substr($1, 2)}' <<<"$dump" | grep -E "$OUR_CHAINS_RE" || true)
      [ -n "$chains" ] || continue
      {
        echo "*$t"
        grep -E '^-A (PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) .*-j (KUBE-|CNI-|RECOMMENDER-)' <<<"$dump" | sed 's/^-A /-D /' || true
        for c in $chains; do echo "-F $c"; done
        for c in $chains; do echo "-X $c"; done
        echo COMMIT
      } | "$cmd-restore" -w 5 --noflush 2>/dev/null && continue
      for c in $(ipt "$cmd" -t "$t" -S | awk '$1 == "-P" {print $2}') $chains; do
        for n in $(ipt "$cmd" -t "$t" -L "$c" -n --line-numbers | awk -v re="$OUR_CHAINS_RE" 'NR > 2 && $2 ~ re {print $1}' | sort -rn); do
          ipt "$cmd" -t "$t" -D "$c" "$n"
        done
      done
      for c in $chains; do ipt "$cmd" -t "$t" -F "$c"; done
      for c in $chains; do ipt "$cmd" -t "$t" -X "$c"; done
    done
  done
}

net_down() {
  if ! net_ours; then
    log "leaving the network alone: $NODE_IFACE belongs to $(iface_owner)"
    return
  fi
  remove_chains
  if [ -d "/sys/class/net/$BRIDGE" ]; then
    ip link del "$BRIDGE" && log "removed bridge $BRIDGE"
  fi
  if [ -d "/sys/class/net/$NODE_IFACE" ]; then
    ip link del "$NODE_IFACE" && log "removed $NODE_IFACE and its routes"
  fi
  remove_host_paths
  restore_sysctls
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
      printf '%s\n' --etcd-servers="http://127.0.0.1:$ETCD_PORT" --secure-port="$API_PORT" \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --service-account-issuer="https://kubernetes.default.svc.cluster.local" \
        --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC \
        --allow-privileged=true \
        --audit-policy-file="$STATE/audit-policy.yaml" --audit-log-path="$LOGS/audit.log" \
        --audit-log-format=json --audit-log-maxsize=100 --audit-log-maxbackup=1 \
        --cert-dir="$STATE/apiserver-certs" --v=1
      if [ "$MODE" = real ]; then
        # The `kubernetes` Service's endpoint is the node address (lease reconciler, default).
        printf '%s\n' --bind-address="$NODE_IP" --advertise-address="$NODE_IP" \
          --kubelet-preferred-address-types=InternalIP \
          --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
          --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
          --kubelet-certificate-authority="$PKI/ca.crt"
      else
        # Endpoints validation refuses a loopback address for the `kubernetes` Service.
        printf '%s\n' --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
          --endpoint-reconciler-type=none
      fi
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
    containerd)
      printf '%s\n' --config="$STATE/containerd/config.toml"
      ;;
    kubelet)
      printf '%s\n' --config="$STATE/kubelet/config.yaml" --kubeconfig="$STATE/kubelet.kubeconfig" \
        --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --root-dir="$STATE/kubelet" --v=1
      ;;
    kube-proxy)
      printf '%s\n' --config="$STATE/kube-proxy.yaml" --v=1
      ;;
    *) die "unknown component '$1' (one of: ${ALL_COMPONENTS[*]})" ;;
  esac
}

addresses_of() { # component -> host:port it listens on (none for containerd)
  case $1 in
    etcd) echo "127.0.0.1:$ETCD_PORT" ;;
    kube-apiserver) if [ "$MODE" = real ]; then echo "$NODE_IP:$API_PORT"; else echo "127.0.0.1:$API_PORT"; fi ;;
    kube-controller-manager) echo "127.0.0.1:$KCM_PORT" ;;
    kube-scheduler) echo "127.0.0.1:$SCHED_PORT" ;;
    kubelet) echo "$NODE_IP:$KUBELET_PORT 127.0.0.1:$KUBELET_HEALTHZ_PORT" ;;
    kube-proxy) echo "127.0.0.1:$PROXY_HEALTHZ_PORT 127.0.0.1:$PROXY_METRICS_PORT" ;;
  esac
}

fail_with_log() { # component reason
  log "$1: $2"
  if [ -s "$LOGS/$1.log" ]; then
    log "last lines of $LOGS/$1.log:"
    tail -n 25 "$LOGS/$1.log" >&2
  fi
  # A failed `up` leaves nothing half-started behind.
  if [ "${UP_IN_PROGRESS:-0}" = 1 ] && [ "${RECOMMENDER_KEEP_FAILED:-0}" != 1 ]; then
    UP_IN_PROGRESS=0
    log "stopping the cluster's components (RECOMMENDER_KEEP_FAILED=1 leaves them for debugging)"
    cmd_down
  fi
  exit 1
}

port_busy() { # host:port -> 0 if something listens there
  (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

start_component() {
  local c=$1 bins=$2 pid args a program
  if pid=$(pid_of "$c"); then
    log "$c already running (pid $pid)"
    return
  fi
  for a in $(addresses_of "$c"); do
    if port_busy "$a"; then
      fail_with_log "$c" "$a is already in use by another process (set RECOMMENDER_*_PORT to move it)"
    fi
  done
  mapfile -t args < <(component_args "$c")
  mkdir -p "$LOGS" "$PIDS"
  [ "$c" != kube-apiserver ] || write_audit_policy
  program="$bins/$c"
  case $c in
    containerd) program=$(command -v containerd) || fail_with_log "$c" "containerd is not installed (bash tests/install-prereqs.sh)" ;;
  esac
  # setsid: the components outlive this script and do not get the caller's terminal signals.
  # 9>&-: nor do they hold the real node's lock (tests/stack.sh) after the test run that took it.
  setsid "$program" "${args[@]}" >>"$LOGS/$c.log" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$PIDS/$c.pid"
  sleep 0.3
  [ -d "/proc/$pid" ] || fail_with_log "$c" "exited right after start"
  log "started $c (pid $pid, log $LOGS/$c.log)"
}

running() { # pid: alive and not a zombie waiting to be reaped
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "${st%% *}" != Z ]
}

# Stops the given components together: SIGTERM to each, SIGKILL to those still running 5 s later.
stop_component() {
  local c pid names=() pids=() i alive
  for c in "$@"; do
    if pid=$(pid_of "$c"); then
      kill -TERM "$pid" 2>/dev/null || true
      names+=("$c")
      pids+=("$pid")
    else
      rm -f "$PIDS/$c.pid"
    fi
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${pids[@]}"; do ! running "$pid" || alive=1; done
    [ $alive = 1 ] || break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    if running "$pid"; then
      log "${names[$i]} (pid $pid) still running 5s after SIGTERM, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    # Reap if it is our child (it is not when `down` runs in another shell; init reaps it then).
    wait "$pid" 2>/dev/null || true
    rm -f "$PIDS/${names[$i]}.pid"
    log "stopped ${names[$i]} (pid $pid)"
  done
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
  kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' | grep -q True
}
component_healthy() { curl -sfk "https://127.0.0.1:$(addresses_of "$1" | sed 's/.*://')/healthz" | grep -q '^ok$'; }
# The socket answers before the CRI service has recovered its state; a kubelet started then
# exits ("server is not initialized yet"). The CRI service logs its streaming server last.
containerd_ready() {
  ctr --address "$CONTAINERD_SOCK" version >/dev/null &&
    awk '/Start cri plugin/ { started = 1; cri = 0 } started && /Start streaming server/ { cri = 1 }
      END { exit !cri }' "$LOGS/containerd.log"
}
# Healthy and past its first sync of the rules (its jumps are in place then).
proxy_synced() {
  curl -sf "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz" >/dev/null &&
    curl -sf "http://127.0.0.1:$PROXY_METRICS_PORT/metrics" |
    grep -q '^kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} [1-9]'
}

start_one() {
  local c=$1 bins=$2
  start_component "$c" "$bins"
  case $c in
    etcd) wait_until etcd "healthy" etcd_healthy ;;
    kube-apiserver) wait_until kube-apiserver "ready (/readyz)" apiserver_ready ;;
    kubelet) wait_until "$c" "Ready as Node $NODE_NAME" node_ready ;;
    containerd) wait_until containerd "answering on $CONTAINERD_SOCK" containerd_ready ;;
    kube-proxy) wait_until kube-proxy "healthy and synced" proxy_synced ;;
    *) wait_until "$c" "healthy (/healthz)" component_healthy "$c" ;;
  esac
  # kubelet and kube-proxy put their jumps first in the built-in chains: ours go back on top.
  case $c in kubelet | kube-proxy) ensure_jumps ;; esac
}

# --- the real node's pods, mounts and leftovers -------------------------------------------------

mounts_under() { # dir -> mount points below it, deepest first
  awk -v d="$1/" 'index($5, d) == 1 {print length($5), $5}' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-
}

unmount_under() {
  local m
  for m in $(mounts_under "$1"); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
}

# Deletes a folder only when nothing is mounted below it (a bind-mounted volume would otherwise
# lose its data through the mount).
remove_unmounted() {
  [ -e "$1" ] || return 0
  if [ -n "$(mounts_under "$1")" ]; then
    log "not removing $1: still mounted below it: $(mounts_under "$1" | tr '\n' ' ')"
    return 1
  fi
  rm -rf "$1"
}

# Stops every container and sandbox of the node's containerd and removes their network
# namespaces (which removes their veths).
remove_containers() {
  local c=(ctr --address "$CONTAINERD_SOCK" --namespace k8s.io) ids id netns=() ns
  containerd_ready >/dev/null 2>&1 || return 0
  ids=$("${c[@]}" containers ls -q 2>/dev/null || true)
  [ -n "$ids" ] || return 0
  log "removing $(echo "$ids" | wc -l) containers and sandboxes"
  for id in $ids; do
    ns=$("${c[@]}" containers info "$id" 2>/dev/null | python3 -c '
import json, sys
spec = json.load(sys.stdin).get("Spec") or {}
for n in (spec.get("linux") or {}).get("namespaces") or []:
    if n.get("type") == "network" and n.get("path", "").startswith(("/var/run/netns/", "/run/netns/")):
        print(n["path"])' 2>/dev/null || true)
    [ -z "$ns" ] || netns+=("$ns")
    "${c[@]}" tasks kill --all --signal SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $ids; do
    "${c[@]}" tasks delete --force "$id" >/dev/null 2>&1 || true
    "${c[@]}" containers delete "$id" >/dev/null 2>&1 || true
  done
  for ns in "${netns[@]}"; do
    umount "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
}

# containerd-shim processes of our containerd (found by its socket in their command line) that
# outlived their containers.
kill_shims() {
  local f p
  for f in $(grep -lsaF -- "$CONTAINERD_SOCK" /proc/[0-9]*/cmdline || true); do
    p=${f#/proc/}
    p=${p%/cmdline}
    case $(cat "/proc/$p/comm" 2>/dev/null || true) in containerd-shim*) kill -KILL "$p" 2>/dev/null || true ;; esac
  done
}

node_down() {
  local bins
  bins=$(cat "$STATE/bin-dir" 2>/dev/null || true)
  # The controllers too: nothing should create or schedule pods while the node goes away.
  stop_component kube-proxy kubelet kube-scheduler kube-controller-manager
  remove_containers
  stop_component containerd
  kill_shims
  unmount_under "$STATE"
  # kubelet links container logs from this fixed folder.
  find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete 2>/dev/null || true
  if [ -n "$bins" ] && [ -x "$bins/kube-proxy" ] && net_ours; then
    "$bins/kube-proxy" --cleanup --v=0 >>"$LOGS/kube-proxy.log" 2>&1 || true
  fi
  # Empty cgroups the kubelet made (rmdir refuses any that still hold a process).
  find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null || true
  remove_unmounted "$STATE/kubelet" || true
  remove_unmounted "$STATE/containerd/state" || true
  rm -rf "$STATE/cni/ipam" "$STATE/pod-logs"
}

real_node_leftovers() {
  [ "$(iface_owner)" = "recommender:$STATE" ] || [ -s "$PIDS/containerd.pid" ] || [ -s "$PIDS/kubelet.pid" ]
}

# --- commands -----------------------------------------------------------------------------------

check_real_prereqs() {
  [ "$(id -u)" = 0 ] || die "the real node needs root (or RECOMMENDER_NODE=none)"
  local t
  for t in containerd runc ctr iptables ip6tables ip buildah python3; do
    command -v "$t" >/dev/null || die "$t is missing: bash tests/install-prereqs.sh"
  done
  for t in bridge host-local portmap loopback; do
    [ -x "/usr/lib/cni/$t" ] || die "/usr/lib/cni/$t is missing (containernetworking-plugins): bash tests/install-prereqs.sh"
  done
}

cmd_up() {
  local bins c wanted
  command -v openssl >/dev/null || die "openssl is required"
  command -v curl >/dev/null || die "curl is required"
  wanted=$(mode_from_env)
  if pid_of etcd >/dev/null && [ -n "$(recorded_mode)" ] && [ "$(recorded_mode)" != "$wanted" ]; then
    die "this cluster runs with a '$(recorded_mode)' node; 'down' it before starting it with '$wanted'"
  fi
  MODE=$wanted
  [ "$MODE" != real ] || check_real_prereqs
  [ "$MODE" != real ] || net_ours ||
    die "$NODE_IFACE belongs to another cluster ($(iface_owner)); one real node per machine: stop that cluster first"
  bins=$(bin_dir) || die "building the binaries failed (see the output above)"
  for c in "${CONTROL_PLANE[@]}"; do [ -x "$bins/$c" ] || die "$bins/$c is missing after build"; done
  mkdir -p "$STATE" "$LOGS" "$PIDS"
  echo "$bins" >"$STATE/bin-dir"
  echo "$MODE" >"$STATE/node-mode"
  # A fresh cluster gets fresh node folders too (claims, pod logs), unless asked to keep them.
  if ! pid_of etcd >/dev/null && [ "${RECOMMENDER_KEEP_DATA:-0}" != 1 ]; then
    rm -rf "$STATE/etcd-data" "$STATE/node"
  fi
  gen_pki
  write_kubeconfig "$KUBECONFIG_PATH" admin kubernetes-admin
  write_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  write_kubeconfig "$STATE/scheduler.kubeconfig" scheduler system:kube-scheduler
  UP_IN_PROGRESS=1
  if [ "$MODE" = real ]; then
    write_kubeconfig "$STATE/kubelet.kubeconfig" "node-$NODE_NAME" "system:node:$NODE_NAME" "https://$NODE_IP:$API_PORT"
    write_kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy system:kube-proxy "https://$NODE_IP:$API_PORT"
    write_node_config "$bins"
    net_up
  fi
  for c in "${CONTROL_PLANE[@]}"; do start_one "$c" "$bins"; done
  case $MODE in
    real) up_real_node "$bins" ;;
    none) log "RECOMMENDER_NODE=none: no node, pods will stay Pending" ;;
  esac
  UP_IN_PROGRESS=0
  log "cluster ready ($MODE node): export KUBECONFIG=$KUBECONFIG_PATH"
}

up_real_node() {
  local bins=$1 deadline
  bootstrap_manifests | kubectl_ apply -f - >/dev/null || fail_with_log kube-apiserver "could not create the kubelet client's RBAC binding"
  pid_of kubelet >/dev/null || pid_of containerd >/dev/null || remove_unmounted "$STATE/containerd/state" || true
  start_one containerd "$bins"
  RECOMMENDER_K8S_BIN="$bins" RECOMMENDER_CONTAINERD_ADDRESS="$CONTAINERD_SOCK" RECOMMENDER_STATE="$STATE" \
    "$HERE/images.sh" >/dev/null </dev/null || fail_with_log containerd "building or importing the pause and CoreDNS images failed"
  start_one kubelet "$bins"
  start_one kube-proxy "$bins"
  coredns_manifests "$(coredns_image "$bins")" | kubectl_ apply -f - >/dev/null || fail_with_log kube-apiserver "could not create CoreDNS"
  deadline=$((SECONDS + READY_TIMEOUT))
  until [ "$(kubectl_ -n kube-system get deployment coredns -o 'jsonpath={.status.availableReplicas}' 2>/dev/null)" = 1 ]; do
    if [ $SECONDS -ge $deadline ]; then
      kubectl_ -n kube-system get pods -o wide >&2 || true
      kubectl_ -n kube-system get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 15 >&2 || true
      fail_with_log kubelet "CoreDNS not available after ${READY_TIMEOUT}s"
    fi
    sleep 0.5
  done
  log "node $NODE_NAME Ready at $NODE_IP; CoreDNS available at $DNS_IP"
}

cmd_down() {
  local c real=0
  if [ "$(recorded_mode)" = real ] || real_node_leftovers; then real=1; fi
  [ $real = 0 ] || node_down
  # Reverse order: controllers first so they do not log errors about a vanished API server.
  stop_component kube-scheduler kube-controller-manager
  for c in kube-apiserver etcd; do stop_component "$c"; done
  [ $real = 0 ] || net_down
  rm -f "$STATE/node-mode"
}

cmd_env() {
  local bins=""
  [ -s "$STATE/bin-dir" ] && bins=$(cat "$STATE/bin-dir")
  echo "export KUBECONFIG=$KUBECONFIG_PATH"
  echo "export RECOMMENDER_STATE=$STATE"
  echo "export RECOMMENDER_K8S_BIN=$bins"
  echo "export RECOMMENDER_APISERVER_URL=https://127.0.0.1:$API_PORT"
  echo "export RECOMMENDER_CA_FILE=$PKI/ca.crt"
  echo "export RECOMMENDER_NODE_MODE=$MODE"
  echo "export RECOMMENDER_NODE_NAME=$NODE_NAME"
  echo "export RECOMMENDER_NODE_STATE=$STATE/node"
  echo "export RECOMMENDER_AUDIT_LOG=$LOGS/audit.log"
  if [ "$MODE" = real ]; then
    echo "export RECOMMENDER_NODE_IP=$NODE_IP"
    echo "export RECOMMENDER_POD_CIDR=$CLUSTER_CIDR"
    echo "export RECOMMENDER_SERVICE_CIDR=$SERVICE_CIDR"
    echo "export RECOMMENDER_DNS_IP=$DNS_IP"
    echo "export RECOMMENDER_CONTAINERD_ADDRESS=$CONTAINERD_SOCK"
    echo "export RECOMMENDER_VOLUMES_DIR=$VOLUMES"
    echo "export RECOMMENDER_BRIDGE=$BRIDGE"
  fi
}

cmd_status() {
  local c pid rc=0 want
  for c in "${ALL_COMPONENTS[@]}"; do
    want=0
    case " ${CONTROL_PLANE[*]} " in *" $c "*) want=1 ;; esac
    [ "$MODE" = real ] && case " ${REAL_NODE[*]} " in *" $c "*) want=1 ;; esac
    if pid=$(pid_of "$c"); then
      printf '%-24s running (pid %s)\n' "$c" "$pid"
    elif [ $want = 1 ]; then
      printf '%-24s stopped\n' "$c"
      rc=1
    fi
  done
  if apiserver_ready; then echo "apiserver /readyz: ok"; else echo "apiserver /readyz: not ready"; rc=1; fi
  return $rc
}

valid_component() {
  local c
  for c in "${ALL_COMPONENTS[@]}"; do [ "$c" = "${1:-}" ] && return; done
  die "unknown component '${1:-}' (one of: ${ALL_COMPONENTS[*]})"
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
