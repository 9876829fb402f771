#!/usr/bin/env bash
# A throw-away Kubernetes cluster on this machine: etcd, kube-apiserver (TLS + RBAC),
# kube-controller-manager and kube-scheduler, built once by build.sh and cached by version, plus
# N nodes. The nodes are either
#   real   each node a kubelet with its own containerd, CNI bridge, pod subnet, node address,
#          root dir and cgroup root; one kube-proxy and CoreDNS for all of them: pods are real
#          containers in network namespaces on bridges of this machine, contained (see "Network"
#          below). Needs root. The default.
#   none   no node: pods stay Pending (RECOMMENDER_NODE=none).
#
#   cluster.sh up                  build if needed, start everything, wait until ready (real nodes:
#                                  every node Ready and CoreDNS available); ends with "N nodes ready"
#   cluster.sh down                stop exactly what `up` started (recorded PIDs); real nodes: also
#                                  their containers, mounts, bridges, iptables rules, interface
#   cluster.sh env                 print `export KEY=value` lines (KUBECONFIG, ports, addresses)
#   cluster.sh status              show which components are running
#   cluster.sh nodes               one line per node: name, zone, address, bridge, pod subnet, state
#   cluster.sh stop|start|restart COMPONENT
#                                  one of etcd, kube-apiserver, kube-controller-manager,
#                                  kube-scheduler, kube-proxy, containerd-NODE, kubelet-NODE
#                                  (e.g. to restart the API server under a test)
#   cluster.sh stop-node NODE      the node dies: SIGKILL to its kubelet, its containerd, their
#                                  shims and every process of its pods, its pods' network
#                                  interfaces gone; nothing is drained or evicted gracefully
#   cluster.sh start-node NODE     the node boots again (containerd, kubelet) and turns Ready
#
# Nodes (RECOMMENDER_NODES of them, 1 to 9; default 3): node-I has the address NODE_IP + I - 1
# (10.250.0.I), bridge recbr(I-1), pod subnet 10.244.(4(I-1)).0/22 (10.244.0.0/22, 10.244.4.0/22, ...), zone zone-a, zone-b, ...
# (label topology.kubernetes.io/zone), cgroup root /recommender/node-I in every cgroup hierarchy,
# and its files under $STATE/nodes/node-I. `up` on a running cluster adds the nodes it lacks
# (and starts those `stop-node` stopped).
#
# Network (one real cluster per machine):
#   - node addresses (10.250.0.I/32) on `recnode0`, an ifb interface this script creates: ifb
#     devices drop whatever is routed into them, so the service range and the cluster's pod range
#     are routed there (`10.96.0.0/16 dev recnode0 src NODE_IP`): a ClusterIP kube-proxy does not
#     translate, or a pod address no bridge holds, goes nowhere, yet local connect() works and
#     kube-proxy's DNAT applies. Each node's bridge holds its subnet's gateway, so traffic between
#     nodes' pods is routed by this host.
#   - the API server listens on node-1's address NODE_IP; 127.0.0.1:PORT reaches it through a nat
#     OUTPUT DNAT rule. The `kubernetes` Service points at NODE_IP:PORT. Each kubelet listens on its
#     node's address.
#   - no masquerade (CNI ipMasq false); iptables chains RECOMMENDER-FORWARD (traffic between the
#     nodes' bridges passes, nothing is forwarded between a bridge and any other interface),
#     RECOMMENDER-INPUT (pods reach only the API server, PostgreSQL and S3 ports of the node
#     addresses on the host) and RECOMMENDER-OUTPUT (traffic kube-proxy redirected may only go to
#     pods or node addresses), each first in its built-in chain; IPv6 forwarding to and from the
#     bridges is dropped too.
#   - CoreDNS serves cluster.local (and the reverse zones of the pod and service ranges) only,
#     forwards nothing; NodePorts only on NODE_IP.
#
# Environment: RECOMMENDER_STATE (state dir, default /tmp/recommender-cluster), RECOMMENDER_NODES
# (3), RECOMMENDER_ETCD_PORT (52379), RECOMMENDER_ETCD_PEER_PORT (52380),
# RECOMMENDER_APISERVER_PORT (56443), RECOMMENDER_KCM_PORT (50257),
# RECOMMENDER_SCHEDULER_PORT (50259), RECOMMENDER_KUBELET_PORT (10250, on each node's address),
# RECOMMENDER_KUBELET_HEALTHZ_PORT (10248; node-I's is 100 * (I - 1) above it),
# RECOMMENDER_PROXY_HEALTHZ_PORT (10256), RECOMMENDER_PROXY_METRICS_PORT (10249),
# RECOMMENDER_NODE_IP (10.250.0.1, node-1's address), RECOMMENDER_PG_PORT (55432) and
# RECOMMENDER_S3_PORT (58333) (the host ports pods may reach, besides the API server's),
# RECOMMENDER_KEEP_DATA=1 keeps etcd data across `up`, RECOMMENDER_READY_TIMEOUT (seconds, 120).
# Versions and the cache location as in build.sh.
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
NODE_IP="${RECOMMENDER_NODE_IP:-10.250.0.1}"
NODE_IFACE=recnode0
MAX_PODS=500
MAX_NODES=9
ZONE_LETTERS=abcdefghi
# The host ports pods may reach on the node addresses: the API server, and the PostgreSQL and S3
# servers of tests/cluster/postgres.sh and s3.sh (which forward the S3 gateway's HTTP and HTTPS
# ports there; its other listeners stay on 127.0.0.1).
PG_PORT="${RECOMMENDER_PG_PORT:-55432}"
S3_PORT="${RECOMMENDER_S3_PORT:-58333}"
POD_HOST_PORTS="$API_PORT,$PG_PORT,$S3_PORT,$((S3_PORT + 8))"
# How fast a dead node shows and its pods are replaced (docs/local-cluster.md): kubelets renew
# their lease every 4 s (a quarter of its duration), the controller manager marks a node whose
# lease is 20 s old Unknown and its pods not ready (default 50 s), and pods tolerate an
# unreachable or not-ready node for 15 s before they are evicted (default 300 s).
NODE_LEASE_SECONDS=16
NODE_MONITOR_GRACE=20s
NODE_TOLERATION_SECONDS=15
CONTROL_PLANE=(etcd kube-apiserver kube-controller-manager kube-scheduler)
# iptables chains of this script, and prefixes of the chains kubelet, kube-proxy and the CNI
# plugins add (removed by `down`).
OUR_CHAINS_RE='^(KUBE-|CNI-|RECOMMENDER-)'

PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
KUBECONFIG_PATH="$STATE/kubeconfig"
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

# --- nodes --------------------------------------------------------------------------------------

# How many nodes this cluster has: what `up` recorded (the most it ever started), else the
# environment's.
wanted_nodes() {
  local n="${RECOMMENDER_NODES:-3}"
  [[ "$n" =~ ^[1-9]$ ]] || die "RECOMMENDER_NODES must be 1 to $MAX_NODES (got '$n')"
  echo "$n"
}
node_count() { cat "$STATE/node-count" 2>/dev/null || wanted_nodes; }

# node_vars I: node-I's settings in N_* variables.
node_vars() {
  local i=$1
  N_NAME="node-$i"
  N_IP="${NODE_IP%.*}.$((${NODE_IP##*.} + i - 1))"
  N_BRIDGE="recbr$((i - 1))"
  N_SUBNET="10.244.$((4 * (i - 1))).0/22"
  N_GATEWAY="10.244.$((4 * (i - 1))).1"
  N_DIR="$STATE/nodes/$N_NAME"
  N_SOCK="$N_DIR/containerd.sock"
  N_HEALTHZ=$((KUBELET_HEALTHZ_PORT + 100 * (i - 1)))
  N_ZONE="zone-${ZONE_LETTERS:i-1:1}"
  N_CGROUP="/recommender/$N_NAME"
}

node_indices() { seq 1 "$(node_count)"; }

# node-I -> I, for a node of this cluster.
node_index() {
  local name=$1 i
  i=${name#node-}
  if [[ "$name" != node-* || ! "$i" =~ ^[1-9]$ ]] || [ "$i" -gt "$(node_count)" ]; then
    die "no node '$name' in this cluster (node-1 to node-$(node_count))"
  fi
  echo "$i"
}

# A component's binary: containerd-node-2 runs containerd.
binary_of() { echo "${1%%-node-*}"; }

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
    local i
    for i in $(node_indices); do
      node_vars "$i"
      # The Node authorizer and NodeRestriction know each kubelet by this name and group.
      gen_client_cert "node-$N_NAME" "system:node:$N_NAME" system:nodes
      if [ ! -s "$PKI/kubelet-$N_NAME.crt" ] || ! has_san "$PKI/kubelet-$N_NAME.crt" "$N_IP"; then
        sign "kubelet-$N_NAME" "/O=system:nodes/CN=system:node:$N_NAME" "basicConstraints=CA:FALSE" \
          "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
          "subjectAltName=IP:$N_IP,DNS:$N_NAME"
      fi
    done
    gen_client_cert kube-proxy system:kube-proxy ""
    # The API server's identity towards kubelets (logs, exec, port-forward), bound to
    # system:kubelet-api-admin by `up`.
    gen_client_cert apiserver-kubelet-client kube-apiserver-kubelet-client ""
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

# Node I's containerd, CNI and kubelet configuration, and its kubelet's kubeconfig.
write_node_config() { # bins I
  local bins=$1
  node_vars "$2"
  mkdir -p "$N_DIR/containerd" "$N_DIR/cni/net.d" "$N_DIR/kubelet" "$N_DIR/pod-logs" "$VOLUMES"
  write_kubeconfig "$N_DIR/kubelet.kubeconfig" "node-$N_NAME" "system:node:$N_NAME" "https://$NODE_IP:$API_PORT"
  write_if_changed "$N_DIR/containerd/config.toml" <<EOF
# containerd of $N_NAME: its own root, state, socket and runc state; nothing system-wide.
version = 2
root = "$N_DIR/containerd/root"
state = "$N_DIR/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$N_SOCK"

[ttrpc]
  address = "$N_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$N_DIR/containerd/opt"

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
        # Not /run/containerd/runc, which every node's containerd would share.
        Root = "$N_DIR/containerd/state/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$N_DIR/cni/net.d"
    max_conf_num = 1
EOF
  write_if_changed "$N_DIR/cni/net.d/10-recommender.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "recommender-pods",
  "plugins": [
    {
      "type": "bridge", "bridge": "$N_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "ranges": [[{"subnet": "$N_SUBNET", "gateway": "$N_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$N_DIR/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
  write_if_changed "$N_DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $N_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $N_HEALTHZ
tlsCertFile: $PKI/kubelet-$N_NAME.crt
tlsPrivateKeyFile: $PKI/kubelet-$N_NAME.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 30s}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 30s, cacheUnauthorizedTTL: 5s}
containerRuntimeEndpoint: unix://$N_SOCK
cgroupDriver: cgroupfs
# Each node's pods in a hierarchy of their own: two kubelets never manage the same kubepods.
cgroupRoot: $N_CGROUP
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
# Pods get the cluster's DNS only: no search domains or resolvers of the host.
resolvConf: ""
maxPods: $MAX_PODS
podLogsDir: $N_DIR/pod-logs
volumePluginDir: $N_DIR/kubelet/volume-plugins
enforceNodeAllocatable: []
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
serializeImagePulls: false
# Renewed every quarter of it: the controller manager's grace period (NODE_MONITOR_GRACE) allows
# several renewals to be late on a busy machine before it takes the node for dead.
nodeLeaseDurationSeconds: $NODE_LEASE_SECONDS
EOF
}

# One kube-proxy in the host's network namespace serves every node: they all share it.
write_proxy_config() {
  write_if_changed "$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $STATE/kube-proxy.kubeconfig
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: node-1
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

# CoreDNS, two replicas on two nodes when there are several (as kubeadm runs it), so that a node
# that dies takes at most one away.
coredns_manifests() { # image replicas
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
  replicas: $2
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      tolerations: [{key: CriticalAddonsOnly, operator: Exists}]
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              labelSelector: {matchLabels: {k8s-app: kube-dns}}
              topologyKey: kubernetes.io/hostname
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
  local owner i bridges=() addresses=() b c
  owner=$(iface_owner)
  if [ -d "/sys/class/net/$NODE_IFACE" ] && [ "$owner" != "recommender:$STATE" ]; then
    die "$NODE_IFACE belongs to another cluster (${owner:-unknown}); one real cluster per machine: stop that cluster first"
  fi
  save_sysctls
  if [ ! -d "/sys/class/net/$NODE_IFACE" ]; then
    log "creating $NODE_IFACE and routing $SERVICE_CIDR and $CLUSTER_CIDR into it"
    ip link add "$NODE_IFACE" type ifb
    ip link set "$NODE_IFACE" alias "recommender:$STATE"
  fi
  sysctl -qw "net.ipv6.conf.$NODE_IFACE.disable_ipv6=1" 2>/dev/null || true
  for i in $(node_indices); do
    node_vars "$i"
    ip addr replace "$N_IP/32" dev "$NODE_IFACE"
    addresses+=("$N_IP")
    bridges+=("$N_BRIDGE")
    # The bridge exists, with its gateway and so the route to its subnet, before the node's first
    # pod (the CNI plugin takes it as it is): a pod address of a node without pods yet must not
    # fall through to the default route.
    [ -d "/sys/class/net/$N_BRIDGE" ] || ip link add "$N_BRIDGE" type bridge
    ip addr replace "$N_GATEWAY/22" dev "$N_BRIDGE"
    ip link set "$N_BRIDGE" up
  done
  ip link set "$NODE_IFACE" up
  ip route replace "$SERVICE_CIDR" dev "$NODE_IFACE" src "$NODE_IP"
  ip route replace "$CLUSTER_CIDR" dev "$NODE_IFACE" src "$NODE_IP"
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1

  # Pods talk to each other, on their node's bridge or another's, to Services and to the node
  # addresses; nothing is forwarded between a bridge and any other interface, in either direction.
  ensure_chain iptables filter RECOMMENDER-FORWARD
  for b in "${bridges[@]}"; do
    for c in "${bridges[@]}"; do ipt iptables -A RECOMMENDER-FORWARD -i "$b" -o "$c" -j RETURN; done
  done
  for b in "${bridges[@]}"; do
    ipt iptables -A RECOMMENDER-FORWARD -i "$b" -m comment --comment "pods reach nothing beyond this machine" -j DROP
    ipt iptables -A RECOMMENDER-FORWARD -o "$b" -m comment --comment "nothing from elsewhere reaches pods" -j DROP
  done
  # On the host, pods reach the API server, PostgreSQL and S3 ports of the node addresses only.
  ensure_chain iptables filter RECOMMENDER-INPUT
  for b in "${bridges[@]}"; do
    ipt iptables -A RECOMMENDER-INPUT -i "$b" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
    for c in "${addresses[@]}"; do
      ipt iptables -A RECOMMENDER-INPUT -i "$b" -d "$c/32" -p tcp -m multiport --dports "$POD_HOST_PORTS" -j RETURN
    done
    ipt iptables -A RECOMMENDER-INPUT -i "$b" -m comment --comment "pods reach only the API server, database and store ports on the host" -j DROP
  done
  # What kube-proxy (or our API server rule) redirected from the host goes to pods or the node
  # addresses. (Matched by the new destination, in the original direction only: OUTPUT's -o is
  # still the route before the DNAT, and replies of such connections carry the DNAT state too.)
  ensure_chain iptables filter RECOMMENDER-OUTPUT
  ipt iptables -A RECOMMENDER-OUTPUT -m conntrack --ctstate DNAT --ctdir ORIGINAL -d "$CLUSTER_CIDR" -j RETURN
  for c in "${addresses[@]}"; do
    ipt iptables -A RECOMMENDER-OUTPUT -m conntrack --ctstate DNAT --ctdir ORIGINAL -d "$c/32" -j RETURN
  done
  ipt iptables -A RECOMMENDER-OUTPUT -m conntrack --ctstate DNAT --ctdir ORIGINAL -m comment --comment "Service traffic stays on this machine" -j DROP
  # 127.0.0.1:API_PORT reaches the API server, which listens on node-1's address.
  ensure_chain iptables nat RECOMMENDER-APISERVER
  ipt iptables -t nat -A RECOMMENDER-APISERVER -d 127.0.0.1/32 -p tcp --dport "$API_PORT" \
    -j DNAT --to-destination "$NODE_IP:$API_PORT"
  # Pods have IPv6 link-local addresses only: nothing of theirs is forwarded or accepted.
  ensure_chain ip6tables filter RECOMMENDER-FORWARD
  ensure_chain ip6tables filter RECOMMENDER-INPUT
  for b in "${bridges[@]}"; do
    ipt ip6tables -A RECOMMENDER-FORWARD -i "$b" -j DROP
    ipt ip6tables -A RECOMMENDER-FORWARD -o "$b" -j DROP
    ipt ip6tables -A RECOMMENDER-INPUT -i "$b" -j DROP
  done
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

# The bridges of this cluster's nodes (recbr0, recbr1, ...), however many it had.
our_bridges() {
  local d
  for d in /sys/class/net/recbr[0-9]; do [ -d "$d" ] && basename "$d"; done
  return 0
}

net_down() {
  local b
  if ! net_ours; then
    log "leaving the network alone: $NODE_IFACE belongs to $(iface_owner)"
    return
  fi
  remove_chains
  for b in $(our_bridges); do
    ip link del "$b" && log "removed bridge $b"
  done
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
  c=$(binary_of "$c")
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
        --cert-dir="$STATE/apiserver-certs" --v=1 \
        --default-not-ready-toleration-seconds="$NODE_TOLERATION_SECONDS" \
        --default-unreachable-toleration-seconds="$NODE_TOLERATION_SECONDS"
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
        --concurrent-job-syncs=10 --concurrent-deployment-syncs=10 --v=1 \
        --node-monitor-period=2s --node-monitor-grace-period="$NODE_MONITOR_GRACE"
      ;;
    kube-scheduler)
      printf '%s\n' --kubeconfig="$STATE/scheduler.kubeconfig" \
        --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
        --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --cert-dir="$STATE/scheduler-certs" \
        --leader-elect=false --v=1
      ;;
    containerd-node-[1-9])
      node_vars "${1##*-}"
      printf '%s\n' --config="$N_DIR/containerd/config.toml"
      ;;
    kubelet-node-[1-9])
      node_vars "${1##*-}"
      printf '%s\n' --config="$N_DIR/kubelet/config.yaml" --kubeconfig="$N_DIR/kubelet.kubeconfig" \
        --hostname-override="$N_NAME" --node-ip="$N_IP" --root-dir="$N_DIR/kubelet" \
        --node-labels="topology.kubernetes.io/zone=$N_ZONE" --v=1
      ;;
    kube-proxy)
      printf '%s\n' --config="$STATE/kube-proxy.yaml" --v=1
      ;;
    *) die "unknown component '$1' (one of: $(all_components))" ;;
  esac
}

addresses_of() { # component -> host:port it listens on (none for containerd)
  case $1 in
    etcd) echo "127.0.0.1:$ETCD_PORT" ;;
    kube-apiserver) if [ "$MODE" = real ]; then echo "$NODE_IP:$API_PORT"; else echo "127.0.0.1:$API_PORT"; fi ;;
    kube-controller-manager) echo "127.0.0.1:$KCM_PORT" ;;
    kube-scheduler) echo "127.0.0.1:$SCHED_PORT" ;;
    kubelet-node-[1-9]) node_vars "${1##*-}" && echo "$N_IP:$KUBELET_PORT 127.0.0.1:$N_HEALTHZ" ;;
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
  program="$bins/$(binary_of "$c")"
  case $c in
    containerd-node-*) program=$(command -v containerd) || fail_with_log "$c" "containerd is not installed (bash tests/install-prereqs.sh)" ;;
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
node_ready() { # name
  kubectl_ get node "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' | grep -q True
}
component_healthy() { curl -sfk "https://127.0.0.1:$(addresses_of "$1" | sed 's/.*://')/healthz" | grep -q '^ok$'; }
# The socket answers before the CRI service has recovered its state; a kubelet started then
# exits ("server is not initialized yet"). The CRI service logs its streaming server last.
containerd_ready() { # socket log
  ctr --address "$1" version >/dev/null &&
    awk '/Start cri plugin/ { started = 1; cri = 0 } started && /Start streaming server/ { cri = 1 }
      END { exit !cri }' "$2"
}
# Healthy and past its first sync of the rules (its jumps are in place then).
proxy_synced() {
  curl -sf "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz" >/dev/null &&
    curl -sf "http://127.0.0.1:$PROXY_METRICS_PORT/metrics" |
    grep -q '^kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} [1-9]'
}

start_one() {
  local c=$1 bins=$2
  case $c in
    containerd-node-* | kubelet-node-*) start_nodes "$bins" no-images "${c##*-}"; return ;;
  esac
  start_component "$c" "$bins"
  case $c in
    etcd) wait_until etcd "healthy" etcd_healthy ;;
    kube-apiserver) wait_until kube-apiserver "ready (/readyz)" apiserver_ready ;;
    kube-proxy) wait_until kube-proxy "healthy and synced" proxy_synced ;;
    *) wait_until "$c" "healthy (/healthz)" component_healthy "$c" ;;
  esac
  # kube-proxy puts its jumps first in the built-in chains: ours go back on top.
  [ "$c" != kube-proxy ] || ensure_jumps
}

# Node I's cgroup root in every cgroup hierarchy. A new cpuset starts with no CPUs and no memory
# nodes, in which nothing can run: they are copied from the top.
make_cgroup_root() {
  local h d
  for h in /sys/fs/cgroup/*/; do
    d="${h%/}/recommender"
    mkdir -p "$d${N_CGROUP#/recommender}" 2>/dev/null || continue
    if [ -f "${h}cpuset.cpus" ]; then
      for d in "$d" "$d${N_CGROUP#/recommender}"; do
        [ -n "$(cat "$d/cpuset.cpus")" ] || cat "${h}cpuset.cpus" >"$d/cpuset.cpus"
        [ -n "$(cat "$d/cpuset.mems")" ] || cat "${h}cpuset.mems" >"$d/cpuset.mems"
      done
    fi
  done
}

# Starts the given nodes together: their containerds, the pause and CoreDNS images (unless
# `no-images`), then their kubelets, each waited for once all of its kind have been started.
# A node whose containerd and kubelet are both down boots clean, as a machine after a power cut:
# no mounts, and no runtime state (containerd's `state`, tmpfs on a real machine).
start_nodes() { # bins images|no-images I...
  local bins=$1 images=$2 i socks=()
  shift 2
  for i in "$@"; do
    node_vars "$i"
    if ! pid_of "containerd-$N_NAME" >/dev/null && ! pid_of "kubelet-$N_NAME" >/dev/null; then
      kill_shims "$N_SOCK"
      unmount_under "$N_DIR"
      remove_unmounted "$N_DIR/containerd/state" || true
    fi
    make_cgroup_root
    start_component "containerd-$N_NAME" "$bins"
  done
  for i in "$@"; do
    node_vars "$i"
    wait_until "containerd-$N_NAME" "answering on $N_SOCK" containerd_ready "$N_SOCK" "$LOGS/containerd-$N_NAME.log"
    socks+=("$N_SOCK")
  done
  if [ "$images" = images ]; then
    RECOMMENDER_K8S_BIN="$bins" RECOMMENDER_CONTAINERD_ADDRESSES="$(IFS=,; echo "${socks[*]}")" \
      RECOMMENDER_STATE="$STATE" "$HERE/images.sh" >/dev/null </dev/null ||
      fail_with_log "containerd-$N_NAME" "building or importing the pause and CoreDNS images failed"
  fi
  for i in "$@"; do
    node_vars "$i"
    start_component "kubelet-$N_NAME" "$bins"
  done
  for i in "$@"; do
    node_vars "$i"
    wait_until "kubelet-$N_NAME" "Ready as Node $N_NAME" node_ready "$N_NAME"
  done
  # kubelets put their jumps first in the built-in chains: ours go back on top.
  ensure_jumps
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

# Stops every container and sandbox of a node's containerd and removes their network
# namespaces (which removes their veths).
remove_containers() { # socket log
  local c=(ctr --address "$1" --namespace k8s.io) ids id netns=() ns
  containerd_ready "$1" "$2" >/dev/null 2>&1 || return 0
  ids=$("${c[@]}" containers ls -q 2>/dev/null || true)
  [ -n "$ids" ] || return 0
  log "removing $(echo "$ids" | wc -l) containers and sandboxes of $(basename "$(dirname "$1")")"
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

# containerd-shim processes of a node's containerd (found by its socket in their command line)
# that outlived their containers.
kill_shims() { # socket
  local f p
  for f in $(grep -lsaF -- "$1" /proc/[0-9]*/cmdline || true); do
    p=${f#/proc/}
    p=${p%/cmdline}
    case $(cat "/proc/$p/comm" 2>/dev/null || true) in containerd-shim*) kill -KILL "$p" 2>/dev/null || true ;; esac
  done
}

# The processes of node I's pods: every process in its cgroup root, in any hierarchy.
node_processes() {
  find /sys/fs/cgroup/*/recommender/"$N_NAME" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u
}

node_down() {
  local bins i kubelets=() containerds=()
  bins=$(cat "$STATE/bin-dir" 2>/dev/null || true)
  for i in $(node_indices); do
    node_vars "$i"
    kubelets+=("kubelet-$N_NAME")
    containerds+=("containerd-$N_NAME")
  done
  # The controllers too: nothing should create or schedule pods while the nodes go away.
  stop_component kube-proxy "${kubelets[@]}" kube-scheduler kube-controller-manager
  for i in $(node_indices); do
    node_vars "$i"
    remove_containers "$N_SOCK" "$LOGS/containerd-$N_NAME.log"
  done
  stop_component "${containerds[@]}"
  for i in $(node_indices); do
    node_vars "$i"
    kill_shims "$N_SOCK"
  done
  unmount_under "$STATE"
  # kubelet links container logs from this fixed folder.
  find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete 2>/dev/null || true
  if [ -n "$bins" ] && [ -x "$bins/kube-proxy" ] && net_ours; then
    "$bins/kube-proxy" --cleanup --v=0 >>"$LOGS/kube-proxy.log" 2>&1 || true
  fi
  # The nodes' cgroup roots and what the kubelets made in them (rmdir refuses any that still
  # holds a process).
  find /sys/fs/cgroup/*/recommender -depth -type d -exec rmdir {} + 2>/dev/null || true
  for i in $(node_indices); do
    node_vars "$i"
    remove_unmounted "$N_DIR/kubelet" || true
    remove_unmounted "$N_DIR/containerd/state" || true
    rm -rf "$N_DIR/cni/ipam" "$N_DIR/pod-logs"
  done
}

real_node_leftovers() {
  [ "$(iface_owner)" = "recommender:$STATE" ] || compgen -G "$PIDS/containerd-node-*.pid" >/dev/null ||
    compgen -G "$PIDS/kubelet-node-*.pid" >/dev/null
}

# A node dies: its kubelet, containerd, their shims and every process of its pods get SIGKILL at
# once, as when a machine loses power. Nothing is drained, evicted or told: the control plane
# finds out as it would, from the node's lease going stale. Its pods stop answering (their
# interfaces are gone, as the machine's would be), and what a reboot clears (mounts) is cleared.
cmd_stop_node() {
  local i c pid pids=() links veth netns
  i=$(node_index "$1")
  node_vars "$i"
  # Its pods' interfaces on its bridge, and the network namespaces they lead into.
  links=$(ip -o link show master "$N_BRIDGE" 2>/dev/null || true)
  for c in "kubelet-$N_NAME" "containerd-$N_NAME"; do
    if pid=$(pid_of "$c"); then
      kill -KILL "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  kill_shims "$N_SOCK"
  for _ in $(seq 1 50); do
    pid=$(node_processes)
    [ -n "$pid" ] || break
    # shellcheck disable=SC2086
    kill -KILL $pid 2>/dev/null || true
    sleep 0.1
  done
  [ -z "$(node_processes)" ] || die "processes of $N_NAME's pods survive SIGKILL: $(node_processes | tr '\n' ' ')"
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do running "$pid" || break; sleep 0.1; done
  done
  rm -f "$PIDS/kubelet-$N_NAME.pid" "$PIDS/containerd-$N_NAME.pid"
  while read -r veth netns; do
    [ -n "$veth" ] || continue
    ip link del "$veth" 2>/dev/null || true
    if [ -n "$netns" ] && [ -e "/run/netns/$netns" ]; then
      umount "/run/netns/$netns" 2>/dev/null || true
      rm -f "/run/netns/$netns"
    fi
  done < <(awk '{
      name = $2; sub(/@.*/, "", name); sub(/:$/, "", name); ns = ""
      for (f = 1; f < NF; f++) if ($f == "link-netns") ns = $(f + 1)
      print name, ns
    }' <<<"$links")
  unmount_under "$N_DIR"
  log "$N_NAME stopped: kubelet, containerd and the processes of its pods killed, its pods' interfaces removed"
}

cmd_start_node() {
  local i
  i=$(node_index "$1")
  [ "$MODE" = real ] || die "this cluster has no real nodes"
  apiserver_ready || die "the API server is not ready: 'up' the cluster first"
  start_nodes "$(bin_dir)" no-images "$i"
  node_vars "$i"
  log "$N_NAME Ready"
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
  local bins c wanted count i
  command -v openssl >/dev/null || die "openssl is required"
  command -v curl >/dev/null || die "curl is required"
  wanted=$(mode_from_env)
  if pid_of etcd >/dev/null && [ -n "$(recorded_mode)" ] && [ "$(recorded_mode)" != "$wanted" ]; then
    die "this cluster runs with a '$(recorded_mode)' node; 'down' it before starting it with '$wanted'"
  fi
  MODE=$wanted
  [ "$MODE" != real ] || check_real_prereqs
  [ "$MODE" != real ] || net_ours ||
    die "$NODE_IFACE belongs to another cluster ($(iface_owner)); one real cluster per machine: stop that cluster first"
  bins=$(bin_dir) || die "building the binaries failed (see the output above)"
  for c in "${CONTROL_PLANE[@]}"; do [ -x "$bins/$c" ] || die "$bins/$c is missing after build"; done
  mkdir -p "$STATE" "$LOGS" "$PIDS"
  echo "$bins" >"$STATE/bin-dir"
  echo "$MODE" >"$STATE/node-mode"
  # A running cluster keeps the nodes it has and gets those it lacks.
  count=$(wanted_nodes)
  [ "$count" -ge "$(cat "$STATE/node-count" 2>/dev/null || echo 0)" ] || count=$(cat "$STATE/node-count")
  echo "$count" >"$STATE/node-count"
  # A fresh cluster starts with an empty etcd, unless asked to keep it, and with empty local
  # volumes: what an earlier cluster's pods wrote there belongs to objects this etcd never had
  # (the demo's first run would find "v1.model" already written).
  if ! pid_of etcd >/dev/null && [ "${RECOMMENDER_KEEP_DATA:-0}" != 1 ]; then
    rm -rf "$STATE/etcd-data" "$VOLUMES"
  fi
  gen_pki
  write_kubeconfig "$KUBECONFIG_PATH" admin kubernetes-admin
  write_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  write_kubeconfig "$STATE/scheduler.kubeconfig" scheduler system:kube-scheduler
  UP_IN_PROGRESS=1
  if [ "$MODE" = real ]; then
    write_kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy system:kube-proxy "https://$NODE_IP:$API_PORT"
    for i in $(node_indices); do write_node_config "$bins" "$i"; done
    write_proxy_config
    net_up
  fi
  for c in "${CONTROL_PLANE[@]}"; do start_one "$c" "$bins"; done
  case $MODE in
    real) up_real_nodes "$bins" ;;
    none) log "RECOMMENDER_NODE=none: no node, pods will stay Pending" ;;
  esac
  UP_IN_PROGRESS=0
  log "cluster ready ($MODE nodes): export KUBECONFIG=$KUBECONFIG_PATH"
  [ "$MODE" != real ] || log "$(ready_summary)"
}

# "3 nodes ready: node-1 (zone-a, 10.250.0.1), ...": what a log of the suite shows it ran on.
ready_summary() {
  local i count=0 list=()
  for i in $(node_indices); do
    node_vars "$i"
    node_ready "$N_NAME" 2>/dev/null || continue
    count=$((count + 1))
    list+=("$N_NAME ($N_ZONE, $N_IP)")
  done
  local joined
  joined=$(printf '%s, ' "${list[@]}")
  if [ "$count" = 1 ]; then echo "1 node ready: ${joined%, }"; else echo "$count nodes ready: ${joined%, }"; fi
}

up_real_nodes() {
  local bins=$1 deadline replicas=1
  bootstrap_manifests | kubectl_ apply -f - >/dev/null || fail_with_log kube-apiserver "could not create the kubelet client's RBAC binding"
  # shellcheck disable=SC2046
  start_nodes "$bins" images $(node_indices)
  start_one kube-proxy "$bins"
  [ "$(node_count)" = 1 ] || replicas=2
  coredns_manifests "$(coredns_image "$bins")" "$replicas" | kubectl_ apply -f - >/dev/null || fail_with_log kube-apiserver "could not create CoreDNS"
  deadline=$((SECONDS + READY_TIMEOUT))
  until [ "$(kubectl_ -n kube-system get deployment coredns -o 'jsonpath={.status.availableReplicas}' 2>/dev/null)" = "$replicas" ]; do
    if [ $SECONDS -ge $deadline ]; then
      kubectl_ -n kube-system get pods -o wide >&2 || true
      kubectl_ -n kube-system get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 15 >&2 || true
      fail_with_log kubelet-node-1 "CoreDNS not available after ${READY_TIMEOUT}s"
    fi
    sleep 0.5
  done
  log "CoreDNS available at $DNS_IP ($replicas replicas)"
}

cmd_down() {
  local c real=0
  if [ "$(recorded_mode)" = real ] || real_node_leftovers; then real=1; fi
  [ $real = 0 ] || node_down
  # Reverse order: controllers first so they do not log errors about a vanished API server.
  stop_component kube-scheduler kube-controller-manager
  for c in kube-apiserver etcd; do stop_component "$c"; done
  [ $real = 0 ] || net_down
  rm -f "$STATE/node-mode" "$STATE/node-count"
}

# Comma-separated, in node order: what `env` prints of every node.
nodes_list() { # N_* variable name
  local i out=()
  for i in $(node_indices); do
    node_vars "$i"
    out+=("${!1}")
  done
  (IFS=,; echo "${out[*]}")
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
  echo "export RECOMMENDER_AUDIT_LOG=$LOGS/audit.log"
  if [ "$MODE" = real ]; then
    node_vars 1
    echo "export RECOMMENDER_NODE_NAME=$N_NAME"
    echo "export RECOMMENDER_NODE_IP=$NODE_IP"
    echo "export RECOMMENDER_CONTAINERD_ADDRESS=$N_SOCK"
    echo "export RECOMMENDER_BRIDGE=$N_BRIDGE"
    echo "export RECOMMENDER_NODE_NAMES=$(nodes_list N_NAME)"
    echo "export RECOMMENDER_NODE_IPS=$(nodes_list N_IP)"
    echo "export RECOMMENDER_NODE_ZONES=$(nodes_list N_ZONE)"
    echo "export RECOMMENDER_BRIDGES=$(nodes_list N_BRIDGE)"
    echo "export RECOMMENDER_POD_SUBNETS=$(nodes_list N_SUBNET)"
    echo "export RECOMMENDER_CONTAINERD_ADDRESSES=$(nodes_list N_SOCK)"
    echo "export RECOMMENDER_POD_CIDR=$CLUSTER_CIDR"
    echo "export RECOMMENDER_SERVICE_CIDR=$SERVICE_CIDR"
    echo "export RECOMMENDER_DNS_IP=$DNS_IP"
    echo "export RECOMMENDER_VOLUMES_DIR=$VOLUMES"
  fi
}

all_components() {
  local i out=("${CONTROL_PLANE[@]}")
  if [ "$MODE" = real ]; then
    out+=(kube-proxy)
    for i in $(node_indices); do out+=("containerd-node-$i" "kubelet-node-$i"); done
  fi
  echo "${out[*]}"
}

cmd_status() {
  local c pid rc=0
  for c in $(all_components); do
    if pid=$(pid_of "$c"); then
      printf '%-24s running (pid %s)\n' "$c" "$pid"
    else
      printf '%-24s stopped\n' "$c"
      rc=1
    fi
  done
  if apiserver_ready; then echo "apiserver /readyz: ok"; else echo "apiserver /readyz: not ready"; rc=1; fi
  return $rc
}

cmd_nodes() {
  local i ready
  [ "$MODE" = real ] || die "this cluster has no real nodes"
  printf '%-8s %-7s %-12s %-7s %-15s %s\n' NAME ZONE ADDRESS BRIDGE POD-SUBNET READY
  for i in $(node_indices); do
    node_vars "$i"
    ready=$(kubectl_ get node "$N_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    printf '%-8s %-7s %-12s %-7s %-15s %s\n' "$N_NAME" "$N_ZONE" "$N_IP" "$N_BRIDGE" "$N_SUBNET" "${ready:-unknown}"
  done
}

valid_component() {
  local c
  for c in $(all_components); do [ "$c" = "${1:-}" ] && return; done
  die "unknown component '${1:-}' (one of: $(all_components))"
}

case "${1:-}" in
  stop | start | restart) valid_component "${2:-}" ;;
  stop-node | start-node) [ -n "${2:-}" ] || die "usage: $0 $1 NODE (node-1 to node-$(node_count))" ;;
esac
case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  nodes) cmd_nodes ;;
  stop) stop_component "$2" ;;
  start) start_one "$2" "$(bin_dir)" ;;
  restart) stop_component "${2:?component}" && start_one "$2" "$(bin_dir)" ;;
  stop-node) cmd_stop_node "$2" ;;
  start-node) cmd_start_node "$2" ;;
  *)
    echo "usage: $0 up|down|env|status|nodes|stop COMPONENT|start COMPONENT|restart COMPONENT|stop-node NODE|start-node NODE" >&2
    exit 2
    ;;
esac
