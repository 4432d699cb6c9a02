#!/usr/bin/env bash
# The performance suite of issue 14, in one measuring window: Custodia's
# benchmarks interleaved with the peer harness (../shared/peer-bench:
# cqrs-es + postgres-es 0.5.0) and pgbench's raw insert, ROUNDS times, so
# that ratios come from one window (these machines drift by up to 3x from
# minute to minute). Prints the machine and the versions, one JSON line per
# figure and round (also written to $OUT), then a Markdown table of the
# figures' ranges.
#
# Needs a release build (cargo build --release), wrk (apt-get install wrk),
# the peer built outside the
# shared folder (cargo build --release --manifest-path
# ../shared/peer-bench/Cargo.toml --target-dir /tmp/peer-bench), PostgreSQL
# on 127.0.0.1:5432 with trust auth, the peer's database (its README), and
# root (pgbench runs as postgres).
#   usage: scripts/bench-suite.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
OUT=${OUT:-/tmp/custodia-bench-suite.jsonl}
C=target/release/custodia
P=${PEER_BENCH:-/tmp/peer-bench/release/peer-bench}
SHARED=../shared/peer-bench
PG=postgres://postgres@127.0.0.1:5432
PEER_URL='postgres://root@%2Fvar%2Frun%2Fpostgresql/peerbench'
: > "$OUT"

fresh_pg() { psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" 2>/dev/null; }
fresh_sqlite() { rm -f "/tmp/$1".db "/tmp/$1".db-wal "/tmp/$1".db-shm "/tmp/$1".keys.db "/tmp/$1".keys.db-wal "/tmp/$1".keys.db-shm; }
# emit FIGURE VALUE UNIT [P99_MS]
emit() {
  local line="{\"figure\":\"$1\",\"round\":$r,\"value\":$2,\"unit\":\"$3\""
  [ -n "${4:-}" ] && line="$line,\"p99_ms\":$4"
  echo "$line}" | tee -a "$OUT"
}
# The number before "events/s" (or "appends/s"), and the p99 in ms.
rate() { grep -o "[0-9]* $1/s" | head -1 | cut -d' ' -f1; }
p99() { grep -o 'p99 [0-9.]*[mµ]*s' | head -1 | awk '{v=$2; if (v ~ /µs$/) {sub(/µs$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else {sub(/s$/,"",v); v=v*1000}; printf "%.2f", v}'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "# versions: custodia $(git rev-parse --short HEAD), $(rustc --version 2>/dev/null || echo rustc ?), PostgreSQL $(psql "$PG/postgres" -Atc 'show server_version'), peer postgres-es 0.5.0"
echo "# durability: SQLite synchronous=FULL, PostgreSQL synchronous_commit=$(psql "$PG/postgres" -Atc 'show synchronous_commit')"
psql "$PEER_URL" -qc "SET client_min_messages = warning; CREATE TABLE IF NOT EXISTS t(pos bigserial PRIMARY KEY, payload text)"
install -m 644 "$SHARED/pgbench_insert.sql" /tmp/custodia-pgbench.sql

for r in $(seq "$ROUNDS"); do
  echo "# round $r $(date -u +%FT%TZ)"
  fresh_pg custodia_suite
  out=$($C --database-url "$PG/custodia_suite" bench append --writers 16 --appends 1000 2>&1)
  emit pg_16_writers_distinct "$(echo "$out" | rate appends)" appends/s "$(echo "$out" | p99)"
  out=$("$P" --database-url "$PEER_URL" --writers 16 --commands 1000 --mode distinct)
  emit peer_16_writers_distinct "$(echo "$out" | json events_per_s)" events/s "$(echo "$out" | json p99_ms)"
  psql "$PEER_URL" -qc "TRUNCATE t"
  tps=$(su postgres -c "cd /tmp && pgbench -n -f /tmp/custodia-pgbench.sql -c 16 -j 2 -T 8 peerbench" 2>/dev/null | awk '/^tps/ { printf "%.0f", $3 }')
  emit pgbench_16_clients_insert "$tps" tps
  out=$($C --database-url "$PG/custodia_suite" bench append --writers 4 --batch 100 --appends 50 2>&1)
  emit pg_batches_of_100 "$(echo "$out" | rate events)" events/s "$(echo "$out" | p99)"
  out=$($C --database-url "$PG/custodia_suite" bench append --writers 16 --appends 500 --share stream 2>&1)
  emit pg_16_writers_one_stream "$(echo "$out" | rate appends)" appends/s "$(echo "$out" | p99)"
  out=$("$P" --database-url "$PEER_URL" --writers 16 --commands 500 --mode same)
  emit peer_16_writers_one_stream "$(echo "$out" | json events_per_s)" events/s "$(echo "$out" | json p99_ms)"
  fresh_sqlite custodia_suite
  out=$($C --database-url sqlite:///tmp/custodia_suite.db bench append --writers 16 --appends 2000 2>&1)
  emit sqlite_16_writers_distinct "$(echo "$out" | rate appends)" appends/s "$(echo "$out" | p99)"
  fresh_sqlite custodia_suite_verify
  $C --database-url sqlite:///tmp/custodia_suite_verify.db bench append --writers 4 --batch 1000 --appends 250 >/dev/null 2>&1
  out=$($C --database-url sqlite:///tmp/custodia_suite_verify.db bench verify 2>&1)
  emit sqlite_verify_1m_events_4_chains "$(echo "$out" | grep -o '([0-9]* events/s)' | tr -dc 0-9)" events/s
  fresh_sqlite custodia_suite_commands
  out=$($C --database-url sqlite:///tmp/custodia_suite_commands.db bench commands --writers 8 --users 100 2>&1)
  emit sqlite_commands "$(echo "$out" | rate commands)" commands/s "$(echo "$out" | p99)"
  fresh_pg custodia_suite_commands
  out=$($C --database-url "$PG/custodia_suite_commands" bench commands --writers 8 --users 100 2>&1)
  emit pg_commands "$(echo "$out" | rate commands)" commands/s "$(echo "$out" | p99)"
  # With every projection running as a server runs them: commands, the
  # projections' lag meanwhile, then a rebuild of all of them from zero.
  for db in sqlite pg; do
    if [ "$db" = sqlite ]; then
      fresh_sqlite custodia_suite_projections; url=sqlite:///tmp/custodia_suite_projections.db
    else
      fresh_pg custodia_suite_projections; url=$PG/custodia_suite_projections
    fi
    out=$($C --database-url "$url" bench commands --writers 8 --users 300 --projections 2>&1)
    emit "${db}_commands_with_projections" "$(echo "$out" | rate commands)" commands/s "$(echo "$out" | p99)"
    emit "${db}_projection_lag_p99" "$(echo "$out" | grep '^projection lag' | p99)" ms
    out=$($C --database-url "$url" projections rebuild 2>&1)
    emit "${db}_projection_rebuild" "$(echo "$out" | grep -o '([0-9]* events/s)' | tr -dc 0-9)" events/s
  done
  # Over HTTP with wrk: a server on each backend, each figure for 5 s.
  for db in "sqlite" "$PG/custodia_suite_http"; do
    rm -f /tmp/custodia-suite-http.jsonl
    if [ "$db" = sqlite ]; then u=; else u=$db; fi
    DATABASE_URL=$u JSON_OUT=/tmp/custodia-suite-http.jsonl DURATION=5s bash scripts/bench-http.sh >/dev/null 2>&1 || true
    while read -r line; do
      emit "$(echo "$line" | json figure)" "$(echo "$line" | json value)" "$(echo "$line" | json unit)" \
        "$(echo "$line" | python3 -c "import json,sys; print(json.load(sys.stdin).get('p99_ms', ''))")"
    done < /tmp/custodia-suite-http.jsonl
  done
done
out=$($C bench passwords --count 20 2>&1)
r=1 emit argon2id_verify_p50_ms "$(echo "$out" | grep '^verify' | grep -o 'p50 [0-9.]*ms' | awk '{print $2}' | tr -d ms)" ms
fresh_pg custodia_suite; fresh_pg custodia_suite_commands; fresh_pg custodia_suite_projections
fresh_sqlite custodia_suite; fresh_sqlite custodia_suite_verify; fresh_sqlite custodia_suite_commands
fresh_sqlite custodia_suite_projections

echo
python3 - "$OUT" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    f = json.loads(line)
    rows.setdefault(f["figure"], []).append(f)
print("| figure | unit | min | max | p99 ms (max) |")
print("|---|---|---|---|---|")
for name, fs in rows.items():
    values = [float(f["value"]) for f in fs]
    p99 = [f["p99_ms"] for f in fs if "p99_ms" in f]
    print(f"| {name} | {fs[0]['unit']} | {min(values):,.0f} | {max(values):,.0f} | {max(p99) if p99 else '—'} |")
PY
