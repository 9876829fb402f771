#!/usr/bin/env bash
# The supply-chain policy of deny.toml, checked without the network (CI runs it as is):
#
#   bash tests/deny/run.sh
#
# 1. `cargo deny --offline check licenses bans sources` for each Linux target the images are built
#    for (x86_64 from deny.toml, aarch64 by --target): allowed licences only, no banned crate, no
#    new duplicate version, crates.io as the only source; and the fuzz workspace by fuzz/deny.toml.
# 2. mutants.py: the same checks on the workspace's metadata with one bad dependency added each
#    time (OpenSSL, aws-lc-rs, a git source, another registry, GPL, a second version) must fail.
#
# Advisories are not checked here: they need the RustSec database from GitHub, which CI cannot
# reach. Where it can: `cargo deny check advisories` (docs/production.md, "Supply chain").
#
# cargo-deny is pinned (CARGO_DENY_VERSION): the one on PATH when it is that version, else
# `cargo install --locked` into the tools cache once (about 11 minutes on 2 cores).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CARGO_DENY_VERSION="${CARGO_DENY_VERSION:-0.20.2}"
TARGETS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu)
source "$ROOT/tests/lib.sh"

CARGO_DENY="$(pinned_cargo_tool cargo-deny "$CARGO_DENY_VERSION")"
cd "$ROOT"
echo "== $("$CARGO_DENY" --version) on deny.toml"
for target in "${TARGETS[@]}"; do
  # cargo metadata --offline needs every crate of the target's graph on disk: a no-op once clippy
  # and the build have fetched them, a download from crates.io on a fresh machine.
  cargo fetch --locked --target "$target" --quiet
  "$CARGO_DENY" --offline --locked --color never --target "$target" check licenses bans sources
  echo "ok   licences, bans and sources for $target"
done
# The fuzz targets' own workspace (fuzz/, built into no image) under fuzz/deny.toml: crates.io only
# and the same licences plus libFuzzer's.
cargo fetch --locked --manifest-path fuzz/Cargo.toml --target "${TARGETS[0]}" --quiet
"$CARGO_DENY" --offline --locked --color never --manifest-path fuzz/Cargo.toml \
  check licenses bans sources
echo "ok   licences, bans and sources for fuzz/"

meta="$(mktemp)"
trap 'rm -f "$meta"' EXIT
cargo metadata --format-version 1 --locked --offline --filter-platform "${TARGETS[0]}" >"$meta"
python3 "$HERE/mutants.py" "$CARGO_DENY" "$meta" "$ROOT/deny.toml"
echo "ok   deny.toml fails on each kind of bad dependency"
