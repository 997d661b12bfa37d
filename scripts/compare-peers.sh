#!/usr/bin/env bash
# Measures servelab's four architectures against real servers, under identical settings.
#
# Every server answers GET / with a body of a few bytes over HTTP/1.1 keep-alive, on
# 127.0.0.1, and is measured with the same wrk command (`wrk -t1 -c1` and `wrk -t1 -c64`,
# DURATION each, RUNS runs, the median of each figure):
#
#   nginx           1 worker process, `return 200` (no file I/O)
#   apache-prefork  Apache 2.4, prefork MPM (one process per connection), Debian's pool sizes
#   apache-worker   Apache 2.4, worker MPM (threads in processes), Debian's pool sizes
#   apache-event    Apache 2.4, event MPM (worker + an event loop for idle keep-alive)
#   python-seq      Python's http.server.HTTPServer: one connection at a time
#   python-threads  Python's http.server.ThreadingHTTPServer: a thread per connection
#   servelab ...    the four architectures with their defaults (release build)
#
# Apache serves a 9-byte file, Python a 9-byte answer from a minimal handler (buffered and
# with TCP_NODELAY, see below), all with HTTP/1.1 keep-alive. nginx and Apache are set to
# unlimited requests per keep-alive connection, like servelab, so nobody pays for
# reconnecting.
#
# Usage: scripts/compare-peers.sh [--write]
#   --write   also put the table into docs/benchmarks.md (via `bench-report --peers`)
# Environment: DURATION (default 4s), RUNS (default 3), CONNS (default "1 64"),
#              SERVERS (default: all of the above, space-separated), BASE_PORT (18080).
#
# DURATION defaults to 4s rather than 5s so that the whole comparison (10 servers × 2
# concurrency levels × 3 runs) ends within 5 minutes; DURATION=5s takes about 6.
#
# It installs wrk, nginx and apache2 with apt where they are missing (without letting apt
# start the system services), starts every server itself on a loopback port, and stops
# each by its PID. Nothing else on the machine is touched.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-4s}
RUNS=${RUNS:-3}
CONNS=${CONNS:-"1 64"}
BASE_PORT=${BASE_PORT:-18080}
PEERS="nginx apache-prefork apache-worker apache-event python-seq python-threads"
WRITE=0
for arg in "$@"; do
  case $arg in
    --write) WRITE=1 ;;
    -h | --help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare-peers: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

WORK=$(mktemp -d /tmp/servelab-peers.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- what is needed -----------------------------------------------------------------
# shellcheck source=lib/install.sh
. scripts/lib/install.sh
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/sbin/apache2 ] || missing+=(apache2)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
command -v python3 >/dev/null || { echo "compare-peers: python3 is needed for the Python servers" >&2; exit 1; }

echo "building servelab (release)" >&2
cargo build --release -q --workspace --exclude benches --bins
# servelab's side: every architecture in the registry.
SERVELAB=$(target/release/simulator architectures --names | tr '\n' ' ')
SERVERS=${SERVERS:-"$PEERS $SERVELAB"}

# --- the servers ----------------------------------------------------------------------
printf 'servelab\n' >"$WORK/hello.txt"
chmod 644 "$WORK/hello.txt"

cat >"$WORK/python-server.py" <<'EOF'
import http.server
import sys

BODY = b"servelab\n"


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like every other server here
    # Python's defaults write the head and the body in two unbuffered sends with Nagle's
    # algorithm on, which costs every response a 40 ms delayed ACK. Buffer the response
    # (the handler flushes it once per request) and set TCP_NODELAY, as a tuned server would.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


kind, port = sys.argv[1], int(sys.argv[2])
server_class = http.server.ThreadingHTTPServer if kind == "threads" else http.server.HTTPServer
server_class(("127.0.0.1", port), Hello).serve_forever()
EOF

nginx_conf() {
  cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$1;
    location = / { default_type text/plain; return 200 "servelab\n"; }
  }
}
EOF
}

apache_conf() { # mpm port
  local mpm=$1 port=$2 pool
  case $mpm in
    # Debian's /etc/apache2/mods-available/mpm_*.conf defaults.
    prefork) pool="StartServers 5
MinSpareServers 5
MaxSpareServers 10
MaxRequestWorkers 150" ;;
    *) pool="StartServers 2
MinSpareThreads 25
MaxSpareThreads 75
ThreadLimit 64
ThreadsPerChild 25
MaxRequestWorkers 150" ;;
  esac
  cat >"$WORK/apache-$mpm.conf" <<EOF
ServerRoot /usr/lib/apache2
LoadModule mpm_${mpm}_module modules/mod_mpm_${mpm}.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule dir_module modules/mod_dir.so
ServerName localhost
Listen 127.0.0.1:$port
User www-data
Group www-data
PidFile $WORK/apache-$mpm.pid
DefaultRuntimeDir $WORK
ErrorLog $WORK/apache-$mpm-error.log
LogLevel error
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
$pool
DocumentRoot $WORK
DirectoryIndex hello.txt
<Directory $WORK>
  Require all granted
</Directory>
EOF
}

# Starts server $1 on port $2 in the background and records its PID. Each server runs in
# its own session (setsid): Apache signals its whole process group when it stops, which
# would otherwise include this script.
start_server() {
  local name=$1 port=$2
  case $name in
    nginx)
      nginx_conf "$port"
      setsid /usr/sbin/nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" &
      ;;
    apache-*)
      apache_conf "${name#apache-}" "$port"
      setsid /usr/sbin/apache2 -f "$WORK/apache-${name#apache-}.conf" -DFOREGROUND &
      ;;
    python-seq) setsid python3 "$WORK/python-server.py" seq "$port" &;;
    python-threads) setsid python3 "$WORK/python-server.py" threads "$port" &;;
    *)
      if ! grep -qx "$name" <<<"${SERVELAB// /$'\n'}"; then
        echo "compare-peers: unknown server $name" >&2
        exit 2
      fi
      setsid "$ROOT/target/release/$name" --addr "127.0.0.1:$port" --log quiet &
      ;;
  esac
  PIDS+=($!)
  # Waits (at most 5 s) until the port accepts connections.
  for _ in $(seq 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "compare-peers: $name did not start listening on port $port" >&2
  exit 1
}

stop_server() {
  local pid=${PIDS[-1]}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset 'PIDS[-1]'
}

# wrk's latency in microseconds: "40.00us", "1.20ms", "2.00s".
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
    else if (v ~ /s$/) print n * 1000000; else print n }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : 0) }'; }

# --- the measurements -------------------------------------------------------------------
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
port=$BASE_PORT
for name in $SERVERS; do
  port=$((port + 1))
  start_server "$name" "$port"
  for conns in $CONNS; do
    : >"$WORK/runs"
    for run in $(seq "$RUNS"); do
      out=$(wrk -t1 -c"$conns" -d"$DURATION" --latency "http://127.0.0.1:$port/")
      rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
      p50=$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
      p99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
      errors=$(awk '/Socket errors|Non-2xx/ { print }' <<<"$out" | tr '\n' ' ')
      printf '%s\t%s\t%s\n' "$rps" "$p50" "$p99" >>"$WORK/runs"
      printf '%-15s -c%-3s run %s: %10.0f req/s  p50 %8.0f us  p99 %8.0f us %s\n' \
        "$name" "$conns" "$run" "$rps" "$p50" "$p99" "$errors" >&2
    done
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$conns" \
      "$(cut -f1 "$WORK/runs" | median)" "$(cut -f2 "$WORK/runs" | median)" \
      "$(cut -f3 "$WORK/runs" | median)" >>"$RESULTS"
  done
  stop_server
done

# --- the table ----------------------------------------------------------------------------
mkdir -p target/peers
TABLE=target/peers/peers.md
{
  echo "- Load: \`wrk -t1 -c<N> -d$DURATION --latency\`, median of $RUNS runs, GET / on 127.0.0.1."
  echo "- Cross-CPU wake-up on this machine during the run: $(perf bench sched pipe -l 5000 2>/dev/null | awk '/usecs\/op/ { printf "%.0f µs", $1 }' || echo unknown) per \`perf bench sched pipe\` round trip."
  echo
  echo "| server | clients | req/s | × nginx | p50 | p99 | p50 ÷ nginx's |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' '
    { name[NR] = $1; c[NR] = $2; rps[NR] = $3; p50[NR] = $4; p99[NR] = $5
      if ($1 == "nginx") { nrps[$2] = $3; np50[$2] = $4 } }
    function us(v) { return v >= 1000 ? sprintf("%.2f ms", v / 1000) : sprintf("%.0f µs", v) }
    END {
      for (i = 1; i <= NR; i++) {
        ratio = (c[i] in nrps && nrps[c[i]] > 0) ? sprintf("%.2f", rps[i] / nrps[c[i]]) : "–"
        pr = (c[i] in np50 && np50[c[i]] > 0) ? sprintf("%.2f", p50[i] / np50[c[i]]) : "–"
        printf "| %s | %s | %.0f | %s | %s | %s | %s |\n", name[i], c[i], rps[i], ratio, us(p50[i]), us(p99[i]), pr
      }
    }' "$RESULTS"
} >"$TABLE"
cat "$TABLE"

# --- the targets (benchmarks, so reported, not enforced) --------------------------------
get() { awk -F'\t' -v n="$1" -v c="$2" -v f="$3" '$1 == n && $2 == c { print $f }' "$RESULTS"; }
check() { # description, awk condition over a and b, a, b
  if [ -z "$3" ] || [ -z "$4" ]; then echo "  - $1: not measured"; return; fi
  if awk -v a="$3" -v b="$4" "BEGIN { exit !($2) }"; then echo "  - met: $1"; else echo "  - MISSED: $1"; fi
}
best=0
for a in $SERVELAB; do
  r=$(get "$a" 64 3)
  [ -n "$r" ] && best=$(awk -v a="$r" -v b="$best" 'BEGIN { print (a > b ? a : b) }')
done
{
  echo
  echo "Targets:"
  check "servelab's fastest at -c64 ≥ 0.8 × nginx ($best vs $(get nginx 64 3))" "a >= 0.8 * b" "$best" "$(get nginx 64 3)"
  check "prefork-pool beats Apache prefork at -c64" "a > b" "$(get prefork-pool 64 3)" "$(get apache-prefork 64 3)"
  check "prefork-pool beats Apache prefork at -c1" "a > b" "$(get prefork-pool 1 3)" "$(get apache-prefork 1 3)"
  check "thread-per-conn ≥ 10 × ThreadingHTTPServer at -c64" "a >= 10 * b" "$(get thread-per-conn 64 3)" "$(get python-threads 64 3)"
  for a in $SERVELAB; do
    check "$a's p50 at -c1 no worse than nginx's" "a <= b" "$(get "$a" 1 4)" "$(get nginx 1 4)"
  done
} | tee -a "$TABLE"

if [ $WRITE -eq 1 ]; then
  cargo run --release -q -p benches --bin bench-report -- --peers "$TABLE"
fi
