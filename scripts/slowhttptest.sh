#!/usr/bin/env bash
# Cross-checks lab 19 (hostile clients) with a tool that is not servelab's: Debian's
# slowhttptest, a slowloris attack of CONNECTIONS slow-header connections, against servelab
# server binaries, while curl probes the server once every half second.
#
# For each architecture in ARCHS (default: prefork-pool event-loop, one design that cannot
# survive a slow-client flood and one that can) the script:
#   1. starts the release binary on a loopback port, with its defaults;
#   2. starts `slowhttptest -H` (slow headers: one more header line every INTERVAL seconds,
#      CONNECTIONS connections opened at RATE a second, for LENGTH seconds);
#   3. from 3 s into the attack, sends PROBES requests with curl, 0.5 s apart, each allowed
#      one second (so all of them fall within the attack's LENGTH), and counts the answers;
#      reads the server's threads and memory (all its processes) from /proc half-way;
#   4. stops slowhttptest and the server; then runs servelab's own attacker against a fresh
#      server for the same question (`simulator run --background N:slow-headers` with 20
#      foreground clients, deadline 1 s).
# It prints one row per architecture: probes answered (curl), foreground served (simulator),
# threads and RSS during the attack, and slowhttptest's own probe: in how many of the
# attack's seconds from the third on it found the service available.
#
# Usage: scripts/slowhttptest.sh
# Environment: ARCHS (default "prefork-pool event-loop"), CONNECTIONS (1000), RATE (200),
#              INTERVAL (1), LENGTH (20), PROBES (10), PORT (18990).
# About 25 s per architecture. Load goes to 127.0.0.1 only and every loop is bounded.
#
# It installs slowhttptest and curl with apt where they are missing.
set -euo pipefail

cd "$(dirname "$0")/.."
ARCHS=${ARCHS:-"prefork-pool event-loop"}
CONNECTIONS=${CONNECTIONS:-1000}
RATE=${RATE:-200}
INTERVAL=${INTERVAL:-1}
LENGTH=${LENGTH:-20}
PROBES=${PROBES:-10}
PORT=${PORT:-18990}

# shellcheck source=lib/install.sh
source scripts/lib/install.sh
# shellcheck source=lib/server.sh
source scripts/lib/server.sh
log() { echo "slowhttptest.sh: $*" >&2; }

if ! command -v slowhttptest >/dev/null || ! command -v curl >/dev/null; then
  apt_install slowhttptest curl
fi

WORK=$(mktemp -d)
ATTACK_PID=""
cleanup() {
  [ -z "$ATTACK_PID" ] || kill "$ATTACK_PID" 2>/dev/null || true
  server_stop_all
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "building the release binaries"
# shellcheck disable=SC2046,SC2086 # one -p per architecture, split on purpose.
cargo build --release --quiet -p simulator $(printf -- '-p %s ' $ARCHS)

# The server's threads and resident memory (KiB), summed over its process and children.
figures() {
  local pids threads=0 rss=0 t r
  pids="$1 $(pgrep -P "$1" | tr "\n" " " || true)"
  for pid in $pids; do
    t=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    r=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    threads=$((threads + ${t:-0}))
    rss=$((rss + ${r:-0}))
  done
  echo "$threads $rss"
}

# Starts architecture $1 on $PORT (through scripts/lib/server.sh) and waits (at most 5 s)
# until it accepts connections.
start_server() {
  ulimit -n 65536 2>/dev/null || true
  server_start "$1" "$PORT" "$WORK/$1.log"
}

stop_server() {
  server_stop
}

printf '%-16s %-16s %-18s %-16s %-12s %s\n' architecture "curl probes" "simulator served" "threads before/during" "RSS during" "slowhttptest's probe"
for arch in $ARCHS; do
  log "$arch: slowhttptest with $CONNECTIONS slow-header connections"
  start_server "$arch"
  read -r threads_before _ < <(figures "$SERVER_PID")
  slowhttptest -H -c "$CONNECTIONS" -r "$RATE" -i "$INTERVAL" -l "$LENGTH" -s 8192 \
    -t GET -u "http://127.0.0.1:$PORT/" -p 1 -g -o "$WORK/$arch" >"$WORK/$arch.out" 2>&1 &
  ATTACK_PID=$!
  sleep 3
  answered=0
  during="0 0"
  for i in $(seq "$PROBES"); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/"; then
      answered=$((answered + 1))
    fi
    [ "$i" -ne $((PROBES / 2)) ] || during=$(figures "$SERVER_PID")
    sleep 0.5
  done
  read -r threads_during rss_during <<<"$during"
  kill "$ATTACK_PID" 2>/dev/null || true
  wait "$ATTACK_PID" 2>/dev/null || true
  ATTACK_PID=""
  # slowhttptest's own probe: its CSV has a row a second (seconds, closed, pending,
  # connected, service available); counted from the third second, as curl's.
  verdict=$(awk -F, 'NR > 1 && $1 >= 3 {n++; if ($5 > 0) a++} END {printf "available %d of %d s", a, n}' "$WORK/$arch.csv" 2>/dev/null || true)
  stop_server

  log "$arch: servelab's attacker, $CONNECTIONS slow-header clients and 20 in the foreground"
  start_server "$arch"
  served=$(target/release/simulator run --target "127.0.0.1:$PORT" --clients 20 --timeout 1s \
    --background "$CONNECTIONS:slow-headers" --format json |
    python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print("%d/%d" % (s["served"], s["clients"]))')
  stop_server

  printf '%-16s %-16s %-18s %-21s %-12s %s\n' "$arch" "$answered/$PROBES" "$served" \
    "$threads_before/$threads_during" "$((rss_during / 1024)) MiB" "${verdict:-no CSV}"
done
