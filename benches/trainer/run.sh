#!/usr/bin/env bash
# Surprise's SVD() against recommender-trainer, side by side on this machine.
#
#   benches/trainer/run.sh            # ml-100k and synthetic 100k x 10k items 5-fold, synthetic 1M
#                                     # (both), synthetic 10M (ours); the SGD step alone
#                                     # (trainer/examples/sgd_bench.rs)
#   SURPRISE_10M=1 benches/trainer/run.sh   # also run Surprise on 10M (slow: tens of minutes, GBs)
#
# Installs scikit-surprise from PyPI into a venv outside the repository
# (~/.cache/recommender-operator/surprise-venv), builds the trainer in release mode, and writes
# the table to docs/benchmarks-trainer.md. MovieLens 100k is read from ../shared/datasets.
set -euo pipefail

source "$(dirname "$0")/common.sh"
venv=$cache/surprise-venv
ml100k=${ML100K:-$repo/../shared/datasets/ml-100k/u.data}
folds=5
seed=${SEED:-1}
out=$repo/docs/benchmarks-trainer.md
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

[ -f "$ml100k" ] || { echo "MovieLens 100k not found at $ml100k" >&2; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import surprise' 2>/dev/null || "$venv/bin/pip" install -q scikit-surprise
surprise_version=$("$venv/bin/python" -c 'import surprise; print(surprise.__version__)')

(cd "$repo" && cargo build --release -q -p recommender-trainer --bins --example sgd_bench)
bin=$repo/target/release/recommender-trainer
sgd_bench=$repo/target/release/examples/sgd_bench

# The issue-15 shape: few users, a large catalogue, so ranking every item weighs on the CV.
gen synthetic-100k-10k 100000 600 10000
gen synthetic-1m 1000000 20000 5000
gen synthetic-10m 10000000 200000 20000
gen synthetic-5m-5k 5000000 100000 5000
gen synthetic-10m-5k 10000000 200000 5000

# measure NAME IMPL THREADS -- command...: runs under GNU time, keeps JSON + wall + RSS.
measure() { # name impl threads reps -- command...
    local name=$1 impl=$2 threads=$3 reps=$4; shift 5
    local tag="$name.$impl.$threads" r
    for r in $(seq 1 "$reps"); do
        echo ">> $name: $impl ($threads thread(s)), run $r of $reps" >&2
        cut -d' ' -f1 /proc/loadavg > "$results/$tag.load.$r"
        RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads \
            /usr/bin/time -v -o "$results/$tag.time.$r" "$@" > "$results/$tag.out"
    done
    printf '%s\t%s\t%s\n' "$name" "$impl" "$threads" >> "$results/index"
}

# The 100k-rating runs take seconds, so each is repeated and the table shows the median.
reps_small=${REPS:-3}
for set in ml-100k synthetic-100k-10k synthetic-1m synthetic-10m; do
    file=$data/$set.tsv
    reps=1
    [ "$set" = ml-100k ] && file=$ml100k
    [ "$set" = ml-100k ] || [ "$set" = synthetic-100k-10k ] && reps=$reps_small
    if [ "$set" != synthetic-10m ] || [ "${SURPRISE_10M:-0}" = 1 ]; then
        measure "$set" surprise 1 "$reps" -- "$venv/bin/python" "$repo/benches/trainer/surprise_cv.py" "$file" $folds "$seed"
    fi
    ours=("$bin" evaluate --source "$file" --format ml-100k --folds $folds --seed "$seed" --json --report /dev/null)
    measure "$set" ours 2 "$reps" -- "${ours[@]}"
    measure "$set" ours 1 "$reps" -- "${ours[@]}"
done
# Each fit on both threads (in blocks), the folds one after another.
measure synthetic-10m ours-fit2 2 1 -- "$bin" evaluate --source "$data/synthetic-10m.tsv" --format ml-100k \
    --folds $folds --seed "$seed" --fit-threads 2 --json --report /dev/null

# The SGD step alone: ns per update at 50/100/200 factors on ml-100k, one thread; then one fit of
# the 10M set on one and on two threads.
echo ">> SGD step: ml-100k" >&2
"$sgd_bench" "$ml100k" --reps "${REPS_SGD:-5}" > "$results/sgd-ml-100k.md"
echo ">> SGD step: synthetic-10m, 1 and 2 threads" >&2
"$sgd_bench" "$data/synthetic-10m.tsv" --reps 1 --factors 100 --fit-threads 1,2 > "$results/sgd-10m.md"

# Growth with the number of ratings alone: the same 5k-item catalogue, users growing with the
# ratings (the 10M set above also has 4x the items, which adds cache misses).
for set in synthetic-5m-5k synthetic-10m-5k; do
    ours=("$bin" evaluate --source "$data/$set.tsv" --format ml-100k --folds $folds --seed "$seed" --json --report /dev/null)
    measure "$set" ours 1 1 -- "${ours[@]}"
done

"$venv/bin/python" "$repo/benches/trainer/table.py" "$results" "$surprise_version" > "$out"
cat "$out"
