#!/usr/bin/env bash
# The real node's own lifecycle (cluster.sh), on a running cluster that tests have used:
# `down` leaves no bridge (of any node), interface, service route, KUBE-/CNI-/RECOMMENDER- iptables
# chain, mount under the state dir, process of the cluster, pod network namespace, node cgroup or
# host folder it created behind and restores the sysctls it changed; `up` works again afterwards, and the second `down`
# is as clean. tests/all.sh runs it last, on the cluster the demo and the end-to-end suite ran on.
# What the node does for pods (DNS, Services, containment, logs, exec, port-forward, hardened
# containers) is asserted by the end-to-end tests (tests/tests/node.rs).
#
#   tests/cluster/smoke.sh       the cluster of RECOMMENDER_STATE must be up (real node); it is
#                                down afterwards
#
# Environment: RECOMMENDER_STATE and the ports as in cluster.sh. Needs root.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d /tmp/recommender-smoke.XXXXXX)"
started=$SECONDS
trap 'rm -rf "$WORK"' EXIT

say() { printf '[smoke %3ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
ok() { say "ok: $*"; }
fail() {
  printf '[smoke] FAILED: %s\n' "$*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "the real node needs root"
"$HERE/cluster.sh" status >/dev/null || fail "no running cluster: tests/cluster/cluster.sh up first"
eval "$("$HERE/cluster.sh" env)"
[ "$RECOMMENDER_NODE_MODE" = real ] || fail "the cluster runs without a real node"

# The network namespaces of every node's sandboxes, from containerd's container specs.
our_netns() {
  local id address addresses
  IFS=, read -r -a addresses <<<"$RECOMMENDER_CONTAINERD_ADDRESSES"
  for address in "${addresses[@]}"; do
    for id in $(ctr --address "$address" -n k8s.io containers ls -q); do
      ctr --address "$address" -n k8s.io containers info "$id" | python3 -c '
import json, sys
for n in (json.load(sys.stdin).get("Spec") or {}).get("linux", {}).get("namespaces") or []:
    if n.get("type") == "network" and "/netns/" in n.get("path", ""):
        print(n["path"])'
    done
  done | sort -u
}

check_clean() {
  local what=$1 left d c p bridge bridges
  IFS=, read -r -a bridges <<<"$RECOMMENDER_BRIDGES"
  for bridge in "${bridges[@]}"; do
    [ ! -d "/sys/class/net/$bridge" ] || fail "$what: bridge $bridge still exists"
  done
  left=$(find /sys/fs/cgroup/*/recommender -maxdepth 0 2>/dev/null || true)
  [ -z "$left" ] || fail "$what: the nodes' cgroups are left: $left"
  [ ! -d /sys/class/net/recnode0 ] || fail "$what: interface recnode0 still exists"
  ! ip -4 route show | grep -q "^$RECOMMENDER_SERVICE_CIDR" || fail "$what: a route for the service range is left"
  left=$({ iptables-save; ip6tables-save; } | grep -E '^:(KUBE-|CNI-|RECOMMENDER-)|-j (KUBE-|CNI-|RECOMMENDER-)' || true)
  [ -z "$left" ] || fail "$what: iptables chains left: $left"
  left=$(awk -v s="$RECOMMENDER_STATE/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo)
  [ -z "$left" ] || fail "$what: mounts left: $left"
  for c in "$RECOMMENDER_STATE"/pids/*.pid; do
    [ ! -s "$c" ] || fail "$what: $(basename "$c" .pid) still recorded as running"
  done
  for p in /proc/[0-9]*; do
    case $(tr '\0' ' ' 2>/dev/null <"$p/cmdline" || true) in
      *"$RECOMMENDER_STATE/"*) fail "$what: a process of the cluster is left: $(tr '\0' ' ' <"$p/cmdline")" ;;
    esac
  done
  [ "$(sysctl -n net.ipv4.ip_forward)" = "$(awk '$1 == "net.ipv4.ip_forward" {print $2}' "$WORK/sysctl.before")" ] ||
    fail "$what: net.ipv4.ip_forward not restored"
  while read -r d; do
    [ -z "$d" ] || [ ! -e "$d" ] || fail "$what: $d was created by up and is left"
  done <"$WORK/host-paths.created"
  for p in "${pod_netns[@]}"; do [ ! -e "$p" ] || fail "$what: network namespace $p of a pod is left"; done
}

mapfile -t pod_netns < <(our_netns)
# CoreDNS at least (after the suite, the demo's operator and predictor too).
[ ${#pod_netns[@]} -ge 1 ] || fail "no pod network namespace to check: is CoreDNS running?"
# What `up` recorded of the machine before it changed anything.
cp "$RECOMMENDER_STATE/sysctl.saved" "$WORK/sysctl.before"
cp "$RECOMMENDER_STATE/host-paths.created" "$WORK/host-paths.created" 2>/dev/null || : >"$WORK/host-paths.created"

t0=$SECONDS
"$HERE/cluster.sh" down || fail "cluster.sh down"
check_clean "after down"
ok "down in $((SECONDS - t0))s: no bridge (${RECOMMENDER_BRIDGES//,/, }), interface, route, KUBE-/CNI-/RECOMMENDER- chain, mount, process, pod netns (${#pod_netns[@]}), node cgroup or host folder left; sysctls restored"

t0=$SECONDS
"$HERE/cluster.sh" up || fail "cluster.sh up after down"
ok "up again after down in $((SECONDS - t0))s (every node Ready, CoreDNS available)"
mapfile -t pod_netns < <(our_netns)
"$HERE/cluster.sh" down || fail "cluster.sh down (second)"
check_clean "after the second down"
ok "second down clean"
say "OK: all checks passed"
