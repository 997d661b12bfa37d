#!/usr/bin/env bash
# Measures the simulator as a load generator, against wrk, on the same nginx.
#
# nginx (1 worker, `return 200`, stub_status for its own request count) listens on
# 127.0.0.1. Then, in RUNS interleaved rounds (default 3; every figure is the median):
#
#   closed loop, 64 connections, DURATION (default 4s):
#       wrk -t1 -c64                     requests/s, and wrk's CPU per request
#       simulator --engine-threads 1     the same with one engine thread, like wrk -t1
#       simulator                        the default: one engine thread per CPU
#     CPU is the load generator's user + system time (/usr/bin/time) over the requests it
#     completed. Beside each, nginx's own count of requests (stub_status).
#   closed loop at 1000 and 10000 connections: the simulator's requests sent against nginx's
#     count, and how long past DURATION the run lasted (its measured window, and the whole
#     process from start to exit).
#   open loop at 20, 40, 60, 80, 90 and 100% of wrk's closed-loop rate: the rate the
#     simulator achieved (sent per second) against the rate asked, and its schedule lag.
#
# Once (not per round):
#   10000 clients in one scenario run (GET /, holding 1 s): the simulator's peak RSS and
#     threads, on the default engine and on --engine threads.
#   as many clients as the limit on open files allows (20000 here, hard): the largest run
#     that fits, and the sentence the simulator says one client beyond it.
#
# Usage: scripts/simulator-vs-wrk.sh [--write]
#   --write   also put the tables into docs/benchmarks.md (section load-generator)
# Environment: RUNS (3), DURATION (4s), PORT (18180).
# About 4 minutes with the defaults. It installs wrk and nginx with apt where missing
# (without starting their services), runs nginx itself on a loopback port and stops it.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-4s}
PORT=${PORT:-18180}
WRITE=0
for arg in "$@"; do
  case $arg in
    --write) WRITE=1 ;;
    -h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "simulator-vs-wrk: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
SECONDS_RUN=${DURATION%s}

WORK=$(mktemp -d /tmp/servelab-loadgen.XXXXXX)
chmod 755 "$WORK"
NGINX_PID=""
cleanup() {
  [ -z "$NGINX_PID" ] || { kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=lib/install.sh
. scripts/lib/install.sh
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/bin/time ] || missing+=(time)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

echo "building the simulator (release)" >&2
cargo build --release -q -p simulator
SIM=$PWD/target/release/simulator
CPUS=$(nproc)

cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 24000; }
http {
  access_log off;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$PORT backlog=4096;
    location = / { default_type text/plain; return 200 "servelab\n"; }
    location = /status { stub_status; }
  }
}
EOF
setsid /usr/sbin/nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" &
NGINX_PID=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
TARGET=127.0.0.1:$PORT

# nginx's count of requests so far (the status request itself included).
nginx_requests() {
  python3 - "$PORT" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/status", timeout=5).read().decode()
print(text.splitlines()[2].split()[2])
EOF
}

# Runs a command under /usr/bin/time; prints "cpu_seconds wall_seconds max_rss_kib" on fd 3
# and the command's stdout to stdout.
timed() {
  /usr/bin/time -f '%U %S %e %M' -o "$WORK/time" "$@"
  awk '{ printf "%.3f %.3f %d\n", $1 + $2, $3, $4 }' "$WORK/time" >&3
}

# A field of the simulator's JSON report: json FILE EXPRESSION (Python, on `r`).
json() {
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print v[int((NR + 1) / 2)] }'; }

RESULTS=$WORK/results
: >"$RESULTS"
note() { echo "$*" >>"$RESULTS"; }

closed_sim() { # label connections extra-flags...
  local label=$1 conns=$2
  shift 2
  local before after cpu wall
  before=$(nginx_requests)
  timed "$SIM" run --target "$TARGET" --clients "$conns" --duration "$DURATION" --timeout 10s \
    --format json "$@" >"$WORK/report.json" 3>"$WORK/cost"
  after=$(nginx_requests)
  read -r cpu wall _ <"$WORK/cost"
  local sent completed rps elapsed
  sent=$(json "$WORK/report.json" 'r["requests"]["sent"]')
  completed=$(json "$WORK/report.json" 'r["requests"]["completed"]')
  rps=$(json "$WORK/report.json" 'round(r["requests"]["completed"] / (r["summary"]["elapsed_ms"] / 1000))')
  elapsed=$(json "$WORK/report.json" 'r["summary"]["elapsed_ms"]')
  # nginx counted our requests and one status request (the "after" one).
  local counted=$((after - before - 1))
  note "$label rps $rps"
  note "$label cpu_us $(python3 -c "print(round($cpu * 1e6 / max($completed, 1), 2))")"
  note "$label count_error_pct $(python3 -c "print(round(abs($sent - $counted) * 100 / max($counted, 1), 3))")"
  note "$label window_over_ms $((elapsed - SECONDS_RUN * 1000))"
  note "$label process_over_ms $(python3 -c "print(round(($wall - $SECONDS_RUN) * 1000))")"
}

wrk_max=()
for round in $(seq "$RUNS"); do
  echo "round $round of $RUNS" >&2
  before=$(nginx_requests)
  timed wrk -t1 -c64 -d"$DURATION" "http://$TARGET/" >"$WORK/wrk.txt" 3>"$WORK/cost"
  after=$(nginx_requests)
  read -r cpu _ _ <"$WORK/cost"
  rps=$(awk '/Requests\/sec/ { printf "%d", $2 }' "$WORK/wrk.txt")
  total=$(awk '/requests in/ { print $1 }' "$WORK/wrk.txt")
  note "wrk-c64 rps $rps"
  note "wrk-c64 cpu_us $(python3 -c "print(round($cpu * 1e6 / max($total, 1), 2))")"
  note "wrk-c64 count_error_pct $(python3 -c "print(round(abs($total - ($after - $before - 1)) * 100 / max($after - $before - 1, 1), 3))")"
  wrk_max+=("$rps")
  closed_sim sim1-c64 64 --engine-threads 1
  closed_sim sim-c64 64
  closed_sim sim-c1000 1000
  closed_sim sim-c10000 10000
done
WRK=$(printf '%s\n' "${wrk_max[@]}" | median)

echo "open loop at fractions of wrk's $WRK requests/s" >&2
for round in $(seq "$RUNS"); do
  for pct in 20 40 60 80 90 100; do
    rate=$((WRK * pct / 100))
    "$SIM" run --target "$TARGET" --rate "$rate" --connections 64 --duration "$DURATION" \
      --timeout 10s --format json >"$WORK/open.json"
    note "open-$pct achieved_pct $(json "$WORK/open.json" 'round(r["requests"]["sent"] * 100 / r["requests"]["due"], 2)')"
    note "open-$pct rate_pct $(json "$WORK/open.json" "round(r['throughput']['sent_per_second'] * 100 / $rate, 2)")"
    note "open-$pct lag_p99_us $(json "$WORK/open.json" 'r["schedule_lag_us"]["p99"]')"
    note "open-$pct corrected_p99_us $(json "$WORK/open.json" 'r["latency_us"]["p99"]')"
    note "open-$pct uncorrected_p99_us $(json "$WORK/open.json" 'r["latency_uncorrected_us"]["p99"]')"
  done
done

echo "10000 clients in one scenario run" >&2
# The peak thread count, sampled every 50 ms from /proc while the run lasts.
peak_threads() { # pid
  local peak=0 n
  while kill -0 "$1" 2>/dev/null; do
    n=$(awk '/^Threads:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0)
    [ "${n:-0}" -gt "$peak" ] && peak=$n
    sleep 0.05
  done
  echo "$peak"
}
scenario_cost() { # label engine
  /usr/bin/time -f '%M' -o "$WORK/rss" "$SIM" run --target "$TARGET" --clients 10000 \
    --timeout 20s --hold 1s --engine "$2" --format json >"$WORK/scenario.json" &
  local pid=$!
  # /usr/bin/time's child is the simulator.
  sleep 0.2
  local child
  child=$(pgrep -P "$pid" | head -1 || true)
  local threads
  threads=$(peak_threads "${child:-$pid}")
  wait "$pid"
  note "scenario-$1 rss_mib $(awk '{ printf "%.1f", $1 / 1024 }' "$WORK/rss")"
  note "scenario-$1 threads $threads"
  note "scenario-$1 served $(json "$WORK/scenario.json" 'r["summary"]["served"]')"
}
scenario_cost events events
scenario_cost threads threads

echo "as many clients as the open-file limit allows" >&2
HARD=$(ulimit -Hn)
FIT=$((HARD - 64))
"$SIM" run --target "$TARGET" --clients "$FIT" --timeout 30s --format json >"$WORK/max.json"
note "max clients $FIT"
note "max served $(json "$WORK/max.json" 'r["summary"]["served"]')"
note "max elapsed_ms $(json "$WORK/max.json" 'r["summary"]["elapsed_ms"]')"
set +e
"$SIM" run --target "$TARGET" --clients "$((FIT + 1))" >/dev/null 2>"$WORK/beyond.txt"
BEYOND_EXIT=$?
set -e

# --- the tables ---------------------------------------------------------------------------
get() { awk -v k="$1" -v f="$2" '$1 == k && $2 == f { print $3 }' "$RESULTS" | median; }
TABLE=$WORK/table.md
{
  echo "Measured by \`scripts/simulator-vs-wrk.sh\`: $RUNS interleaved rounds, median, ${DURATION} per run,"
  echo "against one nginx worker on loopback ($CPUS CPUs shared by nginx and the load generator)."
  echo
  echo "| load generator, closed loop | requests/s | vs wrk | CPU per request | vs wrk | count vs nginx's |"
  echo "|---|---:|---:|---:|---:|---:|"
  w_rps=$(get wrk-c64 rps); w_cpu=$(get wrk-c64 cpu_us)
  for row in "wrk-c64:wrk -t1 -c64" "sim1-c64:simulator, 64 clients, --engine-threads 1" "sim-c64:simulator, 64 clients, $CPUS engine threads" "sim-c1000:simulator, 1000 clients" "sim-c10000:simulator, 10000 clients"; do
    key=${row%%:*} label=${row#*:}
    rps=$(get "$key" rps); cpu=$(get "$key" cpu_us); err=$(get "$key" count_error_pct)
    printf '| %s | %s | %.2f× | %s µs | %.2f× | %s%% off |\n' "$label" "$rps" \
      "$(python3 -c "print($rps / $w_rps)")" "$cpu" "$(python3 -c "print($cpu / $w_cpu)")" "$err"
  done
  echo
  echo "How long past \`--duration $DURATION\` the simulator ran: its measured window (first client's start"
  echo "to last client's end) and the whole process (start to exit, connecting and closing included)."
  echo
  echo "| clients | window over | process over |"
  echo "|---:|---:|---:|"
  for c in 64 1000 10000; do
    printf '| %s | %s ms | %s ms |\n' "$c" "$(get "sim-c$c" window_over_ms)" "$(get "sim-c$c" process_over_ms)"
  done
  echo
  echo "Open loop on 64 connections, at fractions of wrk's closed-loop rate ($WRK requests/s):"
  echo
  echo "| offered | requests sent of those due | sent rate ÷ offered | schedule lag p99 | p99 uncorrected | p99 corrected |"
  echo "|---:|---:|---:|---:|---:|---:|"
  for pct in 20 40 60 80 90 100; do
    printf '| %s%% (%s/s) | %s%% | %s%% | %s µs | %s µs | %s µs |\n' "$pct" "$((WRK * pct / 100))" \
      "$(get "open-$pct" achieved_pct)" "$(get "open-$pct" rate_pct)" "$(get "open-$pct" lag_p99_us)" \
      "$(get "open-$pct" uncorrected_p99_us)" "$(get "open-$pct" corrected_p99_us)"
  done
  echo
  echo "10000 clients in one scenario run (\`run --clients 10000 --hold 1s\`), measured once:"
  echo
  echo "| engine | served | peak RSS | peak threads |"
  echo "|---|---:|---:|---:|"
  for e in events threads; do
    printf '| %s | %s | %s MiB | %s |\n' "$e" "$(get "scenario-$e" served)" "$(get "scenario-$e" rss_mib)" "$(get "scenario-$e" threads)"
  done
  echo
  echo "The most clients in one process: the hard limit on open files is $HARD; $(get max clients) clients"
  echo "(the limit less the 64 the simulator keeps for itself) ran, $(get max served) served, in $(get max elapsed_ms) ms."
  echo "One more exits with status $BEYOND_EXIT and says:"
  echo
  echo '```text'
  cat "$WORK/beyond.txt"
  echo '```'
} >"$TABLE"
cat "$TABLE"
if [ "$WRITE" -eq 1 ]; then
  cargo run --release -q -p benches --bin bench-report -- --section load-generator --file "$TABLE"
fi
