#!/usr/bin/env bash
# Measures servelab's architectures against real servers, under identical settings.
#
# Every server answers GET / with a body of a few bytes over HTTP/1.1 keep-alive, on
# 127.0.0.1, and is measured with the same commands:
#
#   wrk -t1 -c<N> -d<DURATION> --latency   for N in CONNS (default 1 64 256 1000)
#   perf stat (task-clock, context switches) on the server's processes during the -c64 and
#             -c1000 runs: CPU time and context switches per request
#   ab -c64 -n AB_REQUESTS                 without keep-alive: a new connection per request
#
# RUNS rounds (default 3); within a round every server is started, measured and stopped in
# turn, so that a drifting machine affects every server alike (interleaved), and each figure
# is the median of the rounds. The servers:
#
#   nginx           1 worker process, `return 200` (no file I/O)
#   nginx-2         the same with 2 worker processes
#   apache-prefork  Apache 2.4, prefork MPM (one process per connection), Debian's pool sizes
#   apache-worker   Apache 2.4, worker MPM (threads in processes), Debian's pool sizes
#   apache-event    Apache 2.4, event MPM (worker + an event loop for idle keep-alive)
#   python-seq      Python's http.server.HTTPServer: one connection at a time
#   python-threads  Python's http.server.ThreadingHTTPServer: a thread per connection
#   hyper           hyper 1.x on tokio's multi-threaded runtime, HYPER_WORKERS (1) workers: a
#                   minimal hello server (a task per connection, `http1::Builder`), what a Rust
#                   user would pick; this script writes it into a temporary directory outside
#                   the workspace, with a Cargo.toml of its own, and builds it with cargo (from
#                   crates.io; the build is kept in target/peers/hyper-hello between runs)
#   servelab ...    every architecture in the registry, with its defaults (release build);
#                   in SERVERS, "event-loop:--reactors=1,--accept=reuseport" adds flags
#
# Then, for IDLE_SERVERS (default: nginx hyper thread-per-conn event-loop async-work-stealing
# async-per-core io-uring), IDLE idle keep-alive connections (default 10000), each having made one
# request: the servers' memory (RSS of all their processes) and threads before and after.
#
# Apache serves a 9-byte file, Python a 9-byte answer from a minimal handler (buffered and
# with TCP_NODELAY, see below), all with HTTP/1.1 keep-alive. nginx and Apache are set to
# unlimited requests per keep-alive connection, like servelab, so nobody pays for
# reconnecting.
#
# Usage: scripts/compare-peers.sh [--write]
#   --write   also put the tables into docs/benchmarks.md (via `bench-report --section peers`)
# Environment: DURATION (default 3s), RUNS (3), CONNS ("1 64 256 1000"), SERVERS (default:
#              all of the above), AB_REQUESTS (20000), IDLE (10000), IDLE_SERVERS,
#              BASE_PORT (18080), HYPER_WORKERS (1), PIN (0; 1 runs every server on CPU
#              SERVER_CPU (1) and wrk and ab on CPU LOAD_CPU (0), with taskset, so that the
#              server's own CPU decides, as the async servers' targets are measured).
# About 12 minutes with the defaults.
#
# It installs wrk, nginx, apache2, apache2-utils (ab) and linux-perf with apt where they are
# missing (without letting apt start the system services), starts every server itself on a
# loopback port, and stops each by its PID. Nothing else on the machine is touched.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-3s}
RUNS=${RUNS:-3}
CONNS=${CONNS:-"1 64 256 1000"}
AB_REQUESTS=${AB_REQUESTS:-20000}
IDLE=${IDLE:-10000}
IDLE_SERVERS=${IDLE_SERVERS:-"nginx hyper thread-per-conn event-loop async-work-stealing async-per-core io-uring"}
HYPER_WORKERS=${HYPER_WORKERS:-1}
PIN=${PIN:-0}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
# With PIN=1 the server runs on one CPU and the load generator on another.
if [ "$PIN" = 1 ]; then
  ON_SERVER_CPU=(taskset -c "$SERVER_CPU")
  ON_LOAD_CPU=(taskset -c "$LOAD_CPU")
else
  ON_SERVER_CPU=()
  ON_LOAD_CPU=()
fi
BASE_PORT=${BASE_PORT:-18080}
PEERS="nginx nginx-2 apache-prefork apache-worker apache-event python-seq python-threads hyper"
WRITE=0
for arg in "$@"; do
  case $arg in
    --write) WRITE=1 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare-peers: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

WORK=$(mktemp -d /tmp/servelab-peers.XXXXXX)
chmod 755 "$WORK"
PIDS=()
# The session of the server started last (each runs in one of its own): its processes.
SESSION=""
# The peers (nginx, Apache, Python) are stopped here; servelab's servers through
# scripts/lib/server.sh, which started them.
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  server_stop_all
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- what is needed -----------------------------------------------------------------
# shellcheck source=lib/install.sh
. scripts/lib/install.sh
# shellcheck source=lib/server.sh
. scripts/lib/server.sh
# servelab's servers start like the peers: in a session of their own, on the server's CPU.
# shellcheck disable=SC2034 # read by server_start.
SERVER_PREFIX=(setsid "${ON_SERVER_CPU[@]}")
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/sbin/apache2 ] || missing+=(apache2)
command -v ab >/dev/null || missing+=(apache2-utils)
command -v perf >/dev/null || missing+=(linux-perf)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
command -v python3 >/dev/null || { echo "compare-peers: python3 is needed for the Python servers" >&2; exit 1; }

echo "building servelab (release)" >&2
cargo build --release -q --workspace --exclude benches --bins

# --- hyper: a minimal hello server on tokio, outside the workspace ---------------------
# Its own package (and its own workspace: the empty [workspace] table), written into the
# temporary directory; only its build output is kept, in target/peers/hyper-hello.
build_hyper() {
  local dir=$WORK/hyper-hello
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<'TOML'
[package]
name = "hyper-hello"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
http-body-util = "0.1"
hyper = { version = "1", features = ["http1", "server"] }
hyper-util = { version = "0.1", features = ["tokio"] }
tokio = { version = "1", features = ["rt-multi-thread", "net"] }

[profile.release]
debug = 1

# Not a member of servelab's workspace: a workspace of its own.
[workspace]
TOML
  cat >"$dir/src/main.rs" <<'RUST'
//! A minimal hyper 1.x server: `GET` anything answers "servelab\n", HTTP/1.1 keep-alive, a
//! tokio task per connection on a multi-threaded runtime. Usage: hyper-hello ADDR WORKERS.
use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"servelab\n")));
    response
        .headers_mut()
        .insert("content-type", hyper::header::HeaderValue::from_static("text/plain"));
    Ok(response)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into()).parse()?;
    let workers: usize = args.next().unwrap_or_else(|| "1".into()).parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    })
}
RUST
  echo "building the hyper peer (release, outside the workspace)" >&2
  CARGO_TARGET_DIR="$ROOT/target/peers/hyper-hello" \
    cargo build --release -q --manifest-path "$dir/Cargo.toml"
  HYPER_BIN="$ROOT/target/peers/hyper-hello/release/hyper-hello"
}
HYPER_BIN=""
# servelab's side: every architecture in the registry.
SERVELAB=$(target/release/simulator architectures --names | tr '\n' ' ')
SERVERS=${SERVERS:-"$PEERS $SERVELAB"}
if grep -qw hyper <<<"$SERVERS $IDLE_SERVERS"; then
  build_hyper
fi

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

nginx_conf() { # port workers
  cat >"$WORK/nginx.conf" <<EOF
worker_processes $2;
worker_rlimit_nofile 20000;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 12000; }
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

# Starts server $1 on port $2 in the background and records its PID. Each peer runs in its
# own session (setsid): Apache signals its whole process group when it stops, which would
# otherwise include this script. servelab's servers start (and stop) through
# scripts/lib/server.sh, as in every script.
start_server() {
  local name=$1 port=$2
  case $name in
    nginx | nginx-2)
      nginx_conf "$port" "$([ "$name" = nginx-2 ] && echo 2 || echo 1)"
      setsid "${ON_SERVER_CPU[@]}" /usr/sbin/nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" &
      ;;
    apache-*)
      apache_conf "${name#apache-}" "$port"
      setsid "${ON_SERVER_CPU[@]}" /usr/sbin/apache2 -f "$WORK/apache-${name#apache-}.conf" -DFOREGROUND &
      ;;
    python-seq) setsid "${ON_SERVER_CPU[@]}" python3 "$WORK/python-server.py" seq "$port" &;;
    python-threads) setsid "${ON_SERVER_CPU[@]}" python3 "$WORK/python-server.py" threads "$port" &;;
    hyper) setsid "${ON_SERVER_CPU[@]}" "$HYPER_BIN" "127.0.0.1:$port" "$HYPER_WORKERS" &;;
    *)
      # A servelab architecture, optionally with flags: "event-loop:--reactors=1,--accept=reuseport".
      local arch=${name%%:*} extra=()
      if ! grep -qx "$arch" <<<"${SERVELAB// /$'\n'}"; then
        echo "compare-peers: unknown server $name" >&2
        exit 2
      fi
      [ "$arch" != "$name" ] && IFS=, read -r -a extra <<<"${name#*:}"
      # Enough threads for the idle-connection test (thread-per-conn's default is 4096).
      [ "$arch" = thread-per-conn ] && extra+=(--max-threads $((IDLE + 1000)))
      # In a session of its own too (SERVER_PREFIX), so that its processes can be found
      # (server_pids). Waits (at most 5 s) until the port accepts connections.
      # Status 3: this machine cannot run it (io-uring where io_uring is forbidden); the
      # caller skips it, and its rows stay empty ("not measured").
      local status=0
      SERVER_BIN_DIR="$ROOT/target/release" \
        server_start "$arch" "$port" "$WORK/$arch.stderr" --backlog 4096 "${extra[@]}" || status=$?
      if [ "$status" = 3 ]; then
        echo "compare-peers: $arch is unavailable on this machine ($(cat "$WORK/$arch.stderr")), skipped" >&2
        return 3
      fi
      [ "$status" = 0 ] || exit 1
      SESSION=$SERVER_PID
      return 0
      ;;
  esac
  PIDS+=($!)
  SESSION=$!
  # Waits (at most 5 s) until the port accepts connections.
  for _ in $(seq 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "compare-peers: $name did not start listening on port $port" >&2
  exit 1
}

# Stops the server started last: a servelab server through scripts/lib/server.sh, a peer
# here.
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    server_stop
    return
  fi
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

# The server's processes (it runs in a session of its own), comma-separated for perf.
server_pids() { pgrep -s "$SESSION" | paste -sd, -; }

# Sum of a /proc/<pid>/status field (kB or a count) over the server's processes.
server_status() {
  local field=$1 total=0 pid value
  for pid in $(pgrep -s "$SESSION"); do
    value=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${value:-0}))
  done
  echo "$total"
}

# --- the measurements -------------------------------------------------------------------
# Raw figures, one line per server, concurrency and round:
#   name conns rps p50_us p99_us cpu_us_per_request context_switches_per_request
RAW="$WORK/raw.tsv"
# ab's req/s without keep-alive: name rps
AB="$WORK/ab.tsv"
: >"$RAW"
: >"$AB"
for run in $(seq "$RUNS"); do
  port=$BASE_PORT
  for name in $SERVERS; do
    port=$((port + 1))
    start_server "$name" "$port" || continue
    for conns in $CONNS; do
      "${ON_LOAD_CPU[@]}" wrk -t1 -c"$conns" -d"$DURATION" --latency "http://127.0.0.1:$port/" >"$WORK/wrk.out" &
      wrk_pid=$!
      cpu=""
      cs=""
      window=0
      if [ "$conns" = 64 ] || [ "$conns" = 1000 ]; then
        # CPU time and context switches of every server process, over the middle of the run.
        window=$(awk -v d="$DURATION" 'BEGIN { print (d + 0) - 1.5 }')
        sleep 1
        perf stat -x, -e task-clock,context-switches -p "$(server_pids)" -- sleep "$window" \
          2>"$WORK/perf.out" >/dev/null || true
        cpu=$(awk -F, '$3 == "task-clock" { print $1 }' "$WORK/perf.out")
        cs=$(awk -F, '$3 == "context-switches" { print $1 }' "$WORK/perf.out")
      fi
      wait "$wrk_pid"
      out=$(cat "$WORK/wrk.out")
      rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
      p50=$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
      p99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
      errors=$(awk '/Socket errors|Non-2xx/ { print }' <<<"$out" | tr '\n' ' ')
      per_cpu="-"
      per_cs="-"
      if [ -n "$cpu" ] && [ -n "$cs" ]; then
        # task-clock is in milliseconds; requests in the window: rps × window.
        per_cpu=$(awk -v c="$cpu" -v r="$rps" -v w="$window" 'BEGIN { printf "%.2f", c * 1000 / (r * w) }')
        per_cs=$(awk -v c="$cs" -v r="$rps" -v w="$window" 'BEGIN { printf "%.3f", c / (r * w) }')
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$conns" "$rps" "$p50" "$p99" "$per_cpu" "$per_cs" >>"$RAW"
      printf 'round %s %-15s -c%-4s %10.0f req/s  p50 %8.0f us  p99 %8.0f us  cpu/req %s us  cs/req %s %s\n' \
        "$run" "$name" "$conns" "$rps" "$p50" "$p99" "$per_cpu" "$per_cs" "$errors" >&2
    done
    # A new connection for every request: accept, one exchange, close.
    ab_rps=$("${ON_LOAD_CPU[@]}" ab -q -c 64 -n "$AB_REQUESTS" "http://127.0.0.1:$port/" 2>/dev/null |
      awk '/^Requests per second:/ { print $4 }' || true)
    printf '%s\t%s\n' "$name" "${ab_rps:-0}" >>"$AB"
    printf 'round %s %-15s ab -c64 (no keep-alive): %s req/s\n' "$run" "$name" "${ab_rps:-failed}" >&2
    stop_server
  done
done

# The median of each figure over the rounds.
RESULTS="$WORK/results.tsv"
for name in $SERVERS; do
  for conns in $CONNS; do
    row=$(awk -F'\t' -v n="$name" -v c="$conns" '$1 == n && $2 == c' "$RAW")
    col() { cut -f"$1" <<<"$row" | grep -v '^-$' | median; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$conns" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)" "$(col 7)"
  done
done >"$RESULTS"
AB_RESULTS="$WORK/ab-results.tsv"
for name in $SERVERS; do
  printf '%s\t%s\n' "$name" "$(awk -F'\t' -v n="$name" '$1 == n { print $2 }' "$AB" | median)"
done >"$AB_RESULTS"

# --- idle connections ----------------------------------------------------------------------
cat >"$WORK/idle.py" <<'PY'
import socket, sys

n, port = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
    held.append(s)
for s in held:
    seen = b""
    while b"\r\n\r\n" not in seen:
        got = s.recv(4096)
        if not got:
            sys.exit("the server closed an idle connection")
        seen += got
print("holding", flush=True)
sys.stdin.read()  # holds every connection until this script's input closes
PY
IDLE_RESULTS="$WORK/idle.tsv"
: >"$IDLE_RESULTS"
port=$((BASE_PORT + 100))
for name in $IDLE_SERVERS; do
  grep -qw -- "$name" <<<"$SERVERS" || continue
  port=$((port + 1))
  start_server "$name" "$port" || continue
  rss_before=$(server_status VmRSS)
  threads_before=$(server_status Threads)
  mkfifo "$WORK/hold.$name"
  # The holder keeps its connections until the fifo's writer (fd 7) closes.
  (ulimit -n $((IDLE + 100)); exec python3 "$WORK/idle.py" "$IDLE" "$port" <"$WORK/hold.$name" >"$WORK/held.$name") &
  holder=$!
  exec 7>"$WORK/hold.$name"
  for _ in $(seq 600); do
    grep -q holding "$WORK/held.$name" 2>/dev/null && break
    kill -0 "$holder" 2>/dev/null || break
    sleep 0.2
  done
  if grep -q holding "$WORK/held.$name" 2>/dev/null; then
    rss_after=$(server_status VmRSS)
    threads_after=$(server_status Threads)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$IDLE" "$rss_before" "$rss_after" \
      "$threads_before" "$threads_after" >>"$IDLE_RESULTS"
    printf 'idle %-15s %s connections: RSS %s -> %s kB, threads %s -> %s\n' "$name" "$IDLE" \
      "$rss_before" "$rss_after" "$threads_before" "$threads_after" >&2
  else
    echo "idle $name: the holder did not get its $IDLE connections answered" >&2
  fi
  exec 7>&-
  wait "$holder" 2>/dev/null || true
  stop_server
done

# --- the tables ---------------------------------------------------------------------------
mkdir -p target/peers
TABLE=target/peers/peers.md
us() { awk -v v="$1" 'BEGIN { if (v == "") print "–"; else if (v >= 1000) printf "%.2f ms", v / 1000; else printf "%.0f µs", v }'; }
{
  echo "- Load: \`wrk -t1 -c<N> -d$DURATION --latency\` on GET / over 127.0.0.1; $RUNS rounds, servers interleaved within each round; every figure is the median of the rounds."
  echo "- CPU and context switches per request: \`perf stat -e task-clock,context-switches\` on all the server's processes during the middle of the \`-c64\` and \`-c1000\` runs, divided by the requests served meanwhile.$([ "$PIN" = 1 ] && echo " Pinned: every server on CPU $SERVER_CPU, wrk and ab on CPU $LOAD_CPU (taskset).")"
  echo "- New connection per request: \`ab -c64 -n $AB_REQUESTS\` (no keep-alive)."
  echo "- Cross-CPU wake-up on this machine during the run: $(perf bench sched pipe -l 5000 2>/dev/null | awk '/usecs\/op/ { printf "%.0f µs", $1 }' || echo unknown) per \`perf bench sched pipe\` round trip."
  echo
  echo "| server | clients | req/s | × nginx | p50 | p99 | p50 ÷ nginx's | CPU/request | context switches/request |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' '
    { name[NR] = $1; c[NR] = $2; rps[NR] = $3; p50[NR] = $4; p99[NR] = $5; cpu[NR] = $6; cs[NR] = $7
      if ($1 == "nginx") { nrps[$2] = $3; np50[$2] = $4 } }
    function us(v) { return v >= 1000 ? sprintf("%.2f ms", v / 1000) : sprintf("%.0f µs", v) }
    END {
      for (i = 1; i <= NR; i++) {
        ratio = (c[i] in nrps && nrps[c[i]] > 0) ? sprintf("%.2f", rps[i] / nrps[c[i]]) : "–"
        pr = (c[i] in np50 && np50[c[i]] > 0) ? sprintf("%.2f", p50[i] / np50[c[i]]) : "–"
        cpucell = (cpu[i] != "" && cpu[i] > 0) ? sprintf("%.1f µs", cpu[i]) : ""
        cscell = (cs[i] != "" && (c[i] == 64 || c[i] == 1000)) ? sprintf("%.3f", cs[i]) : ""
        printf "| %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n", name[i], c[i], rps[i], ratio, us(p50[i]), us(p99[i]), pr, cpucell, cscell
      }
    }' "$RESULTS"
  echo
  echo "| server | new connection per request: req/s | × nginx |"
  echo "|---|---:|---:|"
  awk -F'\t' '
    { name[NR] = $1; rps[NR] = $2; if ($1 == "nginx") n = $2 }
    END { for (i = 1; i <= NR; i++) printf "| %s | %.0f | %s |\n", name[i], rps[i], (n > 0 ? sprintf("%.2f", rps[i] / n) : "–") }' "$AB_RESULTS"
  if [ -s "$IDLE_RESULTS" ]; then
    echo
    echo "| server | idle keep-alive connections | memory before → after | per connection | threads before → after |"
    echo "|---|---:|---:|---:|---:|"
    awk -F'\t' '{ printf "| %s | %d | %.1f MiB → %.1f MiB | %.2f KiB | %d → %d |\n", $1, $2, $3 / 1024, $4 / 1024, ($4 - $3) / $2, $5, $6 }' "$IDLE_RESULTS"
  fi
} >"$TABLE"
cat "$TABLE"

# --- the targets (benchmarks, so reported, not enforced) --------------------------------
get() { awk -F'\t' -v n="$1" -v c="$2" -v f="$3" '$1 == n && $2 == c { print $f }' "$RESULTS"; }
get_ab() { awk -F'\t' -v n="$1" '$1 == n { print $2 }' "$AB_RESULTS"; }
get_idle() { awk -F'\t' -v n="$1" -v f="$2" '$1 == n { print $f }' "$IDLE_RESULTS"; }
check() { # description, awk condition over a and b, a, b
  if [ -z "$3" ] || [ -z "$4" ]; then echo "  - $1: not measured"; return; fi
  if awk -v a="$3" -v b="$4" "BEGIN { exit !($2) }"; then echo "  - met: $1"; else echo "  - MISSED: $1"; fi
}
{
  echo
  echo "Targets:"
  for conns in 64 256 1000; do
    check "event-loop ≥ 1.0 × nginx (1 worker) at -c$conns ($(get event-loop "$conns" 3) vs $(get nginx "$conns" 3) req/s)" \
      "a >= b" "$(get event-loop "$conns" 3)" "$(get nginx "$conns" 3)"
  done
  check "event-loop's CPU per request ≤ nginx's at -c64 ($(get event-loop 64 6) vs $(get nginx 64 6) µs)" \
    "a <= b" "$(get event-loop 64 6)" "$(get nginx 64 6)"
  check "event-loop's context switches per request ≤ nginx's at -c64 ($(get event-loop 64 7) vs $(get nginx 64 7))" \
    "a <= b" "$(get event-loop 64 7)" "$(get nginx 64 7)"
  check "event-loop ≥ 1.0 × nginx with a new connection per request ($(get_ab event-loop) vs $(get_ab nginx) req/s)" \
    "a >= b" "$(get_ab event-loop)" "$(get_ab nginx)"
  check "event-loop's p50 at -c1 no worse than nginx's ($(us "$(get event-loop 1 4)") vs $(us "$(get nginx 1 4)"))" \
    "a <= b" "$(get event-loop 1 4)" "$(get nginx 1 4)"
  if [ -n "$(get_idle event-loop 1)" ]; then
    per=$(awk -v a="$(get_idle event-loop 3)" -v b="$(get_idle event-loop 4)" -v n="$IDLE" 'BEGIN { printf "%.2f", (b - a) / n }')
    check "event-loop holds $IDLE idle connections for ≤ 2 KiB each ($per KiB)" "a <= b" "$per" 2
    check "event-loop's threads do not grow with idle connections ($(get_idle event-loop 5) → $(get_idle event-loop 6))" \
      "a <= b" "$(get_idle event-loop 6)" "$(get_idle event-loop 5)"
  fi
  # The async servers (issue 25): CPU per request within 1.1 × nginx (1 worker) and 1.05 ×
  # hyper, at -c64 and -c1000 (measure with PIN=1: the server's own CPU decides); 10,000 idle
  # connections at most 2 KiB each, with no thread per connection.
  for arch in async-work-stealing async-per-core; do
    for conns in 64 1000; do
      check "$arch's CPU per request ≤ 1.1 × nginx's at -c$conns ($(get "$arch" "$conns" 6) vs $(get nginx "$conns" 6) µs)" \
        "a <= 1.1 * b" "$(get "$arch" "$conns" 6)" "$(get nginx "$conns" 6)"
      check "$arch's CPU per request ≤ 1.05 × hyper's at -c$conns ($(get "$arch" "$conns" 6) vs $(get hyper "$conns" 6) µs)" \
        "a <= 1.05 * b" "$(get "$arch" "$conns" 6)" "$(get hyper "$conns" 6)"
    done
    if [ -n "$(get_idle "$arch" 1)" ]; then
      per=$(awk -v a="$(get_idle "$arch" 3)" -v b="$(get_idle "$arch" 4)" -v n="$IDLE" 'BEGIN { printf "%.2f", (b - a) / n }')
      check "$arch holds $IDLE idle connections for ≤ 2 KiB each ($per KiB)" "a <= b" "$per" 2
      check "$arch's threads do not grow with idle connections ($(get_idle "$arch" 5) → $(get_idle "$arch" 6))" \
        "a <= b" "$(get_idle "$arch" 6)" "$(get_idle "$arch" 5)"
    fi
  done
  # The io_uring server (issue 26): CPU per request ≤ 0.85 × nginx (1 worker) and below the
  # event loop's, at -c64 and -c1000 (PIN=1); 10,000 idle connections at most 2 KiB each.
  for conns in 64 1000; do
    check "io-uring's CPU per request ≤ 0.85 × nginx's at -c$conns ($(get io-uring "$conns" 6) vs $(get nginx "$conns" 6) µs)" \
      "a <= 0.85 * b" "$(get io-uring "$conns" 6)" "$(get nginx "$conns" 6)"
    check "io-uring's CPU per request < event-loop's at -c$conns ($(get io-uring "$conns" 6) vs $(get event-loop "$conns" 6) µs)" \
      "a < b" "$(get io-uring "$conns" 6)" "$(get event-loop "$conns" 6)"
  done
  if [ -n "$(get_idle io-uring 1)" ]; then
    per=$(awk -v a="$(get_idle io-uring 3)" -v b="$(get_idle io-uring 4)" -v n="$IDLE" 'BEGIN { printf "%.2f", (b - a) / n }')
    check "io-uring holds $IDLE idle connections for ≤ 2 KiB each ($per KiB)" "a <= b" "$per" 2
    check "io-uring's threads do not grow with idle connections ($(get_idle io-uring 5) → $(get_idle io-uring 6))" \
      "a <= b" "$(get_idle io-uring 6)" "$(get_idle io-uring 5)"
  fi
  check "prefork-pool beats Apache prefork at -c64" "a > b" "$(get prefork-pool 64 3)" "$(get apache-prefork 64 3)"
  check "thread-per-conn ≥ 10 × ThreadingHTTPServer at -c64" "a >= 10 * b" "$(get thread-per-conn 64 3)" "$(get python-threads 64 3)"
} | tee -a "$TABLE"

if [ $WRITE -eq 1 ]; then
  cargo run --release -q -p benches --bin bench-report -- --section peers --file "$TABLE"
fi
