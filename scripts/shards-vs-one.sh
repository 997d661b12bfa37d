#!/usr/bin/env bash
# The same load from one simulator process and from 3 shards merged, against one server on
# loopback, interleaved, 3 rounds; prints each round and the medians. What it shows: the
# merged report equals the one-process report (clients and requests counted exactly the
# same way, percentiles from merged histograms), and what splitting costs or gains on this
# machine (on a 2-core machine three shards share the same two cores as one process).
#
# Usage: scripts/shards-vs-one.sh            (needs python3 to read the JSON reports)
# Loads: (a) open loop, 10 000 requests/s of GET / for 5 s on 64 connections, against the
# event loop with one reactor; (b) closed loop, 300 clients GET /sleep/50 for 5 s, against
# thread-per-conn. Each run is bounded by its --duration and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/server.sh
. scripts/lib/server.sh
cargo build --release --locked -q -p simulator -p event-loop -p thread-per-conn
SIM=target/release/simulator
WORK=$(mktemp -d /tmp/servelab-shards.XXXXXX)
cleanup() { server_stop_all; rm -rf "$WORK"; }
trap cleanup EXIT

server_start event-loop 7801 "$WORK/event-loop.stderr" --reactors 1
server_start thread-per-conn 7802 "$WORK/thread-per-conn.stderr"
$SIM run --target 127.0.0.1:7801 --wait 10s --clients 1 >/dev/null
$SIM run --target 127.0.0.1:7802 --wait 10s --clients 1 >/dev/null

OPEN=(--target 127.0.0.1:7801 --rate 10000 --duration 5s --connections 64 --request "GET /" --timeout 1s)
CLOSED=(--target 127.0.0.1:7802 --clients 300 --duration 5s --request "GET /sleep/50" --timeout 2s)

# One line from a JSON report.
cat >"$WORK/summary.py" <<'PY'
import json, sys
r = json.load(sys.stdin)
q, l, t, s = r["requests"], r["latency_us"], r["throughput"], r["summary"]
print(f"{s['served']}/{s['clients']} clients served, {q['sent']} sent, {q['served']} served, "
      f"{t['per_second']:.0f}/s, p50 {l['p50']}us, p99 {l['p99']}us, max {l['max']}us, "
      f"engine threads {r['engine_threads']}")
PY
summary() { python3 "$WORK/summary.py"; }

one() { $SIM run "$@" --format json | summary; }
sharded() {
  local dir="$WORK/run-$RANDOM" at
  at=$(python3 -c 'import time; print(f"{time.time() + 1.5:.3f}")')
  local shards=()
  for i in 1 2 3; do
    $SIM run "$@" --engine-threads 1 --shard "$i/3" --start-at "$at" --save "$dir" >/dev/null 2>&1 &
    shards+=($!)
  done
  wait "${shards[@]}"
  $SIM merge "$dir" --format json | summary
}

for load in open closed; do
  if [ "$load" = open ]; then args=("${OPEN[@]}"); else args=("${CLOSED[@]}"); fi
  echo "== $load: ${args[*]}"
  for round in 1 2 3; do
    echo "round $round, one process:  $(one "${args[@]}")"
    echo "round $round, 3 shards:     $(sharded "${args[@]}")"
  done
done
