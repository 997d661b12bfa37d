# shellcheck shell=bash
# Shared by scripts/fuzz-wire.sh and scripts/soak.sh: starting one architecture's release
# binary with the short timeouts both use, and stopping it the way docs/protocol.md
# ("Shutdown") promises. Source it after scripts/lib/procstat.sh, from the repository root
# (where the binaries are looked for in target/release); it defines functions and
# the timeouts, and keeps the server's PID in SERVER_PID.
#
# The timeouts are short so that a connection a client leaves hanging ends quickly:
SERVER_READ_TIMEOUT=1s
SERVER_HEADER_TIMEOUT=300ms
SERVER_KEEP_ALIVE=1s
SERVER_MAX_CPU=100ms
SERVER_PID=""

# server_start ARCH PORT STDERR_FILE: starts target/release/ARCH on 127.0.0.1:PORT in the
# background, its stderr to STDERR_FILE, and waits (at most 5 s, polling every 0.1 s)
# until it accepts a connection. Returns 2 if there is no such binary; 3 if the server
# exited saying this machine cannot run it (io-uring where io_uring is forbidden: one line
# "ARCH: ... is unavailable: CAUSE" in STDERR_FILE), for the caller to skip it; and 1,
# with the server's stderr, if it never accepts.
server_start() {
  local arch=$1 port=$2 stderr=$3
  if [ ! -x "target/release/$arch" ]; then
    echo "no binary target/release/$arch (see \`simulator architectures --names\`)" >&2
    return 2
  fi
  "$PWD/target/release/$arch" --addr "127.0.0.1:$port" --log quiet \
    --read-timeout "$SERVER_READ_TIMEOUT" --header-timeout "$SERVER_HEADER_TIMEOUT" \
    --keep-alive-timeout "$SERVER_KEEP_ALIVE" --max-cpu "$SERVER_MAX_CPU" \
    --shutdown-timeout 2s 2>"$stderr" &
  SERVER_PID=$!
  for _ in $(seq 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    proc_running "$SERVER_PID" || break
    sleep 0.1
  done
  if ! proc_running "$SERVER_PID" && grep -q "^$arch: .* is unavailable: " "$stderr"; then
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    echo "$arch: skipped: $(head -1 "$stderr" | sed "s/^$arch: //")" >&2
    return 3
  fi
  echo "$arch did not start listening on port $port; its stderr:" >&2
  cat "$stderr" >&2
  return 1
}

# shellcheck disable=SC2034 # EXIT_STATUS is for the caller.
# server_stop: sends SIGTERM to SERVER_PID and waits at most 5 s; sets EXIT_STATUS to the
# exit status, or to "none" if the server had to be killed. Not to be called in $(...):
# only this shell can wait for its child.
server_stop() {
  local pid=$SERVER_PID
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
    wait "$pid" || EXIT_STATUS=$?
  fi
  SERVER_PID=""
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
