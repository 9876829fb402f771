#!/usr/bin/env bash
# What judging a model on new ratings costs (issue 13): the operator's count of new ratings (one
# SQL statement on the database server) and a forward evaluation (`recommender-trainer score`, the
# evaluator Job), over MovieLens 100k and a synthetic 1M-rating table in PostgreSQL.
#
# For each table a v1 is trained on the oldest 70% of the ratings (by time); the count and the
# score then look at the 30% after its snapshot, as the operator would after that much new data.
#
#   bash benches/data/run.sh            (from the repository root; prints a Markdown table)
#
# Environment: RECOMMENDER_PG_STATE (default /tmp/recommender-bench-data-pg), RECOMMENDER_PG_PORT
# (55446), RUNS (3). Starts its own throw-away PostgreSQL (tests/cluster/postgres.sh) and removes
# it at the end; needs no cluster.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export RECOMMENDER_PG_STATE=${RECOMMENDER_PG_STATE:-/tmp/recommender-bench-data-pg}
export RECOMMENDER_PG_PORT=${RECOMMENDER_PG_PORT:-55446}
runs=${RUNS:-3}
work=$(mktemp -d /tmp/bench-data.XXXXXX)
source tests/lib.sh
source tests/stack.sh
cleanup() {
  stack_postgres_down
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q -p recommender-trainer
bin=$repo/target/release/recommender-trainer

stack_postgres_up
url=$RECOMMENDER_TEST_PG_URL
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$url" "$@"; }

# 1M ratings with the trainer benchmark's shape (20k users x 5k items), times spread over a year.
"$bin" generate --ratings 1000000 --users 20000 --items 5000 --rank 10 --seed 7 --out "$work/1m.tsv" >/dev/null
psql_ <<SQL
DROP TABLE IF EXISTS ratings_1m;
CREATE TABLE ratings_1m (LIKE ratings_rating INCLUDING DEFAULTS);
CREATE TEMP TABLE staging (user_id integer, movie_id integer, value float8, ts bigint);
\copy staging FROM '$work/1m.tsv' WITH (FORMAT text, DELIMITER E'\t')
INSERT INTO ratings_1m (user_id, movie_id, value, created_at)
  SELECT user_id, movie_id, round(value)::smallint, to_timestamp(ts) FROM staging ORDER BY ts;
ANALYZE ratings_1m;
SQL

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo
echo "| table | ratings | new (after v1) | count query: median s (runs) | count: peak hash/sort memory | score: median s (runs) | score: peak RSS MiB | score RMSE |"
echo "|---|---|---|---|---|---|---|---|"
for table in ratings_rating ratings_1m; do
  total=$(psql_ -At -c "SELECT count(*) FROM $table")
  cut=$(psql_ -At -c "SELECT extract(epoch FROM percentile_disc(0.7) WITHIN GROUP (ORDER BY created_at))::int8 FROM $table")
  query="SELECT user_id::text, movie_id::text, value::float8, extract(epoch from created_at)::bigint FROM $table"
  pg=(--source postgres --pg-url "$url" --pg-query "$query")
  "$bin" train --source postgres --pg-url "$url" --pg-query "$query WHERE created_at <= to_timestamp($cut)" --folds 2 \
    --out "$work/$table-v1.model" --version v1 --report "$work/$table-train.json" >/dev/null
  # The operator's statement (operator/src/observe/data.rs, count_sql) for a 4-column query
  # whose timestamp is epoch seconds.
  count="WITH r AS (SELECT q.u::text AS u, q.i::text AS i, q.t::int8 AS t FROM ($query) AS q(u, i, r, t)), users AS (SELECT min(t) AS first FROM r GROUP BY u), items AS (SELECT min(t) AS first FROM r GROUP BY i) SELECT (SELECT count(*) FROM r WHERE t > $cut), (SELECT count(*) FROM users WHERE first > $cut), (SELECT count(*) FROM items WHERE first > $cut), (SELECT max(t) FROM r WHERE t > $cut)"
  new=$(psql_ -At -c "$count" | cut -d'|' -f1)
  count_times=()
  for _ in $(seq "$runs"); do
    t0=$(date +%s.%N)
    psql_ -At -c "$count" >/dev/null
    count_times+=("$(echo "$(date +%s.%N) - $t0" | bc)")
  done
  memory=$(psql_ -At -c "EXPLAIN (ANALYZE, FORMAT TEXT) $count" | grep -oE "(Memory Usage|Memory|Peak Memory Usage): [0-9]+kB" | grep -oE "[0-9]+" | sort -n | tail -1)
  score_times=()
  rss=()
  for r in $(seq "$runs"); do
    /usr/bin/time -v -o "$work/$table-score.time.$r" \
      "$bin" score --model "$work/$table-v1.model" "${pg[@]}" --report "$work/$table-score.json" >/dev/null
    score_times+=("$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$work/$table-score.time.$r")")
    rss+=("$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$work/$table-score.time.$r")")
  done
  rmse=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['forward']['rmse'], 4))" "$work/$table-score.json")
  printf '| %s | %s | %s | %s (%s) | %s kB | %s (%s) | %s | %s |\n' \
    "$table" "$total" "$new" \
    "$(printf '%s\n' "${count_times[@]}" | median)" "$(printf '%s ' "${count_times[@]}" | sed 's/ $//')" \
    "${memory:-n/a}" \
    "$(printf '%s\n' "${score_times[@]}" | median)" "$(printf '%s ' "${score_times[@]}" | sed 's/ $//')" \
    "$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)" "$rmse"
done
