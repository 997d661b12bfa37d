#!/usr/bin/env bash
# Measures every servelab architecture with wrk on loopback, one after another, and prints
# one line per architecture and path: requests/s and latency percentiles.
#
#   scripts/wrk-architectures.sh                 # -c64 on / and /sleep/5, 5 s each
#   CONNS=1 PATHS="/" DURATION=5s scripts/wrk-architectures.sh
#
# Each server runs with its default flags on 127.0.0.1:$PORT and is stopped by PID.
# Installs wrk with apt if it is missing. Loopback only; every run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-64}
DURATION=${DURATION:-5s}
PATHS=${PATHS:-"/ /sleep/5"}
PORT=${PORT:-7801}

# shellcheck source=lib/install.sh
. "$(dirname "$0")/lib/install.sh"
# shellcheck source=lib/server.sh
. "$(dirname "$0")/lib/server.sh"
# No server outlives the script, however it ends.
trap server_stop_all EXIT
command -v wrk >/dev/null || apt_install wrk
cargo build --release -q --workspace --exclude benches --bins
# Every architecture in the registry, unless ARCHS names some.
ARCHS=${ARCHS:-$(target/release/simulator architectures --names | tr '\n' ' ')}

printf '%-16s %-10s %12s %10s %10s %10s %8s\n' architecture path "req/s" p50 p99 max errors
for arch in $ARCHS; do
  for path in $PATHS; do
    # Waits (at most 5 s) until the server accepts connections.
    server_start "$arch" "$PORT" /dev/null
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$PORT$path")
    server_stop
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    max=$(awk '/^    Latency/ {print $4}' <<<"$out")
    errors=$(awk '/Socket errors|Non-2xx/ {gsub(",", ""); s=s $0 "; "} END {print (s == "" ? "0" : "yes")}' <<<"$out")
    printf '%-16s %-10s %12s %10s %10s %10s %8s\n' "$arch" "$path" "$rps" "$p50" "$p99" "$max" "$errors"
  done
done
