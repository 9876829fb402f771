#!/usr/bin/env bash
# Large data on this machine, once: one 5-fold CV of 25M synthetic ratings (wall and peak RSS,
# GNU time; each fit on both threads, the folds one after another) and one fit of 10M ratings on
# 1 and 2 threads (`--fit-threads`, trainer/examples/sgd_bench.rs).
#
#   benches/trainer/large.sh         # prints the figures in Markdown
#
# The sets are generated once into ~/.cache/recommender-operator/bench-data (25M: 162k users x
# 59k items, MovieLens 25M's shape; 10M: run.sh's). Several minutes of wall and ~2 GiB of memory.
set -euo pipefail

source "$(dirname "$0")/common.sh"
seed=${SEED:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

(cd "$repo" && cargo build --release -q -p recommender-trainer --bins --example sgd_bench)
bin=$repo/target/release/recommender-trainer
sgd_bench=$repo/target/release/examples/sgd_bench

gen synthetic-25m 25000000 162000 59000
gen synthetic-10m 10000000 200000 20000

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo ">> 25M ratings, 5-fold CV, load $(load)" >&2
load_before_cv=$(load)
/usr/bin/time -v -o "$out/cv.time" "$bin" evaluate --source "$data/synthetic-25m.tsv" --format ml-100k \
    --folds 5 --seed "$seed" --fit-threads 2 --json --report /dev/null > "$out/cv.json"
echo ">> 10M ratings, one fit on 1 and 2 threads, load $(load)" >&2
load_before_fit=$(load)
"$sgd_bench" "$data/synthetic-10m.tsv" --reps 1 --factors 100 --fit-threads 1,2 > "$out/fit.md"

wall() { grep 'Elapsed (wall clock)' "$1" | awk '{print $NF}'; }
rss() { awk '/Maximum resident/ {printf "%.0f", $NF / 1024}' "$1"; }
rmse=$(python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["folds"]; print("%.4f" % (sum(x["rmse"] for x in f) / len(f)))' "$out/cv.json")

echo "## Large data ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(free -g | awk '/^Mem:/ {print $2}') GiB RAM"
echo "- Load (1, 5, 15 min) before the CV: $load_before_cv; before the fits: $load_before_fit; after: $(load)"
echo
echo "| what | wall | peak RSS MiB | RMSE |"
echo "|---|---|---|---|"
echo "| 25M ratings, 5-fold CV, --fit-threads 2 | $(wall "$out/cv.time") | $(rss "$out/cv.time") | $rmse |"
echo
cat "$out/fit.md"
