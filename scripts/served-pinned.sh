#!/usr/bin/env bash
# How many clients each server serves in time when its own CPU decides: the server pinned
# to one CPU, the simulator (the load generator) to the other.
#
# For every server in SERVERS (one worker each: --reactors 1, --workers 1, --cores 1,
# --rings 1, ...), started with scripts/lib/server.sh under `taskset -c SERVER_CPU`, and
# every rate in RATES, an open loop from `simulator run` under `taskset -c LOAD_CPU`:
#
#   simulator run --rate R --duration DURATION --connections CONNECTIONS --timeout DEADLINE
#
# Each row says how many of the requests that came due were served within the deadline
# (the simulator's ledger: served / due), the corrected p99, and the server's CPU time per
# served request (utime + stime of its process tree, from /proc, over the run). RUNS rounds,
# interleaved (every server once per round, so a drifting machine affects all alike); each
# figure is the median of the rounds.
#
# Usage: scripts/served-pinned.sh
# Environment: SERVERS, RATES ("50000 60000 70000"), CONNECTIONS (64), DURATION (3s),
#              DEADLINE (50ms), RUNS (3), SERVER_CPU (1), LOAD_CPU (0), BASE_PORT (18380).
# About RUNS × servers × rates × (DURATION + 2 s).
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
  case $arg in
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "served-pinned: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
# shellcheck source=lib/procstat.sh
source scripts/lib/procstat.sh
# shellcheck source=lib/server.sh
source scripts/lib/server.sh

SERVERS=${SERVERS:-"event-loop async-work-stealing async-per-core io-uring thread-per-conn"}
RATES=${RATES:-"50000 60000 70000"}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-3s}
DEADLINE=${DEADLINE:-50ms}
RUNS=${RUNS:-3}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BASE_PORT=${BASE_PORT:-18380}
# One worker of every kind, since the server has one CPU.
declare -A ONE=(
  [event-loop]="--reactors 1 --helpers 1"
  [async-work-stealing]="--workers 1 --blocking-threads 1"
  [async-per-core]="--cores 1"
  [io-uring]="--rings 1 --helpers 1"
  [prefork-pool]="--workers 8"
)

cargo build --release -q -p simulator -p event-loop -p async-work-stealing -p async-per-core \
  -p io-uring-server -p thread-per-conn -p prefork-pool -p thread-per-request -p single \
  -p pipeline -p combined-delegation -p process-pipeline
out=$(mktemp -d)
cleanup() {
  server_stop_all
  rm -rf "$out"
}
trap cleanup EXIT INT TERM

# ticks PID: CPU clock ticks (utime + stime) of PID's process tree.
ticks() {
  local sum=0 p f
  for p in $(proc_tree "$1"); do
    f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue
    sum=$((sum + ${f% *} + ${f#* }))
  done
  echo "$sum"
}
hz=$(getconf CLK_TCK)
port=$BASE_PORT
# shellcheck disable=SC2034 # read by server_start: every server runs on SERVER_CPU.
SERVER_PREFIX=(taskset -c "$SERVER_CPU")
for run in $(seq "$RUNS"); do
  for arch in $SERVERS; do
    for rate in $RATES; do
      port=$((port + 1))
      # shellcheck disable=SC2206 # the flags are words.
      flags=(${ONE[$arch]:-})
      status=0
      server_start "$arch" "$port" "$out/stderr" "${flags[@]}" || status=$?
      # 3: this machine cannot run it (io-uring where io_uring is forbidden); skipped.
      [ "$status" = 3 ] && { echo "served-pinned: $arch is unavailable here, skipped" >&2; continue; }
      [ "$status" = 0 ] || exit 1
      before=$(ticks "$SERVER_PID")
      taskset -c "$LOAD_CPU" target/release/simulator run --target "127.0.0.1:$port" \
        --rate "$rate" --duration "$DURATION" --connections "$CONNECTIONS" \
        --timeout "$DEADLINE" --format json >"$out/report.json"
      after=$(ticks "$SERVER_PID")
      server_stop
      python3 - "$out/report.json" "$arch" "$rate" "$run" "$((after - before))" "$hz" \
        >>"$out/rows" <<'PY'
import json, sys
report, arch, rate, run, ticks, hz = sys.argv[1:]
r = json.load(open(report))
q = r["requests"]
served, due = q["served"], q["due"]
cpu_us = int(ticks) / int(hz) * 1e6 / max(1, served)
print(f"{arch} {rate} {run} {served} {due} {r['latency_us']['p99']} {cpu_us:.1f}")
print(f"round {run} {arch:<20} {rate:>6}/s: served {served} of {due} in time", file=sys.stderr)
PY
    done
  done
done

python3 - "$out/rows" "$RUNS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
keys = []
for r in rows:
    if (r[0], r[1]) not in keys:
        keys.append((r[0], r[1]))
print(f"{'server':<22}{'rate/s':>8}{'served':>10}{'due':>10}{'in time':>9}{'p99':>10}{'CPU/req':>10}")
for arch, rate in keys:
    mine = [r for r in rows if (r[0], r[1]) == (arch, rate)]
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    served, due = med(3), med(4)
    print(f"{arch:<22}{rate:>8}{served:>10.0f}{due:>10.0f}{100 * served / max(1, due):>8.1f}%"
          f"{med(5) / 1000:>8.1f}ms{med(6):>8.1f}µs")
print(f"(median of {sys.argv[2]} interleaved rounds; server pinned to one CPU, simulator to the other)")
PY
