#!/usr/bin/env bash
# Single node (embedded) vs three nodes (PostgreSQL + NATS JetStream), in one
# run, for docs/BENCHMARKS.md. Starts its own nats-server on a free port and
# uses a fresh schema in the PostgreSQL at $STREAMBUS_BENCH_POSTGRES_URL
# (default: postgres://postgres@127.0.0.1:5432/postgres), dropped at the end.
# Usage: scripts/bench-cluster.sh [OUTDIR]   (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d)}; mkdir -p "$OUT"
SB=$PWD/target/release/streambus
PG=${STREAMBUS_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SCHEMA=sbbench_$$
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 100); do curl -sf "$1/readyz" >/dev/null && return; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
bench() { "$SB" bench "$@" 2>/dev/null | tail -1; }

# One embedded node.
P=$(free_port); U1=http://127.0.0.1:$P
"$SB" serve --listen "127.0.0.1:$P" --data-dir "$OUT/single" >"$OUT/single.log" 2>&1 & PIDS+=($!)
wait_ready "$U1"
echo "single ingest  $(bench --url "$U1" ingest --events 100000 --batch 1000 --concurrency 4)"
echo "single fanout  $(bench --url "$U1" fanout --subscribers 2000 --rate 20 --duration 10)"
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true; PIDS=()

# Three nodes on one NATS and one PostgreSQL.
NP=$(free_port); mkdir -p "$OUT/nats"
nats-server -a 127.0.0.1 -p "$NP" -js -sd "$OUT/nats" >"$OUT/nats.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$NP") 2>/dev/null && break; sleep 0.1; done
URLS=()
for i in 1 2 3; do
  P=$(free_port)
  STREAMBUS_CLUSTER__POSTGRES_SCHEMA=$SCHEMA "$SB" serve --listen "127.0.0.1:$P" --data-dir "$OUT/node$i" \
    --postgres-url "$PG" --nats-url "nats://127.0.0.1:$NP" >"$OUT/node$i.log" 2>&1 & PIDS+=($!)
  URLS+=("http://127.0.0.1:$P")
done
for u in "${URLS[@]}"; do wait_ready "$u"; done
ALL=$(IFS=,; echo "${URLS[*]}")
echo "cluster ingest $(bench --url "${URLS[0]}" ingest --events 100000 --batch 1000 --concurrency 4)"
echo "cluster fanout $(bench --url "$ALL" fanout --publish-url "${URLS[0]}" --subscribers 2000 --rate 20 --duration 10)"
