#!/usr/bin/env bash
# HTTP load figures with wrk (Debian package `wrk`): authenticated `me`
# queries, token refreshes, password logins, against a release build of
# `custodia serve` on a fresh database. Client and server share the machine.
#
#   scripts/bench-http.sh                                   # SQLite
#   DATABASE_URL=postgres://postgres@127.0.0.1/bench_http scripts/bench-http.sh
#
# DURATION (default 15s), CONNECTIONS (default 32), THREADS (default 2).
# Prints what wrk prints, then one JSON line per figure (requests/s, p99)
# and the server's peak resident memory; JSON lines also go to $JSON_OUT
# when it is set (scripts/bench-suite.sh reads them).
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

BACKEND=${DATABASE_URL%%:*}
# measure NAME WRK-ARGS...: runs wrk, prints it, and a JSON line of its figures.
measure() {
  local name=$1; shift
  local out; out=$(wrk "$@")
  echo "$out"
  local line
  line=$(echo "$out" | awk -v name="$name" -v backend="$BACKEND" '
    function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 } sub(/s$/, "", v); return v * 1000 }
    / 99% / { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { failed = $5 }
    END { printf "{\"figure\":\"http_%s_%s\",\"value\":%.0f,\"unit\":\"requests/s\",\"p99_ms\":%.2f,\"failed\":%d}\n", backend, name, rps, p99, failed + 0 }')
  echo "$line"
  [ -n "${JSON_OUT:-}" ] && echo "$line" >>"$JSON_OUT"
  return 0
}

login() {
  curl -sf "$BASE/auth/login" -H 'content-type: application/json' \
    -d "{\"tenant_id\":\"$TENANT\",\"email\":\"bench@example.org\",\"password\":\"$PASSWORD\"}"
}
export TOKEN
TOKEN=$(login | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
until curl -s "$BASE/graphql" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"query":"{ me { id } }"}' | grep -q '"me":{'; do sleep 0.1; done

echo "== me { id status roles }: $CONNECTIONS connections, $DURATION"
measure me -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/wrk/me.lua "$BASE/graphql"
echo "== me { id email displayName status roles } (personal fields opened)"
QUERY='{ me { id email displayName status roles } }' \
  measure me_personal -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/wrk/me.lua "$BASE/graphql"

export REFRESH_TOKENS=$WORK/refresh
for _ in $(seq 64); do login | python3 -c 'import json, sys; print(json.load(sys.stdin)["refresh_token"])'; done >"$REFRESH_TOKENS"
echo "== token refresh: 64 sessions taken in turn by 8 connections, $DURATION"
THREADS_FOR_REFRESH=8 measure refresh -t8 -c8 -d"$DURATION" --latency -s scripts/wrk/refresh.lua "$BASE/auth/refresh"

echo "== password login (Argon2id): 4 connections (more in parallel on one account trip the lockout guard), $DURATION"
measure login_one_account -t2 -c4 -d"$DURATION" --latency -s scripts/wrk/login.lua "$BASE/auth/login"

# 64 accounts (over SCIM, vouched for), logged into in turn by as many
# connections as the server admits to its password checks at once (one per
# core and 8 waiting per core; beyond that it answers 429 at once).
SCIM=$($BIN scim token create --tenant "$TENANT" --name bench 2>/dev/null | tail -1)
for n in $(seq 0 63); do
  curl -sf "$BASE/scim/v2/Users" -H "authorization: Bearer $SCIM" -H 'content-type: application/scim+json' \
    -d "{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"user$n@example.org\",\"password\":\"$PASSWORD\"}" >/dev/null
done
LOGINS=$(( $(nproc) * 8 ))
echo "== password login over 64 accounts: $LOGINS connections, $DURATION"
ACCOUNTS=64 measure login_64_accounts -t2 -c"$LOGINS" -d"$DURATION" --latency -s scripts/wrk/login.lua "$BASE/auth/login"

PEAK=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status")
line="{\"figure\":\"http_${BACKEND}_server_peak_memory\",\"value\":$PEAK,\"unit\":\"MiB\"}"
echo "$line"
[ -n "${JSON_OUT:-}" ] && echo "$line" >>"$JSON_OUT"
exit 0
