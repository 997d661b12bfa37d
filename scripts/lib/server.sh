# shellcheck shell=bash
# The one way the scripts start, probe and stop a servelab server: every script that runs
# one sources this, starts it with server_start (or server_start_binary), and stops it with
# server_stop, and its EXIT trap calls server_stop_all, so that no server outlives the
# script, whether it ends, fails or is interrupted (bash runs the EXIT trap on Ctrl+C and
# SIGTERM too). Stopping is the way docs/protocol.md ("Shutdown") promises: SIGTERM, then
# at most 5 s for the server to finish what it owes, then SIGKILL.
#
# Source it from the repository root (where the binaries are looked for in
# $SERVER_BIN_DIR, target/release unless set). It defines functions and variables only:
# SERVER_PID is the last server started, SERVER_PIDS every one still running.
#
# fuzz-wire.sh and soak.sh start their servers with SERVER_SHORT_TIMEOUTS, so that a
# connection a client leaves hanging ends quickly:
SERVER_READ_TIMEOUT=1s
SERVER_HEADER_TIMEOUT=300ms
SERVER_KEEP_ALIVE=1s
SERVER_MAX_CPU=100ms
# shellcheck disable=SC2034 # for the scripts that source this file.
SERVER_SHORT_TIMEOUTS=(--read-timeout "$SERVER_READ_TIMEOUT" --header-timeout "$SERVER_HEADER_TIMEOUT"
  --keep-alive-timeout "$SERVER_KEEP_ALIVE" --max-cpu "$SERVER_MAX_CPU" --shutdown-timeout 2s)
SERVER_BIN_DIR=${SERVER_BIN_DIR:-target/release}
SERVER_PID=""
SERVER_PIDS=()
# Empty unless a script pins its servers: SERVER_PREFIX=(taskset -c 0).
[ -n "${SERVER_PREFIX+set}" ] || SERVER_PREFIX=()

# proc_running comes from procstat.sh; a script that has not sourced it gets it here.
if ! declare -F proc_running >/dev/null; then
  # shellcheck source=procstat.sh
  . "$(dirname "${BASH_SOURCE[0]}")/procstat.sh"
fi

# server_probe PORT: succeeds if something accepts a connection on 127.0.0.1:PORT (one
# connection, no request, closed at once).
server_probe() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# server_start_binary PATH PORT STDERR_FILE [FLAG...]: starts the server binary PATH on
# 127.0.0.1:PORT (quiet logs, then the FLAGs, which may override them) in the background,
# its stderr to STDERR_FILE, and waits (at most 5 s, polling every 0.1 s) until it accepts a
# connection. Sets SERVER_PID. The command is prefixed by the SERVER_PREFIX array if a
# script set one (e.g. SERVER_PREFIX=(taskset -c 0) to pin the server to core 0).
# Returns 2 if there is no such binary; 3 if the server exited saying this machine cannot
# run it (io-uring where io_uring is forbidden: one line "NAME: ... is unavailable: CAUSE"
# in STDERR_FILE), for the caller to skip it; and 1, with the server's stderr, if it never
# accepts (the server is stopped then).
server_start_binary() {
  local bin=$1 port=$2 stderr=$3 name
  shift 3
  name=$(basename "$bin")
  if [ ! -x "$bin" ]; then
    echo "no server binary $bin (see \`simulator architectures --names\`)" >&2
    return 2
  fi
  "${SERVER_PREFIX[@]}" "$bin" --addr "127.0.0.1:$port" --log quiet "$@" 2>"$stderr" &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  for _ in $(seq 50); do
    if server_probe "$port"; then return 0; fi
    proc_running "$SERVER_PID" || break
    sleep 0.1
  done
  if ! proc_running "$SERVER_PID" && grep -q "^$name: .* is unavailable: " "$stderr"; then
    server_stop
    echo "$name: skipped: $(head -1 "$stderr" | sed "s/^$name: //")" >&2
    return 3
  fi
  echo "$bin did not start listening on port $port; its stderr:" >&2
  cat "$stderr" >&2
  server_stop
  return 1
}

# server_start ARCH PORT STDERR_FILE [FLAG...]: server_start_binary for architecture ARCH's
# binary in $SERVER_BIN_DIR.
server_start() {
  local arch=$1
  shift
  server_start_binary "$SERVER_BIN_DIR/$arch" "$@"
}

# shellcheck disable=SC2034 # EXIT_STATUS is for the caller.
# server_stop [PID]: sends SIGTERM to PID (default: SERVER_PID) and waits at most 5 s;
# sets EXIT_STATUS to the exit status, or to "none" if the server had to be killed. Not to
# be called in $(...): only this shell can wait for its child.
server_stop() {
  local pid=${1:-$SERVER_PID} kept=() p
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    proc_running "$pid" || break
    sleep 0.1
  done
  if proc_running "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    EXIT_STATUS=none
  else
    # The process has ended: wait only collects its status.
    EXIT_STATUS=0
    wait "$pid" 2>/dev/null || EXIT_STATUS=$?
  fi
  for p in "${SERVER_PIDS[@]}"; do
    [ "$p" = "$pid" ] || kept+=("$p")
  done
  SERVER_PIDS=("${kept[@]}")
  [ "$pid" != "$SERVER_PID" ] || SERVER_PID=""
}

# server_stop_all: stops every server this shell started and has not stopped yet. For an
# EXIT trap (directly, or from the script's own cleanup function).
server_stop_all() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    server_stop "$pid"
  done
}

# server_panicked STDERR_FILE: prints the first "panicked" line of the server's stderr
# and succeeds if there is one.
server_panicked() {
  grep -m1 panicked "$1"
}

# json_number FIELD FILE: the first number after "FIELD": in a JSON file, pretty-printed
# or on one line (empty if there is none).
json_number() {
  grep -o "\"$1\": *[0-9.]*" "$2" | head -1 | grep -o '[0-9.]*$' || true
}

# server_finish STDERR_FILE: server_stop, then adds to the caller's `problems` array what
# went wrong at the end: an exit status other than 0 after SIGTERM, or a panic anywhere in
# the server's stderr (its shutdown included). Sets `exit_status` for the caller's table.
server_finish() {
  local panic
  server_stop
  exit_status=$EXIT_STATUS
  [ "$exit_status" = 0 ] || problems+=("exit status $exit_status after SIGTERM")
  if panic=$(server_panicked "$1"); then
    problems+=("a panic in its stderr: $panic")
  fi
}

# shellcheck disable=SC2034 # verdict and FAILED are for the caller.
# judge ARCH: sets `verdict` to "ok" when the caller's `problems` array is empty; else to
# "FAILED", prints each problem on stderr and sets FAILED=1 (the script's exit status).
judge() {
  local p
  verdict=ok
  if [ ${#problems[@]} -gt 0 ]; then
    verdict=FAILED
    FAILED=1
    for p in "${problems[@]}"; do echo "$1: $p" >&2; done
  fi
}
