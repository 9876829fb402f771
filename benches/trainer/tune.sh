#!/usr/bin/env bash
# Hyperparameter search on MovieLens 100k, 4-fold CV, in one run: our `recommender-trainer tune`
# (benches/trainer/tune-ml100k.yaml, at most 30 trial runs) and LIBMF's best of a small grid
# (benches/trainer/libmf, the C++ library through the `libmf` crate) on the same folds.
#
#   benches/trainer/tune.sh            # prints both tables and a summary in Markdown
#
# Builds both in release mode. MovieLens 100k is read from ../shared/datasets (ML100K= to change).
set -euo pipefail

source "$(dirname "$0")/common.sh"
ml100k=${ML100K:-$repo/../shared/datasets/ml-100k/u.data}
seed=${SEED:-1}
folds=4
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

[ -f "$ml100k" ] || { echo "MovieLens 100k not found at $ml100k" >&2; exit 1; }

(cd "$repo" && cargo build --release -q -p recommender-trainer -p recommender-bench-libmf)
bin=$repo/target/release/recommender-trainer
libmf=$repo/target/release/recommender-bench-libmf

echo ">> tune (our trainer), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
/usr/bin/time -v -o "$out/tune.time" "$bin" tune --source "$ml100k" --format ml-100k --folds $folds \
    --spec "$repo/benches/trainer/tune-ml100k.yaml" --seed "$seed" --out "$out/search.json" \
    > "$out/tune.txt"
echo ">> LIBMF grid, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
/usr/bin/time -v -o "$out/libmf.time" "$libmf" "$ml100k" --folds $folds --seed "$seed" --threads 2 \
    > "$out/libmf.txt"

wall() { grep 'Elapsed (wall clock)' "$1" | awk '{print $NF}'; }
rss() { awk '/Maximum resident/ {printf "%.0f", $NF / 1024}' "$1"; }
best_tune=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); b=r["best"]; print("%.4f %s" % (b["score"]["rmse"], b["params"]))' "$out/search.json")
trials=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(len(r["trials"]), sum(1 for t in r["trials"] if "error" in t))' "$out/search.json")

echo "## Tuning on ml-100k, ${folds}-fold CV (seed $seed)"
echo
echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
echo "- Load after the run: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 minutes)"
echo
echo "| what | best RMSE | trials (failed) | wall | peak RSS MiB |"
echo "|---|---|---|---|---|"
echo "| recommender-trainer tune (halving, ≤ 30 trial runs) | ${best_tune%% *} | ${trials% *} (${trials#* }) | $(wall "$out/tune.time") | $(rss "$out/tune.time") |"
echo "| LIBMF, best of $(($(wc -l < "$out/libmf.txt") - 3)) settings, 2 threads | $(awk '/^best:/ {print $6}' "$out/libmf.txt") | $(($(wc -l < "$out/libmf.txt") - 3)) | $(wall "$out/libmf.time") | $(rss "$out/libmf.time") |"
echo
echo "Best point: ${best_tune#* }"
echo
echo '```'
cat "$out/tune.txt"
echo '```'
echo
echo '```'
cat "$out/libmf.txt"
echo '```'
