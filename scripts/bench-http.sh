#!/usr/bin/env bash
# HTTP load figures with wrk (Debian package `wrk`): authenticated `me`
# queries, token refreshes, password logins, against a release build of
# `custodia serve` on a fresh database. Client and server share the machine.
#
#   scripts/bench-http.sh                                   # SQLite
#   DATABASE_URL=postgres://postgres@127.0.0.1/bench_http scripts/bench-http.sh
#
# DURATION (default 15s), CONNECTIONS (default 32), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)"; exit 2; }
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
WORK=$(mktemp -d)
export DATABASE_URL=${DATABASE_URL:-sqlite://$WORK/bench.db}
export CUSTODIA_MASTER_KEY
CUSTODIA_MASTER_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
# The benchmark measures throughput, not the rate limits.
export CUSTODIA_AUTH_LIMIT_PER_IP=1000000000 CUSTODIA_AUTH_LIMIT_PER_ACCOUNT=1000000000 CUSTODIA_GRAPHQL_LIMIT_PER_IP=1000000000
export RUST_LOG=warn CUSTODIA_LISTEN=127.0.0.1:18080
BASE=http://$CUSTODIA_LISTEN
PASSWORD='a long bench passphrase'

cargo build --release -q -p custodia
BIN=target/release/custodia
if [[ $DATABASE_URL == postgres* ]]; then
  psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS ${DATABASE_URL##*/}" -c "CREATE DATABASE ${DATABASE_URL##*/}"
fi
export TENANT
TENANT=$(echo "$PASSWORD" | $BIN bootstrap --tenant-name Bench --owner-email bench@example.org --password-stdin 2>/dev/null | awk '/^tenant/ {print $2}')
$BIN serve 2>"$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
until curl -sf "$BASE/health/live" >/dev/null; do sleep 0.1; done

login() {
  curl -sf "$BASE/auth/login" -H 'content-type: application/json' \
    -d "{\"tenant_id\":\"$TENANT\",\"email\":\"bench@example.org\",\"password\":\"$PASSWORD\"}"
}
export TOKEN
TOKEN=$(login | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
until curl -s "$BASE/graphql" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"query":"{ me { id } }"}' | grep -q '"me":{'; do sleep 0.1; done

echo "== me { id status roles }: $CONNECTIONS connections, $DURATION"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/wrk/me.lua "$BASE/graphql"
echo "== me { id email displayName status roles } (personal fields opened)"
QUERY='{ me { id email displayName status roles } }' \
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/wrk/me.lua "$BASE/graphql"

export REFRESH_TOKENS=$WORK/refresh
for _ in $(seq 64); do login | python3 -c 'import json, sys; print(json.load(sys.stdin)["refresh_token"])'; done >"$REFRESH_TOKENS"
echo "== token refresh: 64 sessions taken in turn by 8 connections, $DURATION"
THREADS_FOR_REFRESH=8 wrk -t8 -c8 -d"$DURATION" --latency -s scripts/wrk/refresh.lua "$BASE/auth/refresh"

echo "== password login (Argon2id): 4 connections (more in parallel on one account trip the lockout guard), $DURATION"
wrk -t2 -c4 -d"$DURATION" --latency -s scripts/wrk/login.lua "$BASE/auth/login"
