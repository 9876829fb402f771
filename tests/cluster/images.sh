#!/usr/bin/env bash
# Builds the local cluster's images without a registry or a daemon (buildah, vfs storage) and
# imports them into the cluster's containerd (namespace k8s.io), so that pods with
# `imagePullPolicy: IfNotPresent` pull nothing.
#
#   images.sh [--test-tools] [BIN_DIR]
#
#   1. localhost/recommender-distroless:debian12, a distroless/cc equivalent assembled from this
#      Debian 12 machine's own files: glibc (libc, libm, ld-linux, ...), libgcc_s, CA
#      certificates, /etc/passwd and /etc/group with root, nobody and nonroot (65532), /tmp.
#   2. with BIN_DIR (cargo's output folder holding recommender-operator, recommender-trainer and
#      recommender-predictor): local/recommender-{operator,trainer,predictor}:dev, built FROM THE
#      PROJECT'S Dockerfile (`buildah bud --target recommender-<x>`) with DISTROLESS = the base
#      above and BINARIES=host-binaries, the binaries stripped of debug info into the context.
#   3. local/pause:<version> (the sandbox image, upstream pause.c compiled by build.sh) and
#      local/coredns:<version> (CoreDNS built by build.sh, on the base above, as 65532).
#   --test-tools: also local/recommender-nettools:dev, the base plus Debian's getent, nc
#      (netcat-openbsd) and sleep with their libraries, for network checks from inside a pod
#      (the end-to-end tests' NetTools, tests/src/nettools.rs): `sleep infinity` as its command,
#      `kubectl exec` the tools.
#   4. imports each into the containerd of every node: the sockets RECOMMENDER_CONTAINERD_ADDRESSES
#      lists (comma-separated; `cluster.sh env` prints it), else RECOMMENDER_CONTAINERD_ADDRESS,
#      else those of every node of the cluster in RECOMMENDER_STATE; into each unless it is
#      already there from the same inputs (a stamp per node, beside its containerd's root).
#
# Re-runs are cheap: every image is keyed by a hash of its inputs (binaries, Dockerfile, base
# files); an image whose inputs did not change is neither rebuilt nor re-imported.
# buildah's storage lives in ${RECOMMENDER_CACHE:-~/.cache/recommender-operator}/buildah.
# Prints the imported image names, one a line. Needs root (buildah, ctr).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
CACHE_ROOT="${RECOMMENDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/recommender-operator}"
STATE="${RECOMMENDER_STATE:-/tmp/recommender-cluster}"
if [ -n "${RECOMMENDER_CONTAINERD_ADDRESSES:-${RECOMMENDER_CONTAINERD_ADDRESS:-}}" ]; then
  IFS=, read -r -a ADDRESSES <<<"${RECOMMENDER_CONTAINERD_ADDRESSES:-$RECOMMENDER_CONTAINERD_ADDRESS}"
else
  ADDRESSES=("$STATE"/nodes/node-*/containerd.sock)
fi
STORE="$CACHE_ROOT/buildah"
BASE=localhost/recommender-distroless:debian12
# Bump to rebuild every image after a change of how they are assembled.
RECIPE=1

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (buildah and containerd's ctr)"
for tool in buildah ctr sha256sum objcopy; do
  command -v "$tool" >/dev/null || die "$tool is missing: bash tests/install-prereqs.sh"
done
TEST_TOOLS=0
if [ "${1:-}" = --test-tools ]; then
  TEST_TOOLS=1
  shift
fi
BIN_DIR="${1:-}"
[ -z "$BIN_DIR" ] || BIN_DIR="$(cd "$BIN_DIR" && pwd)" || die "no folder $1"
for address in "${ADDRESSES[@]}"; do
  [ -S "$address" ] || die "no containerd socket at $address: start the cluster first (tests/cluster/cluster.sh up)"
done

mkdir -p "$STORE"
# buildah's network configuration (it creates /etc/cni/net.d/cni.lock otherwise) stays in its
# storage folder too; no build step here runs anything, so no network is ever set up.
printf '[network]\nnetwork_config_dir = "%s/cni"\n' "$STORE" >"$STORE/containers.conf"
export CONTAINERS_CONF="$STORE/containers.conf"
bah() { buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver vfs "$@"; }
ctr_() { local address=$1; shift; ctr --address "$address" --namespace k8s.io "$@"; }
# A node's stamps: which inputs each image in its containerd was built from.
stamps_of() { echo "$(dirname "$1")/containerd/image-stamps"; }

WORK="$(mktemp -d /tmp/recommender-images.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

# --- 1. the base image --------------------------------------------------------------------------

# What the Rust binaries and Go TLS clients need at run time, from this machine's Debian 12.
BASE_FILES=(
  /lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/libm.so.6
  /lib/x86_64-linux-gnu/libdl.so.2 /lib/x86_64-linux-gnu/libpthread.so.0
  /lib/x86_64-linux-gnu/librt.so.1 /lib/x86_64-linux-gnu/libgcc_s.so.1
  /lib64/ld-linux-x86-64.so.2 /etc/ssl/certs/ca-certificates.crt /etc/os-release
)

base_rootfs() { # dir
  local root=$1 f
  for f in "${BASE_FILES[@]}"; do
    [ -e "$f" ] || die "$f is missing on this machine (expected on Debian 12)"
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
  done
  mkdir -p "$root/tmp" "$root/home/nonroot" "$root/root" "$root/usr/local/bin"
  chmod 1777 "$root/tmp"
  chmod 700 "$root/root"
  chown 65532:65532 "$root/home/nonroot"
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  # Rust's and Go's resolvers read these; the kubelet bind-mounts /etc/resolv.conf and /etc/hosts.
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}

image_exists() { bah inspect --type image "$1" >/dev/null 2>&1; }

stamp_of() { cat "$STORE/stamps/$(echo "$1" | tr '/:' '__')" 2>/dev/null || true; }
set_stamp() { mkdir -p "$STORE/stamps" && echo "$2" >"$STORE/stamps/$(echo "$1" | tr '/:' '__')"; }

build_base() {
  local hash
  hash=$( { echo "recipe $RECIPE"; sha256sum "${BASE_FILES[@]}"; } | sha256sum | cut -c1-16)
  BASE_HASH=$hash
  if image_exists "$BASE" && [ "$(stamp_of "$BASE")" = "$hash" ]; then
    return
  fi
  log "assembling $BASE from this machine's Debian files"
  local root="$WORK/base-rootfs" ctr_id
  mkdir -p "$root"
  base_rootfs "$root"
  ctr_id=$(bah from --quiet scratch)
  bah copy --quiet "$ctr_id" "$root/" / >/dev/null
  bah config --user 65532:65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label org.opencontainers.image.description="distroless/cc-debian12:nonroot equivalent from Debian 12 files" \
    "$ctr_id"
  bah commit --quiet --rm "$ctr_id" "$BASE" >/dev/null
  set_stamp "$BASE" "$hash"
}

# --- import -------------------------------------------------------------------------------------

# containerd's name for an image reference as the kubelet asks for it (`local/x:dev` is
# docker.io/local/x:dev after normalisation).
full_name() {
  case $1 in
    */*/*) case ${1%%/*} in *.* | *:* | localhost) echo "$1"; return ;; esac ;;
  esac
  echo "docker.io/$1"
}

# Into every node that lacks it (or has it from other inputs): pushed out of buildah once,
# imported into each of those nodes' containerd.
import_image() { # buildah-image containerd-name inputs-hash
  local img=$1 name=$2 hash=$3 stamp address wanting=()
  for address in "${ADDRESSES[@]}"; do
    stamp="$(stamps_of "$address")/$(echo "$name" | tr '/:' '__')"
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$hash" ] || [ -z "$(ctr_ "$address" images ls -q "name==$name")" ]; then
      wanting+=("$address")
    fi
  done
  if [ ${#wanting[@]} = 0 ]; then
    log "$name: up to date"
    echo "$name"
    return
  fi
  log "$name: importing into ${#wanting[@]} node(s)"
  rm -f "$WORK/image.tar"
  bah push --quiet "$img" "docker-archive:$WORK/image.tar:$name" >/dev/null
  for address in "${wanting[@]}"; do
    ctr_ "$address" images import "$WORK/image.tar" >/dev/null
    [ -n "$(ctr_ "$address" images ls -q "name==$name")" ] || die "$name is not in containerd at $address after the import"
    mkdir -p "$(stamps_of "$address")"
    echo "$hash" >"$(stamps_of "$address")/$(echo "$name" | tr '/:' '__')"
  done
  rm -f "$WORK/image.tar"
  echo "$name"
}

# --- 2. the project's images --------------------------------------------------------------------

PROJECT=(recommender-operator recommender-trainer recommender-predictor)

# Strips debug info into the build context; reuses the stripped file while the source's size and
# modification time stay the same.
stage_binaries() {
  local ctx=$1 b src key cache="$STORE/stripped"
  mkdir -p "$cache" "$ctx"
  for b in "${PROJECT[@]}"; do
    src="$BIN_DIR/$b"
    [ -x "$src" ] || die "$src is missing (cargo build --bins)"
    key=$(stat -c '%n %s %Y' "$src")
    if [ "$(cat "$cache/$b.key" 2>/dev/null || true)" != "$key" ] || [ ! -s "$cache/$b" ]; then
      objcopy --strip-debug "$src" "$cache/$b.tmp"
      mv "$cache/$b.tmp" "$cache/$b"
      echo "$key" >"$cache/$b.key"
    fi
    ln "$cache/$b" "$ctx/$b" 2>/dev/null || cp "$cache/$b" "$ctx/$b"
  done
}

check_libraries() { # binary: every shared library it needs is in the base image
  local lib
  while read -r lib; do
    case " ${BASE_FILES[*]} " in *"/$lib "*) ;; *) die "$1 needs $lib, which the base image lacks" ;; esac
  done < <(objdump -p "$1" | awk '/NEEDED/ {print $2}')
}

build_project() {
  local ctx="$WORK/context" b hash img dockerfile="$REPO_ROOT/Dockerfile"
  stage_binaries "$ctx"
  for b in "${PROJECT[@]}"; do
    check_libraries "$ctx/$b"
    img="local/$b:dev"
    # Contents only: the context folder's name changes from run to run.
    hash=$( { echo "recipe $RECIPE base $BASE_HASH"; sha256sum <"$dockerfile"; sha256sum <"$ctx/$b"; } | sha256sum | cut -c1-16)
    if ! image_exists "$img" || [ "$(stamp_of "$img")" != "$hash" ]; then
      log "$img: buildah bud --target $b (Dockerfile, BINARIES=host-binaries)"
      # Other binaries in the context are not used by this target; only the stage runs.
      bah bud --quiet --layers=false --target "$b" -f "$dockerfile" \
        --build-arg DISTROLESS="$BASE" --build-arg BINARIES=host-binaries \
        --label "recommender.dev/inputs=$hash" -t "$img" "$ctx" >/dev/null
      set_stamp "$img" "$hash"
    fi
    import_image "$img" "$(full_name "$img")" "$hash"
  done
  # buildah keeps a working container of the instruction-less `binaries` stage and the unnamed
  # image of host-binaries after each build; this storage is ours alone, so drop them all.
  bah rm --all >/dev/null 2>&1 || true
  bah rmi --prune >/dev/null 2>&1 || true
}

# --- 3. pause and CoreDNS -----------------------------------------------------------------------

simple_image() { # name binary dest user port-or-empty
  local img=$1 bin=$2 dest=$3 user=$4 port=$5 hash id from=$BASE
  [ "$user" = 65535 ] && from=scratch
  hash=$( { echo "recipe $RECIPE from $from ${BASE_HASH:-} $dest $user $port"; sha256sum "$bin"; } | sha256sum | cut -c1-16)
  if ! image_exists "$img" || [ "$(stamp_of "$img")" != "$hash" ]; then
    log "$img: from $from with $(basename "$bin")"
    id=$(bah from --quiet "$from")
    bah copy --quiet --chmod 0755 "$id" "$bin" "$dest" >/dev/null
    bah config --user "$user" --entrypoint "[\"$dest\"]" --cmd '' ${port:+--port "$port"} "$id"
    bah commit --quiet --rm "$id" "$img" >/dev/null
    set_stamp "$img" "$hash"
  fi
  import_image "$img" "$(full_name "$img")" "$hash"
}

# Debian's own tools and the libraries ldd finds for them, at the same paths.
test_tools_image() {
  local img=local/recommender-nettools:dev root="$WORK/tools-rootfs" files=() f lib hash id
  for f in /usr/bin/getent /usr/bin/nc.openbsd /usr/bin/sleep; do
    [ -x "$f" ] || die "$f is missing: bash tests/install-prereqs.sh"
    files+=("$f")
    for lib in $(ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do files+=("$lib"); done
  done
  mapfile -t files < <(printf '%s\n' "${files[@]}" | sort -u)
  hash=$( { echo "recipe $RECIPE base $BASE_HASH"; sha256sum "${files[@]}"; } | sha256sum | cut -c1-16)
  if ! image_exists "$img" || [ "$(stamp_of "$img")" != "$hash" ]; then
    log "$img: base + getent, nc, sleep"
    for f in "${files[@]}"; do
      mkdir -p "$root$(dirname "$f")"
      cp -L "$f" "$root$f"
    done
    mv "$root/usr/bin/nc.openbsd" "$root/usr/bin/nc"
    id=$(bah from --quiet "$BASE")
    bah copy --quiet "$id" "$root/" / >/dev/null
    bah config --entrypoint '[]' --cmd '["/usr/bin/sleep", "infinity"]' "$id"
    bah commit --quiet --rm "$id" "$img" >/dev/null
    set_stamp "$img" "$hash"
  fi
  import_image "$img" "$(full_name "$img")" "$hash"
}

K8S_BIN="${RECOMMENDER_K8S_BIN:-$("$HERE/build.sh" </dev/null)}"
build_base
[ -z "$BIN_DIR" ] || build_project
[ $TEST_TOOLS = 0 ] || test_tools_image
# The image names are fixed by build.sh's versions; cluster.sh reads them from the same files.
PAUSE_VERSION=$(cat "$K8S_BIN/pause.version")
COREDNS_VERSION=$(cat "$K8S_BIN/coredns.version")
simple_image "local/pause:$PAUSE_VERSION" "$K8S_BIN/pause" /pause 65535 ""
simple_image "local/coredns:$COREDNS_VERSION" "$K8S_BIN/coredns" /usr/local/bin/coredns 65532 1053/udp
