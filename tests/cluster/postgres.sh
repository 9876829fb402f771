#!/usr/bin/env bash
# A throw-away PostgreSQL server on loopback holding MovieLens 100k in a table shaped like the
# Django app's ratings table (ratings_rating). Pods of the real node reach it like an external
# database: when the node address (cluster.sh's NODE_IP) exists, the server listens there too and
# pg_hba admits the pod range (and loopback) only. Start it after `cluster.sh up` (or run `up`
# again afterwards: it restarts the server to add the node address).
#
# TLS: the server also speaks TLS, with a certificate from a CA generated into $STATE/tls (ca.crt
# is what a client verifies against); its subject alternative names are localhost, 127.0.0.1,
# the node address and postgres.$RECOMMENDER_PG_TLS_NAMESPACE.svc.cluster.local (the name pods of
# that namespace use through its selectorless Service). Role `recommender` may connect either
# way; role `recommender_tls` (same password, reads the ratings) only over TLS, like a managed
# database that requires it.
#
#   postgres.sh up      install Debian's postgresql if missing, initdb, start, load the ratings
#   postgres.sh stop    stop the server, keep its data (for "database went away" tests)
#   postgres.sh start   start it again after `stop`
#   postgres.sh down    stop the server and delete its data
#   postgres.sh env     print `export KEY=value` lines (RECOMMENDER_TEST_PG_URL, PG*, and
#                       RECOMMENDER_PG_POD_HOST/_PORT, the address pods use)
#   postgres.sh status  exit 0 when it accepts connections
#
# Environment: RECOMMENDER_PG_STATE (default /tmp/recommender-postgres), RECOMMENDER_PG_PORT
# (55432), RECOMMENDER_PG_PASSWORD (recommender), RECOMMENDER_ML100K (path to u.data; default
# ../shared/datasets/ml-100k/u.data next to the repository), RECOMMENDER_NODE_IP (10.250.0.1),
# RECOMMENDER_POD_CIDR (10.244.0.0/16), RECOMMENDER_PG_TLS_NAMESPACE (e2e-tls).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
STATE="${RECOMMENDER_PG_STATE:-/tmp/recommender-postgres}"
PORT="${RECOMMENDER_PG_PORT:-55432}"
PASSWORD="${RECOMMENDER_PG_PASSWORD:-recommender}"
DATASET="${RECOMMENDER_ML100K:-$REPO_ROOT/../shared/datasets/ml-100k/u.data}"
NODE_IP="${RECOMMENDER_NODE_IP:-10.250.0.1}"
POD_CIDR="${RECOMMENDER_POD_CIDR:-10.244.0.0/16}"
TLS_NAMESPACE="${RECOMMENDER_PG_TLS_NAMESPACE:-e2e-tls}"
DB=recommender
ROLE=recommender
TLS_ROLE=recommender_tls
DATA="$STATE/data"
SOCK="$STATE/socket"
LOG="$STATE/postgres.log"
TLS="$STATE/tls"

log() { printf '[postgres] %s\n' "$*" >&2; }
die() { printf '[postgres] ERROR: %s\n' "$*" >&2; exit 1; }

pg_bin() {
  local initdb
  initdb=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
  [ -x "$initdb" ] && dirname "$initdb"
}

install_postgres() {
  [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and this is not root: apt-get install postgresql"
  log "installing Debian's postgresql (without creating or starting the system cluster)"
  # Keep the package from creating the default cluster and from starting any service.
  mkdir -p /etc/postgresql-common
  if ! grep -q '^create_main_cluster' /etc/postgresql-common/createcluster.conf 2>/dev/null; then
    echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
  fi
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql </dev/null >&2 \
    || { [ $created_policy = 1 ] && rm -f "$policy"; die "apt-get install postgresql failed"; }
  [ $created_policy = 1 ] && rm -f "$policy"
  return 0
}

# initdb refuses to run as root, so as root everything runs as the `postgres` system user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

running() { [ -d "$DATA" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

psql_admin() { as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres "$@"; }

# Loopback, plus the node address while it exists on this machine.
listen_addresses() {
  if ip -4 -o addr show to "$NODE_IP/32" 2>/dev/null | grep -q .; then
    echo "127.0.0.1,$NODE_IP"
  else
    echo 127.0.0.1
  fi
}

# Password logins from loopback and the pod range only (the admin uses the Unix socket); the TLS
# role is refused without TLS (`host` lines match both).
write_hba() {
  printf '%s\n' "# Written by tests/cluster/postgres.sh at every start." \
    "local all all trust" \
    "hostnossl all $TLS_ROLE 0.0.0.0/0 reject" \
    "host all all 127.0.0.1/32 scram-sha-256" \
    "host all all $POD_CIDR scram-sha-256" >"$DATA/pg_hba.conf"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$DATA/pg_hba.conf"; fi
}

# A CA and a server certificate it signed, made once per state folder (P-256; a CA and an
# end-entity certificate as webpki, hence rustls, requires them).
make_tls() {
  [ -s "$TLS/server.crt" ] && [ -s "$TLS/ca.crt" ] && return
  mkdir -p "$TLS"
  cat >"$TLS/openssl.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = recommender test PostgreSQL
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:$NODE_IP, DNS:postgres.$TLS_NAMESPACE.svc.cluster.local, DNS:postgres.$TLS_NAMESPACE.svc
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
CNF
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 -new "${ec[@]}" -keyout "$TLS/ca.key" -out "$TLS/ca.crt" -days 3650 \
    -config "$TLS/openssl.cnf" -extensions ca -subj "/CN=recommender test PostgreSQL CA" 2>/dev/null ||
    die "openssl could not make the test CA"
  openssl req -new "${ec[@]}" -keyout "$TLS/server.key" -out "$TLS/server.csr" \
    -config "$TLS/openssl.cnf" -subj "/CN=postgres" 2>/dev/null || die "openssl could not make the server key"
  openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" -CAcreateserial \
    -out "$TLS/server.crt" -days 825 -extfile "$TLS/openssl.cnf" -extensions server 2>/dev/null ||
    die "openssl could not sign the server certificate"
  # The server refuses a key others can read; clients need ca.crt only.
  chmod 600 "$TLS/server.key" "$TLS/ca.key"
  chmod 644 "$TLS/ca.crt" "$TLS/server.crt"
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$TLS"; fi
  log "TLS certificate for localhost, 127.0.0.1, $NODE_IP, postgres.$TLS_NAMESPACE.svc.cluster.local (CA $TLS/ca.crt)"
}

start_server() {
  local want
  want=$(listen_addresses)
  write_hba
  make_tls
  if running; then
    as_pg "$BIN/pg_ctl" -D "$DATA" reload >/dev/null
    if [ "$(psql_admin -d postgres -At -c 'SHOW listen_addresses')" = "$want" ] &&
      [ "$(psql_admin -d postgres -At -c 'SHOW ssl')" = on ]; then
      log "already running on $want:$PORT"
      return
    fi
    log "restarting to listen on $want with TLS"
    as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "port 127.0.0.1:$PORT is already in use (set RECOMMENDER_PG_PORT)"
  fi
  # fsync off: the data is throw-away and the machine is small.
  # 9>&-: the server does not hold the real node's lock (tests/stack.sh) once the test run ends.
  if ! as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start 9>&- \
    -o "-p $PORT -k $SOCK -c listen_addresses=$want -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c ssl=on -c ssl_cert_file=$TLS/server.crt -c ssl_key_file=$TLS/server.key" >/dev/null; then
    log "last lines of $LOG:"
    tail -n 20 "$LOG" >&2 || true
    die "PostgreSQL did not start"
  fi
  log "running on $want:$PORT (data $DATA, log $LOG)"
}

load_ratings() {
  [ -r "$DATASET" ] || die "MovieLens 100k ratings not found at $DATASET (set RECOMMENDER_ML100K)"
  log "loading $DATASET into $DB.ratings_rating"
  psql_admin -d postgres <<SQL
CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD';
CREATE DATABASE $DB OWNER $ROLE;
SQL
  psql_admin -d "$DB" <<SQL
SET ROLE $ROLE;
CREATE TABLE ratings_rating (
  id bigserial PRIMARY KEY,
  user_id integer NOT NULL,
  movie_id integer NOT NULL,
  value smallint NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE INDEX ratings_rating_user_id ON ratings_rating (user_id);
CREATE INDEX ratings_rating_movie_id ON ratings_rating (movie_id);
SQL
  # Client-side copy: the server's user need not be able to read the dataset's folder.
  psql_admin -d "$DB" -c "SET ROLE $ROLE" \
    -c "CREATE TEMP TABLE staging (user_id integer, movie_id integer, value smallint, ts bigint)" \
    -c "\\copy staging FROM STDIN WITH (FORMAT text, DELIMITER E'\\t')" \
    -c "INSERT INTO ratings_rating (user_id, movie_id, value, created_at)
        SELECT user_id, movie_id, value, to_timestamp(ts) FROM staging ORDER BY ts" \
    -c "ANALYZE ratings_rating" <"$DATASET"
  local n
  n=$(psql_admin -d "$DB" -At -c "SELECT count(*) FROM ratings_rating")
  log "ratings_rating holds $n rows"
}

# The role that may only connect over TLS (pg_hba), reading the same ratings; made at every `up`
# so a state folder from before it existed gets it too.
ensure_tls_role() {
  psql_admin -d "$DB" >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$TLS_ROLE') THEN
    CREATE ROLE $TLS_ROLE LOGIN PASSWORD '$PASSWORD';
  END IF;
END \$\$;
GRANT CONNECT ON DATABASE $DB TO $TLS_ROLE;
GRANT SELECT ON ratings_rating TO $TLS_ROLE;
SQL
}

cmd_up() {
  BIN=$(pg_bin) || true
  if [ -z "$BIN" ]; then
    install_postgres
    BIN=$(pg_bin) || die "initdb still missing after installing postgresql"
  fi
  if [ ! -s "$DATA/PG_VERSION" ]; then
    rm -rf "$STATE"
    mkdir -p "$DATA" "$SOCK"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$STATE"
    chmod 700 "$DATA"
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --no-locale >"$STATE/initdb.log" 2>&1 || { tail -n 20 "$STATE/initdb.log" >&2; die "initdb failed"; }
    start_server
    load_ratings
  else
    start_server
  fi
  ensure_tls_role
}

cmd_env() {
  echo "export RECOMMENDER_TEST_PG_URL=postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
  echo "export PGHOST=127.0.0.1"
  echo "export PGPORT=$PORT"
  echo "export PGDATABASE=$DB"
  echo "export PGUSER=$ROLE"
  echo "export PGPASSWORD=$PASSWORD"
  # What pods use (through a selectorless Service + EndpointSlice in their namespace).
  echo "export RECOMMENDER_PG_POD_HOST=$NODE_IP"
  echo "export RECOMMENDER_PG_POD_PORT=$PORT"
  # TLS: the CA that signed the server's certificate, and the role that must use TLS.
  echo "export RECOMMENDER_PG_CA_FILE=$TLS/ca.crt"
  echo "export RECOMMENDER_PG_TLS_USER=$TLS_ROLE"
  echo "export RECOMMENDER_PG_TLS_NAMESPACE=$TLS_NAMESPACE"
}

BIN=$(pg_bin || true)
case "${1:-}" in
  up) cmd_up ;;
  start)
    [ -s "$DATA/PG_VERSION" ] || die "no cluster at $DATA: run '$0 up' first"
    start_server
    ;;
  stop)
    if running; then as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null && log "stopped"; fi
    ;;
  down)
    if [ -n "$BIN" ] && running; then as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; fi
    rm -rf "$STATE"
    log "stopped and removed $STATE"
    ;;
  env) cmd_env ;;
  status) running && as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" ;;
  *)
    echo "usage: $0 up|down|start|stop|env|status" >&2
    exit 2
    ;;
esac
