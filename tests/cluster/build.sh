#!/usr/bin/env bash
# Builds pinned upstream Kubernetes binaries from their Go modules into a cache folder outside the
# repository, keyed by version, and prints that folder. A second run is a no-op.
#   control plane: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, helm
#   node:          kubelet and kube-proxy (same wrapper module), coredns (`go install`) and pause
#                  (upstream build/pause/linux/pause.c from the k8s.io/kubernetes module,
#                  `gcc -Os -static`). coredns and pause live in folders keyed by their own
#                  versions and are linked into the printed folder, with coredns.version and
#                  pause.version beside them (the image tags).
#
# Why a wrapper module: k8s.io/kubernetes replaces its staging modules with ./staging paths that a
# module zip does not carry, so `go install` is refused; pointing those replaces at the published
# staging modules (v0.<minor>.<patch>) makes the same packages buildable.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.19.5}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.4}"
CACHE_ROOT="${RECOMMENDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/recommender-operator}"
BIN_DIR="$CACHE_ROOT/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"

log() { printf '[build] %s\n' "$*" >&2; }

want=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd helm kubelet kube-proxy coredns pause)
missing=()
for b in "${want[@]}"; do [ -x "$BIN_DIR/$b" ] || missing+=("$b"); done
[ "$(cat "$BIN_DIR/coredns.version" 2>/dev/null || true)" = "$COREDNS_VERSION" ] || missing+=(coredns.version)
[ -s "$BIN_DIR/pause.version" ] || missing+=(pause.version)
if [ ${#missing[@]} -eq 0 ]; then
  echo "$BIN_DIR"
  exit 0
fi
log "building into $BIN_DIR: ${missing[*]}"
mkdir -p "$BIN_DIR"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
work="$CACHE_ROOT/src"
mkdir -p "$work"

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)

build_k8s() {
  local dir="$work/k8s-$K8S_VERSION" staging_version="v0.${K8S_VERSION#v1.}" b todo=0
  for b in "${K8S_CMDS[@]}"; do [ -x "$BIN_DIR/$b" ] || todo=1; done
  [ $todo = 1 ] || return 0
  mkdir -p "$dir"
  local modfile
  modfile=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module local/k8sbuild"
    echo
    grep -E '^go ' "$modfile"
    grep -E '^godebug ' "$modfile" || true
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n '/^replace (/,/^)/p' "$modfile" | grep '=> ./staging' | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  (cd "$dir" && go mod tidy -e >/dev/null 2>&1) || true
  for b in "${K8S_CMDS[@]}"; do
    [ -x "$BIN_DIR/$b" ] && continue
    log "go build $b $K8S_VERSION"
    (cd "$dir" && go build -trimpath -ldflags "$ld" -o "$BIN_DIR/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
  done
}

build_etcd() {
  [ -x "$BIN_DIR/etcd" ] && return
  local dir="$work/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  local src
  src=$(cd "$dir" && go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$dir/server" && cp -r "$src" "$dir/server" && chmod -R u+w "$dir/server"
  log "go build etcd $ETCD_VERSION"
  # The module's go.mod replaces sibling modules by relative path; drop those so the published
  # versions are used instead.
  (cd "$dir/server" && sed -i '/=> \.\.\//d' go.mod && go mod tidy >/dev/null 2>&1) || true
  (cd "$dir/server" && go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" .)
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
}

build_helm() {
  [ -x "$BIN_DIR/helm" ] && return
  log "go install helm $HELM_VERSION"
  GOBIN="$BIN_DIR" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# CoreDNS has no replace directives: `go install` works as is.
build_coredns() {
  local dir="$CACHE_ROOT/bin/coredns-$COREDNS_VERSION"
  if [ ! -x "$dir/coredns" ]; then
    log "go install coredns $COREDNS_VERSION"
    mkdir -p "$dir"
    GOBIN="$dir" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
  fi
  ln -sfn "$dir/coredns" "$BIN_DIR/coredns"
  echo "$COREDNS_VERSION" >"$BIN_DIR/coredns.version"
}

# The sandbox ("pause") binary, as upstream's build/pause/Makefile compiles it; its TAG is the
# image version.
build_pause() {
  local dir="$CACHE_ROOT/bin/pause-k8s-$K8S_VERSION" src tag
  command -v gcc >/dev/null || { log "gcc is missing (bash tests/install-prereqs.sh)"; exit 1; }
  src=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/build/pause
  tag=$(sed -n 's/^TAG ?= *//p' "$src/Makefile")
  [ -n "$tag" ] || { log "no TAG in $src/Makefile"; exit 1; }
  if [ ! -x "$dir/pause" ] || [ "$(cat "$dir/pause.version" 2>/dev/null || true)" != "$tag" ]; then
    log "gcc -static pause $tag (k8s.io/kubernetes $K8S_VERSION)"
    mkdir -p "$dir"
    gcc -Os -Wall -Werror -static -DVERSION="v$tag-$K8S_VERSION" -o "$dir/pause.tmp" "$src/linux/pause.c"
    mv "$dir/pause.tmp" "$dir/pause"
    echo "$tag" >"$dir/pause.version"
  fi
  ln -sfn "$dir/pause" "$BIN_DIR/pause"
  cp "$dir/pause.version" "$BIN_DIR/pause.version"
}

build_etcd
build_helm
build_k8s
build_coredns
build_pause
echo "$BIN_DIR"
