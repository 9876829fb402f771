# Sourced by the trainer benchmarks (run.sh, large.sh): where the repository and the generated
# data sets are, GNU time, and gen() for a synthetic set (needs $bin, the trainer).
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${RECOMMENDER_CACHE:-$HOME/.cache/recommender-operator}
data=$cache/bench-data
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time, Debian package 'time')" >&2; exit 1; }
mkdir -p "$data"

gen() { # name ratings users items
    [ -s "$data/$1.tsv" ] || "$bin" generate --ratings "$2" --users "$3" --items "$4" \
        --rank 10 --seed 7 --out "$data/$1.tsv"
}
