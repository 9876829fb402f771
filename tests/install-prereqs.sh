#!/usr/bin/env bash
# Installs what the tests need on a fresh machine and nothing else; a no-op when all is present.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package starts a system cluster on 5432; the tests use their own, so stop it again.
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if [[ " ${need_apt[*]} " == *" postgresql "* ]]; then
    (service postgresql stop || pg_ctlcluster --all stop || true) >/dev/null 2>&1
  fi
fi

for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
command -v go >/dev/null || { echo "Go is required to build the control plane (expected on this machine kind)" >&2; exit 1; }
