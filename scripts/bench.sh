#!/usr/bin/env bash
# Runs the benchmarks recorded in docs/BENCHMARKS.md against fresh release
# servers on loopback, and prints one JSON line per benchmark with the server's
# CPU time added. Usage: scripts/bench.sh [OUTDIR]   (build first:
# cargo build --release). Every run is bounded and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d)}; mkdir -p "$OUT"
SB=$PWD/target/release/streambus
TCK=$(getconf CLK_TCK)
cpu() { awk -v t="$TCK" '{print ($14+$15)/t}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() {
  PORT=$(free_port); U=http://127.0.0.1:$PORT
  "$SB" serve --listen "127.0.0.1:$PORT" --data-dir "$OUT/data-$PORT" >"$OUT/server-$PORT.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -sf "$U/readyz" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
run() { # name, then bench arguments
  local name=$1; shift
  local c0 c1; c0=$(cpu "$PID")
  "$SB" bench --url "$U" "$@" 2>/dev/null | tail -1 >"$OUT/$name.json"
  c1=$(cpu "$PID")
  python3 - "$OUT/$name.json" "$name" "$c0" "$c1" <<'PY'
import json, sys
path, name, c0, c1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
d = json.load(open(path)); d["name"] = name; d["server_cpu_s"] = round(c1 - c0, 2)
if d.get("received"): d["server_cpu_us_per_delivery"] = round((c1 - c0) * 1e6 / d["received"], 2)
print(json.dumps(d))
PY
}
start
run ingest_batch ingest --events 200000 --batch 1000 --concurrency 4
run ingest_single ingest --events 20000 --concurrency 32 --single
run ingest_replay_source ingest --events 300000 --batch 1000 --concurrency 4 --stream replay
python3 scripts/replay.py "$PORT" replay 300000
stop
start
run fanout_ws_40k fanout --subscribers 2000 --rate 20 --duration 10
run fanout_sse_40k fanout --subscribers 2000 --rate 20 --duration 10 --transport sse
run fanout_ws_max fanout --subscribers 2000 --rate 1000 --duration 10
stop
start
run connections_10k connections --count 10000 --hold 3 --pid "$PID"
stop
