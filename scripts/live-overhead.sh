#!/usr/bin/env bash
# What `--live` costs a run: the same closed loop (CLIENTS clients for DURATION, `GET /`)
# against the event loop, with and without the live view, interleaved for RUNS rounds; the
# median of each. Both runs happen in a tmux pane (200 × 60), so both have a terminal: the
# plain run draws its progress line there, the other the full-screen view. The server is
# pinned to SERVER_CPU and the simulator to LOAD_CPU, so the two do not share a core.
#
# Prints each round's requests per second and clients served, then the medians and their
# ratio. The live view's target: at least 0.95 × the plain run's rate at 1,000 clients.
#
# Usage: scripts/live-overhead.sh
# Environment: CLIENTS (1000), DURATION (5s), RUNS (7: single rounds vary by ±10% here),
#              SERVER_CPU (1), LOAD_CPU (0), PORT (18490). Takes about RUNS × 2 × (DURATION + 3 s). Needs tmux.
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
  case $arg in
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "live-overhead: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
# shellcheck source=lib/server.sh
source scripts/lib/server.sh
# shellcheck source=lib/install.sh
source scripts/lib/install.sh
command -v tmux >/dev/null || apt_install tmux

CLIENTS=${CLIENTS:-1000}
DURATION=${DURATION:-5s}
RUNS=${RUNS:-7}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PORT=${PORT:-18490}
SOCKET=servelab-live-overhead-$$

cargo build --release -q -p simulator -p event-loop
out=$(mktemp -d)
cleanup() {
  tmux -L "$SOCKET" kill-server 2>/dev/null || true
  server_stop_all
  rm -rf "$out"
}
trap cleanup EXIT INT TERM
# shellcheck disable=SC2034 # read by server_start.
SERVER_PREFIX=(taskset -c "$SERVER_CPU")
server_start event-loop "$PORT" "$out/server.stderr" --reactors 1

# One run in a fresh tmux pane, its JSON report into $out/$1.json; waits for it to end
# (at most a minute past its duration).
run_in_pane() {
  local name=$1
  shift
  local sim
  sim=$(realpath target/release/simulator)
  tmux -L "$SOCKET" new-session -d -x 200 -y 60 \
    "taskset -c $LOAD_CPU $sim run --target 127.0.0.1:$PORT --clients $CLIENTS --duration $DURATION --request 'GET /' --format json $* > $out/$name.json; tmux -L $SOCKET wait-for -S $name"
  timeout 120 tmux -L "$SOCKET" wait-for "$name"
  tmux -L "$SOCKET" kill-server 2>/dev/null || true
}

for round in $(seq "$RUNS"); do
  run_in_pane "plain-$round"
  run_in_pane "live-$round" --live
done

python3 - "$out" "$RUNS" "$CLIENTS" <<'PY'
import json, statistics, sys
out, runs, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = {"plain": [], "live": []}
for r in range(1, runs + 1):
    for kind in rows:
        report = json.load(open(f"{out}/{kind}-{r}.json"))
        rate = report["throughput"]["per_second"]
        served = report["summary"]["served"]
        rows[kind].append((rate, served))
        print(f"round {r} {kind:>5}: {rate:10.0f} req/s, {served} of {clients} clients served")
plain = statistics.median(r for r, _ in rows["plain"])
live = statistics.median(r for r, _ in rows["live"])
print(f"median: plain {plain:.0f} req/s, live {live:.0f} req/s: live / plain = {live / plain:.3f}")
PY
