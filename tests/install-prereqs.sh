#!/usr/bin/env bash
# Installs what the tests need on a fresh machine and nothing else; a no-op when all is present.
set -euo pipefail
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
# The real node of tests/cluster/cluster.sh: container runtime, CNI plugins, image builder,
# iptables for kubelet and kube-proxy, gcc for the pause binary, nc for the end-to-end tests'
# network tools image.
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v buildah >/dev/null || need_apt+=(buildah)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v conntrack >/dev/null || need_apt+=(conntrack)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v gcc >/dev/null || need_apt+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need_apt+=(libc6-dev)
command -v objcopy >/dev/null || need_apt+=(binutils)
command -v nc.openbsd >/dev/null || need_apt+=(netcat-openbsd)
# The S3 server's forward from the node address to its loopback-only gateway (tests/cluster/s3.sh).
command -v socat >/dev/null || need_apt+=(socat)
[ -s /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages must not start services (containerd, a system PostgreSQL): the tests run their own.
  policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" </dev/null >/dev/null
  [ $created_policy = 0 ] || rm -f "$policy"
  if [[ " ${need_apt[*]} " == *" postgresql "* ]]; then
    (service postgresql stop || pg_ctlcluster --all stop || true) >/dev/null 2>&1
  fi
fi

for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
# The end-to-end suite's runner (tests/nextest.toml): a process per test, several at once, the
# tests that touch the whole cluster alone. Built from crates.io once per machine (a few minutes),
# like the cluster's binaries.
NEXTEST_VERSION=0.9.151
if ! cargo nextest --version 2>/dev/null | grep -q "^cargo-nextest $NEXTEST_VERSION "; then
  echo "building cargo-nextest $NEXTEST_VERSION (once)" >&2
  cargo install --locked --quiet cargo-nextest --version "$NEXTEST_VERSION" \
    --no-default-features --features default-no-update
fi
command -v go >/dev/null || { echo "Go is required to build the control plane (expected on this machine kind)" >&2; exit 1; }
# The live alert tests' Prometheus: Debian's package is built without Kubernetes service discovery,
# so upstream's server is built from its Go module once and cached (tests/cluster/prometheus.sh).
bash "$(dirname "$0")/cluster/prometheus.sh" build >/dev/null
