#!/usr/bin/env bash
# A bounded soak: mixed traffic against each architecture for a while, sampling what the
# server holds, and a failure when any of it keeps growing.
#
# DURATION (default 10m) is the length of the whole run, split evenly across the chosen
# architectures (10 minutes over all 11 is about 55 s each); PER_ARCH (e.g. 2m) sets each
# architecture's time instead. Each architecture's release binary is started on a loopback
# port with short timeouts (--read-timeout 1s --header-timeout 300ms --keep-alive-timeout 1s
# --max-cpu 100ms), and gets all of this at once, every part ending by itself on time:
#
#   - keep-alive clients in a closed loop: `simulator run --clients 4 --duration ...
#     --request "GET /sleep/2"` (each sends its next request when the last is answered);
#   - wirefuzz at a modest rate: `--rate 100 --connections 2`, with a stall (a connection
#     that stops and keeps its sending side open) every 10 s; its hangs are reported, not
#     judged (scripts/fuzz-wire.sh judges them, without other traffic queued ahead);
#   - idle connections, opened and left: every 3 s, 2 that send nothing (the read timeout
#     closes them) and 2 that send one request and then nothing (the keep-alive timeout);
#   - a new connection per request: curl, one request every 0.1 s.
#
# On `single`, one closed-loop client holds the only thread for the whole time and the rest
# waits in the backlog (its row shows few wirefuzz and curl requests answered): that is the
# sequential server, and its soak measures one busy keep-alive connection.
#
# Every SAMPLE_EVERY seconds (5) the server's RSS, threads and file descriptors, summed
# over its process tree, go to target/soak/ARCH.csv (elapsed_s,rss_kib,threads,fds). Each
# sample is the floor of five readings 0.2 s apart (proc_floor in scripts/lib/procstat.sh):
# what the server keeps, not the connections and threads in flight at one instant. The
# first 20% of each architecture's time is warm-up: the reference is the first sample after
# it, and the verdict compares the last sample with it. An architecture fails when its last
# sample exceeds the reference by more than 10% on any of the three, beyond a stated
# absolute slack:
#   - threads and fds: SLACK (default 8). They follow the connections open at the moment,
#     which the soak's own clients vary by up to 7 (4 idle, 2 of wirefuzz, 1 of curl), and
#     some architectures pay a thread and a descriptor for each;
#   - RSS: RSS_SLACK_KIB (default 2048). glibc gives freed memory back to the kernel only
#     now and then: in a 90 s soak of combined-delegation (a thread per request per step)
#     the floor of RSS moved between 5.0 and 6.1 MiB from one sample to the next with no
#     trend, more than 10% of it. scripts/fuzz-wire.sh is the finer check of memory: RSS
#     after a million requests against the idle baseline.
# The server must also still run, print no "panicked", and exit 0 on SIGTERM at the end.
#
# Usage: scripts/soak.sh
# Environment: DURATION (10m), PER_ARCH, ARCHS (default: every architecture),
#              SAMPLE_EVERY (5), SLACK (8), RSS_SLACK_KIB (2048), BASE_PORT (18500),
#              OUT (target/soak).
# Durations are written 90s, 2m or 1h (or a number of seconds).
# An architecture this machine cannot run (io-uring where io_uring is forbidden, as in a
# container under Docker's default seccomp profile) gets a "skipped" row with its reason.
set -euo pipefail

cd "$(dirname "$0")/.."
for arg in "$@"; do
  case $arg in
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
DURATION=${DURATION:-10m}
SAMPLE_EVERY=${SAMPLE_EVERY:-5}
SLACK=${SLACK:-8}
RSS_SLACK_KIB=${RSS_SLACK_KIB:-2048}
BASE_PORT=${BASE_PORT:-18500}
OUT=${OUT:-target/soak}

# shellcheck source=lib/install.sh
. scripts/lib/install.sh
# shellcheck source=lib/procstat.sh
. scripts/lib/procstat.sh
# shellcheck source=lib/server.sh
. scripts/lib/server.sh

log() { echo "soak: $*" >&2; }

# seconds DURATION: "90s", "2m", "1h" or a bare number of seconds, in whole seconds.
seconds() {
  local d=$1
  case $d in
    *h) echo $((${d%h} * 3600)) ;;
    *m) echo $((${d%m} * 60)) ;;
    *s) echo "${d%s}" ;;
    *) echo "$d" ;;
  esac
}

command -v curl >/dev/null || apt_install curl ca-certificates

echo "building the servers, the simulator and wirefuzz (release)" >&2
cargo build --release -q --workspace --exclude benches --bins
ARCHS=${ARCHS:-$(target/release/simulator architectures --names | tr '\n' ' ')}
read -r -a ARCH_LIST <<<"$ARCHS"
if [ -n "${PER_ARCH:-}" ]; then
  T=$(seconds "$PER_ARCH")
else
  T=$(($(seconds "$DURATION") / ${#ARCH_LIST[@]}))
fi
if ! [ "$T" -ge $((2 * SAMPLE_EVERY)) ] 2>/dev/null; then
  log "each architecture needs at least $((2 * SAMPLE_EVERY)) s (two samples); DURATION=$DURATION over ${#ARCH_LIST[@]} gives ${T} s"
  exit 2
fi
WARMUP=$((T / 5))
mkdir -p "$OUT"

TRAFFIC=()
# The traffic first, then the server (see scripts/lib/server.sh), however the script ends.
# shellcheck disable=SC2317 # called by the EXIT trap.
cleanup() {
  for pid in "${TRAFFIC[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${TRAFFIC[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  server_stop_all
}
trap cleanup EXIT

# idle_connections PORT SECONDS: every 3 s, opens 4 connections and leaves them for the
# server to close: 2 silent, 2 after one request. Ends after SECONDS.
idle_connections() {
  local port=$1 end=$((SECONDS + $2)) fd
  while [ $SECONDS -lt "$end" ]; do
    for fd in 5 6 7 8; do
      # A connection that fails to open (a full backlog) is simply not held this round.
      eval "exec $fd<>/dev/tcp/127.0.0.1/$port" 2>/dev/null || continue
    done
    printf 'GET / HTTP/1.1\r\nHost: idle\r\n\r\n' >&7 2>/dev/null || true
    printf 'GET / HTTP/1.1\r\nHost: idle\r\n\r\n' >&8 2>/dev/null || true
    sleep 3
    exec 5>&- 6>&- 7>&- 8>&-
  done
}

# one_request_per_connection PORT SECONDS: curl, one request (and connection) every 0.1 s;
# prints how many were answered. Ends after SECONDS, and after at most 100,000 requests.
one_request_per_connection() {
  local port=$1 end=$((SECONDS + $2)) n=0 ok=0
  while [ $SECONDS -lt "$end" ] && [ $n -lt 100000 ]; do
    n=$((n + 1))
    # Waits at most 2 s for the answer.
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/" && ok=$((ok + 1))
    sleep 0.1
  done
  echo "$ok/$n"
}

ROWS=()
FAILED=0
port=$BASE_PORT
for arch in "${ARCH_LIST[@]}"; do
  port=$((port + 1))
  log "$arch: ${T}s of mixed traffic on 127.0.0.1:$port"
  started=0
  server_start "$arch" "$port" "$OUT/$arch.stderr" "${SERVER_SHORT_TIMEOUTS[@]}" || started=$?
  if [ "$started" = 3 ]; then
    # This machine cannot run it (io_uring forbidden): said on stderr, not judged.
    ROWS+=("$(printf '%-20s skipped: %s' "$arch" "$(head -1 "$OUT/$arch.stderr")")")
    continue
  fi
  [ "$started" = 0 ] || exit "$started"

  # The traffic runs 2 s longer than the sampling, so that the last sample is under load.
  run_for=$((T + 2))
  TRAFFIC=()
  target/release/simulator run --target "127.0.0.1:$port" --clients 4 --duration "${run_for}s" \
    --request "GET /sleep/2" --timeout 2s --format json >"$OUT/$arch.simulator.json" 2>/dev/null &
  TRAFFIC+=($!)
  target/release/wirefuzz --target "127.0.0.1:$port" --requests 1000000000000 \
    --duration "${run_for}s" --rate 100 --connections 2 --stalls $((run_for / 10 + 1)) \
    --deadline 2s --seed "$port" --quiet --json >"$OUT/$arch.wirefuzz.json" 2>/dev/null &
  TRAFFIC+=($!)
  idle_connections "$port" "$run_for" &
  TRAFFIC+=($!)
  one_request_per_connection "$port" "$run_for" >"$OUT/$arch.curl" &
  TRAFFIC+=($!)

  # The samples: one every SAMPLE_EVERY s, on a fixed schedule from the start.
  echo "elapsed_s,rss_kib,threads,fds" >"$OUT/$arch.csv"
  start=$SECONDS
  for ((t = SAMPLE_EVERY; t <= T; t += SAMPLE_EVERY)); do
    # Sleeps until the next sample is due.
    while [ $((SECONDS - start)) -lt "$t" ]; do sleep 0.2; done
    read -r rss threads fds <<<"$(proc_floor "$SERVER_PID" 5)"
    echo "$t,$rss,$threads,$fds" >>"$OUT/$arch.csv"
  done

  # Waits for the traffic to end by itself (at most 15 s past its time), then stops
  # whatever has not.
  for _ in $(seq 75); do
    alive=0
    for pid in "${TRAFFIC[@]}"; do proc_running "$pid" && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for pid in "${TRAFFIC[@]}"; do
    if proc_running "$pid"; then
      log "$arch: traffic process $pid still running; stopping it"
      kill "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  TRAFFIC=()

  # The verdict: the first sample after the warm-up against the last.
  problems=()
  first=$(awk -F, -v w="$WARMUP" 'NR > 1 && $1 >= w { print; exit }' "$OUT/$arch.csv")
  last=$(tail -1 "$OUT/$arch.csv")
  IFS=, read -r t0 rss0 threads0 fds0 <<<"$first"
  IFS=, read -r t1 rss1 threads1 fds1 <<<"$last"
  [ "$rss1" -le $((rss0 + rss0 / 10 + RSS_SLACK_KIB)) ] ||
    problems+=("RSS grew $rss0 -> $rss1 KiB (over 10% + $RSS_SLACK_KIB KiB)")
  [ "$threads1" -le $((threads0 + threads0 / 10 + SLACK)) ] ||
    problems+=("threads grew $threads0 -> $threads1 (over 10% + $SLACK)")
  [ "$fds1" -le $((fds0 + fds0 / 10 + SLACK)) ] ||
    problems+=("fds grew $fds0 -> $fds1 (over 10% + $SLACK)")
  proc_running "$SERVER_PID" || problems+=("the server is not running any more")

  # SIGTERM; the server must exit 0 within 5 s.
  server_finish "$OUT/$arch.stderr"

  sim_sent=$(json_number sent "$OUT/$arch.simulator.json")
  fuzz_sent=$(json_number requests "$OUT/$arch.wirefuzz.json")
  fuzz_hung=$(json_number hung_connections "$OUT/$arch.wirefuzz.json")
  judge "soak: $arch"
  ROWS+=("$(printf '%-20s %4s %8s %4s %4s   %4s %8s %4s %4s   %9s %8s %4s %9s  %4s  %s' \
    "$arch" "$t0" "$rss0" "$threads0" "$fds0" "$t1" "$rss1" "$threads1" "$fds1" \
    "${sim_sent:-0}" "${fuzz_sent:-0}" "${fuzz_hung:-?}" "$(cat "$OUT/$arch.curl" 2>/dev/null)" \
    "$exit_status" "$verdict")")
  log "$arch: $verdict"
done

printf '\n%-20s %-25s   %-25s   %9s %8s %4s %9s  %4s  %s\n' '' 'after the warm-up' 'last' \
  simulator wirefuzz '' curl '' ''
printf '%-20s %4s %8s %4s %4s   %4s %8s %4s %4s   %9s %8s %4s %9s  %4s  %s\n' architecture \
  's' 'RSS KiB' thr fds 's' 'RSS KiB' thr fds requests requests hung answered exit verdict
for row in "${ROWS[@]}"; do echo "$row"; done
printf '\n%s s per architecture (warm-up %s s), a sample (the floor of 5 readings) every %s s in %s/ARCH.csv;\n' \
  "$T" "$WARMUP" "$SAMPLE_EVERY" "$OUT"
printf 'fails on growth of the last sample over the first by more than 10%% (+ %s KiB for RSS, + %s for threads and fds).\n' \
  "$RSS_SLACK_KIB" "$SLACK"
exit $FAILED
