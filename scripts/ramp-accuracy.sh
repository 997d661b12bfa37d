#!/usr/bin/env bash
# How closely `simulator run --stages` sends what a ramp asks for, second by second.
#
# The server (the event loop, one reactor) runs pinned to SERVER_CPU; the simulator, pinned to
# LOAD_CPU, ramps an open loop linearly from 0 to PEAK requests per second over DURATION
# seconds. For every whole second s the ramp asks for the area under its rate over [s, s+1),
# PEAK/DURATION × (s + 1/2) requests; the report's per-second series (`series`) says how many
# were sent and served. Each row prints asked, sent, their difference as a percentage of that
# second's ask, and served; then each run's requests served in time of those due, and the
# worst second. The issue's target: within 1% in every second, at up
# to 80% of the generator's maximum rate (find the maximum first, e.g. with
# `simulator run --rate R --duration 3s` rising until `sent/s` stops following R).
#
# Usage: scripts/ramp-accuracy.sh
# Environment: PEAK (40000), DURATION (10), CONNECTIONS (64), RUNS (3), SERVER_CPU (1),
#              LOAD_CPU (0), PORT (18480). Takes about RUNS × (DURATION + 2) seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
  case $arg in
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ramp-accuracy: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
# shellcheck source=lib/server.sh
source scripts/lib/server.sh

PEAK=${PEAK:-40000}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
RUNS=${RUNS:-3}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PORT=${PORT:-18480}

cargo build --release -q -p simulator -p event-loop
out=$(mktemp -d)
cleanup() {
  server_stop_all
  rm -rf "$out"
}
trap cleanup EXIT INT TERM
# shellcheck disable=SC2034 # read by server_start.
SERVER_PREFIX=(taskset -c "$SERVER_CPU")
for run in $(seq "$RUNS"); do
  server_start event-loop "$((PORT + run))" "$out/stderr" --reactors 1 --helpers 1
  taskset -c "$LOAD_CPU" target/release/simulator run --target "127.0.0.1:$((PORT + run))" \
    --stages "${DURATION}s:$PEAK" --connections "$CONNECTIONS" --timeout 1s \
    --format json >"$out/run-$run.json"
  server_stop
done

python3 - "$out" "$RUNS" "$PEAK" "$DURATION" <<'PY'
import json, statistics, sys
out, runs, peak, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
sent, served, totals = {}, {}, []
for run in range(1, runs + 1):
    report = json.load(open(f"{out}/run-{run}.json"))
    for row in report["series"]:
        sent.setdefault(row["second"], []).append(row["sent"])
        served.setdefault(row["second"], []).append(row["served"])
    r = report["requests"]
    totals.append((r["served"], r["due"]))
print(f"{'second':>6}{'asked':>10}{'sent':>10}{'off':>8}{'served':>10}   (median of {runs} runs)")
worst = 0.0
for s in range(duration):
    asked = peak / duration * (s + 0.5)
    got = statistics.median(sent.get(s, [0]))
    off = (got - asked) / asked * 100
    worst = max(worst, abs(off))
    print(f"{s:>6}{asked:>10.0f}{got:>10.0f}{off:>+7.2f}%{statistics.median(served.get(s, [0])):>10.0f}")
for run, (ok, due) in enumerate(totals, 1):
    print(f"run {run}: {ok} of {due} requests served in time")
print(f"worst second: {worst:.2f}% off the ramp (0 → {peak:.0f}/s over {duration} s)")
PY
