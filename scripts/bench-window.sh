#!/usr/bin/env bash
# One measuring window (issue 14): Custodia's append and command benchmarks
# interleaved with the peer harness (../shared/peer-bench: cqrs-es +
# postgres-es 0.5.0) and pgbench's raw insert, ROUNDS times, so that ratios
# come from one window (these machines drift by up to 3x from minute to
# minute). Needs a release build, the peer built outside the shared folder
# (cargo build --release --manifest-path ../shared/peer-bench/Cargo.toml
# --target-dir /tmp/peer-bench), PostgreSQL on 127.0.0.1:5432 with trust
# auth, and root (pgbench runs as postgres). Prints what each tool prints.
#   usage: scripts/bench-window.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
C=target/release/custodia
P=${PEER_BENCH:-/tmp/peer-bench/release/peer-bench}
SHARED=../shared/peer-bench
PG=postgres://postgres@127.0.0.1:5432
PEER_URL='postgres://root@%2Fvar%2Frun%2Fpostgresql/peerbench'
fresh_pg() { psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" 2>/dev/null; }
fresh_sqlite() { rm -f "/tmp/$1.db" "/tmp/$1.db-wal" "/tmp/$1.db-shm"; }
one_line() { tail -3 | tr '\n' ' '; echo; }
psql "$PEER_URL" -qc "SET client_min_messages = warning; CREATE TABLE IF NOT EXISTS t(pos bigserial PRIMARY KEY, payload text)"
install -m 644 "$SHARED/pgbench_insert.sql" /tmp/custodia-pgbench.sql
for r in $(seq "$ROUNDS"); do
  echo "# round $r $(date -u +%FT%TZ)"
  fresh_pg custodia_window
  echo -n "custodia postgres 16 writers distinct: "
  $C --database-url "$PG/custodia_window" bench append --writers 16 --appends 500 2>&1 | one_line
  "$P" --database-url "$PEER_URL" --writers 16 --commands 1000 --mode distinct
  psql "$PEER_URL" -qc "TRUNCATE t"
  su postgres -c "cd /tmp && pgbench -n -f /tmp/custodia-pgbench.sql -c 16 -j 2 -T 8 peerbench" 2>/dev/null |
    awk '/^tps/ { printf "{\"lib\":\"pgbench-raw-insert\",\"clients\":16,\"tps\":%.1f}\n", $3 }'
  echo -n "custodia postgres batches of 100: "
  $C --database-url "$PG/custodia_window" bench append --writers 4 --batch 100 --appends 50 2>&1 | one_line
  echo -n "custodia postgres 16 writers one stream: "
  $C --database-url "$PG/custodia_window" bench append --writers 16 --appends 500 --share stream 2>&1 | one_line
  "$P" --database-url "$PEER_URL" --writers 16 --commands 500 --mode same
  fresh_sqlite custodia_window
  echo -n "custodia sqlite 16 writers distinct: "
  $C --database-url sqlite:///tmp/custodia_window.db bench append --writers 16 --appends 500 2>&1 | one_line
  fresh_sqlite custodia_window_commands
  echo -n "custodia sqlite commands: "
  $C --database-url sqlite:///tmp/custodia_window_commands.db bench commands --writers 8 --users 100 2>&1 | one_line
  fresh_pg custodia_window_commands
  echo -n "custodia postgres commands: "
  $C --database-url "$PG/custodia_window_commands" bench commands --writers 8 --users 100 2>&1 | one_line
done
