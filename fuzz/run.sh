#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that read outside input (docs/fuzzing.md): libFuzzer
# through cargo fuzz, on the stable toolchain (no sanitizer: ASan needs nightly).
#
#   bash fuzz/run.sh build                  build every target (cold: several minutes)
#   bash fuzz/run.sh ci [RUNS]              each target over its committed corpus and findings,
#                                           then RUNS (default 50000) mutated inputs from a fixed
#                                           seed, not a time; new inputs go to a
#                                           scratch folder; fails on any crash, panic, leak of
#                                           the limits or time-out
#   bash fuzz/run.sh long TARGET SECONDS    one target from its corpus, new inputs kept in
#                                           fuzz/work/TARGET (not committed); prints the figures
#                                           docs/fuzzing.md records
#   bash fuzz/run.sh cmin TARGET            minimise fuzz/work/TARGET and the committed corpus
#                                           into fuzz/corpus/TARGET (what a long run found, kept)
#   bash fuzz/run.sh seed TARGET            write the target's seed inputs into its corpus
#   bash fuzz/run.sh repro TARGET FILE      run one input (a crash) and show the panic
#   bash fuzz/run.sh list
#
# cargo-fuzz is pinned (CARGO_FUZZ_VERSION): the one on PATH when it is that version, else
# `cargo install --locked` into the tools cache once (about 2 minutes on 2 cores). Crashes are
# saved in fuzz/artifacts/TARGET/; once fixed, each is kept in fuzz/regressions/TARGET/, which
# every mode replays (cmin leaves it alone).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CARGO_FUZZ_VERSION="${CARGO_FUZZ_VERSION:-0.13.2}"
TARGETS=(artifact loaders report predictor sketch)
source "$ROOT/tests/lib.sh"
bin_dir="$HERE/target/x86_64-unknown-linux-gnu/release"
# Each input must finish in 10 s and stay within these: a parser that allocates from a length
# field in its input hits the malloc limit on a few bytes.
LIMITS=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512)

known_target() {
  local t
  for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
  echo "unknown target '$1' (targets: ${TARGETS[*]})" >&2
  exit 2
}

build() {
  local cargo_fuzz
  cargo_fuzz="$(pinned_cargo_tool cargo-fuzz "$CARGO_FUZZ_VERSION")"
  # cargo fuzz has no --locked: check the lock file is current before it could rewrite it.
  cargo metadata --locked --format-version 1 --manifest-path "$HERE/Cargo.toml" >/dev/null
  # Debug assertions on: overflow checks are part of what a run looks for.
  (cd "$ROOT" && nice "$cargo_fuzz" fuzz build --sanitizer none --debug-assertions "$@")
}

# fuzz TARGET OUTPUT_CORPUS ARGS...: runs the target from its committed corpus, new inputs into
# OUTPUT_CORPUS; prints libFuzzer's log to TARGET.log in the output's parent and a summary line.
fuzz() {
  local target="$1" out="$2"
  shift 2
  local log="$out.log" dict=() rc=0
  [ -f "$HERE/dict/$target.dict" ] && dict=(-dict="$HERE/dict/$target.dict")
  # Long enough for a report past 4 KiB (to_json cuts it), a predictor body past its 4 KiB limit,
  # a ratings file of many lines, stats with a dense sketch.
  local max_len=8192
  [ "$target" = sketch ] && max_len=65536
  local regressions=()
  [ -d "$HERE/regressions/$target" ] && regressions=("$HERE/regressions/$target")
  mkdir -p "$out" "$HERE/artifacts/$target" "$HERE/corpus/$target"
  # Each log line starts with the seconds since the start, to see when coverage stopped growing.
  SECONDS=0
  "$bin_dir/$target" "${LIMITS[@]}" "${dict[@]}" -max_len="$max_len" -print_final_stats=1 \
    -artifact_prefix="$HERE/artifacts/$target/" "$@" "$out" "$HERE/corpus/$target" "${regressions[@]}" 2>&1 |
    while IFS= read -r line; do printf '%s %s\n' "$SECONDS" "$line"; done >"$log" || rc=$?
  summary "$target" "$log" "$rc"
  return "$rc"
}

# The figures of one run: executions, rate, coverage (edges) and features at the end, and when
# the last input that added coverage was found.
summary() {
  local target="$1" log="$2" rc="$3"
  local runs rate cov ft corpus last_new
  runs=$(sed -n 's/^[0-9]* stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^[0-9]* stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
  last_new=$(awk '$3 == "NEW" { for (i = 1; i <= NF; i++) if ($i == "cov:" && $(i + 1) > c) { c = $(i + 1); t = $1 } }
    END { print t + 0 }' "$log")
  if [ "$rc" = 0 ]; then
    printf 'ok   %-10s %10s runs %6s/s  cov %5s  ft %6s  corpus %-12s last new edge at %ss\n' \
      "$target" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$last_new"
  else
    printf 'FAIL %-10s exit %s after %s runs; the input and its panic:\n' "$target" "$rc" "${runs:-?}"
    grep -E "panicked at|ERROR: libFuzzer|Test unit written to|^[0-9]+ SUMMARY" "$log" | head -20 || true
    grep -A12 "panicked at" "$log" | head -30 || true
  fi
}

cmd="${1:-}"
case "$cmd" in
  list)
    printf '%s\n' "${TARGETS[@]}"
    ;;
  build)
    build
    ;;
  ci)
    runs="${2:-50000}"
    build
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    failed=0
    started=$(date +%s)
    for target in "${TARGETS[@]}"; do
      fuzz "$target" "$scratch/$target" -seed=1 -runs="$runs" || failed=1
    done
    echo "fuzz ci: ${#TARGETS[@]} targets, $runs runs each after their corpora, in $(($(date +%s) - started)) s"
    exit "$failed"
    ;;
  long)
    target="${2:?usage: run.sh long TARGET SECONDS}"
    seconds="${3:?usage: run.sh long TARGET SECONDS}"
    known_target "$target"
    build "$target"
    work="$HERE/work/$target"
    started=$(date +%s)
    fuzz "$target" "$work" -max_total_time="$seconds" || exit 1
    echo "     $target: $(($(date +%s) - started)) s, log in $work.log"
    ;;
  cmin)
    target="${2:?usage: run.sh cmin TARGET}"
    known_target "$target"
    build "$target"
    merged="$(mktemp -d)"
    trap 'rm -rf "$merged"' EXIT
    mkdir -p "$HERE/work/$target"
    "$bin_dir/$target" "${LIMITS[@]}" -merge=1 "$merged" "$HERE/corpus/$target" "$HERE/work/$target" \
      >"$HERE/work/$target.cmin.log" 2>&1
    rm -rf "$HERE/corpus/$target"
    mkdir -p "$HERE/corpus/$target"
    cp "$merged"/* "$HERE/corpus/$target/"
    files=$(find "$HERE/corpus/$target" -type f | wc -l)
    bytes=$(du -sb "$HERE/corpus/$target" | cut -f1)
    echo "fuzz/corpus/$target: $files files, $bytes bytes"
    ;;
  seed)
    target="${2:?usage: run.sh seed TARGET}"
    known_target "$target"
    build "$target"
    RECOMMENDER_FUZZ_SEEDS="$HERE/corpus/$target" "$bin_dir/$target" -runs=0 >/dev/null 2>&1
    echo "fuzz/corpus/$target: $(find "$HERE/corpus/$target" -type f | wc -l) files"
    ;;
  repro)
    target="${2:?usage: run.sh repro TARGET FILE}"
    file="${3:?usage: run.sh repro TARGET FILE}"
    known_target "$target"
    build "$target"
    RUST_BACKTRACE=1 "$bin_dir/$target" "${LIMITS[@]}" "$file"
    ;;
  *)
    sed -n '2,25p' "$0" >&2
    exit 2
    ;;
esac
