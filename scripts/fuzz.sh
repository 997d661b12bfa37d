#!/usr/bin/env bash
# Fuzzes servelab's protocol for a bounded time: the request parser (`request_head`) and the
# connection state machine (`connection`), the cargo-fuzz targets in fuzz/ (docs/protocol.md,
# "Fuzzing", says what each one checks).
#
#   scripts/fuzz.sh                          # every target, 60 s each
#   scripts/fuzz.sh connection               # one target
#   SECONDS_PER_TARGET=600 scripts/fuzz.sh   # longer
#
# It installs cargo-fuzz (`cargo install cargo-fuzz --locked`) if it is missing, writes the
# seed corpus (every request of protocol::hostile and a few valid ones, by the protocol
# crate's example `fuzz_corpus`) into target/fuzz/corpus/<target>, where what the fuzzer
# finds accumulates from run to run, builds the targets without a sanitizer (which works
# on the stable toolchain; nightly is used only if the stable build fails and a nightly
# toolchain is installed), and runs each target for SECONDS_PER_TARGET seconds. Each run's
# whole output is kept in target/fuzz/logs/<target>.log.
#
# At the end it prints, for every target, the inputs executed, the size of the corpus and
# "no crash" or the path of the input that crashed it (under fuzz/artifacts/<target>/), and
# exits 1 if any target crashed. To see what the connection target did with a crashing
# input: FUZZ_TRACE=1 cargo fuzz run --sanitizer none connection fuzz/artifacts/connection/crash-...
#
# Usage: scripts/fuzz.sh [TARGET...]
# Environment: SECONDS_PER_TARGET (default 60), TARGETS (default: every target in fuzz/,
#              "request_head connection"; arguments take precedence).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-60}
ALL_TARGETS="request_head connection"
for arg in "$@"; do
  case $arg in
    -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [ $# -gt 0 ]; then
  TARGETS="$*"
else
  TARGETS=${TARGETS:-$ALL_TARGETS}
fi
for target in $TARGETS; do
  case " $ALL_TARGETS " in
    *" $target "*) ;;
    *) echo "fuzz: no target $target (the targets: $ALL_TARGETS)" >&2; exit 2 ;;
  esac
done
case $SECONDS_PER_TARGET in
  '' | *[!0-9]*) echo "fuzz: SECONDS_PER_TARGET must be a whole number of seconds" >&2; exit 2 ;;
esac

# --- what is needed -----------------------------------------------------------------
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz with cargo install (a few minutes)" >&2
  cargo install cargo-fuzz --locked
fi

# The toolchain: stable builds the targets with --sanitizer none; if that fails here, nightly
# (if installed) is tried once, and used from then on.
FUZZ=(cargo fuzz)
BUILD_LOG=target/fuzz/logs/build.log
mkdir -p target/fuzz/logs
echo "building the fuzz targets (log: $BUILD_LOG)" >&2
if ! "${FUZZ[@]}" build --sanitizer none >"$BUILD_LOG" 2>&1; then
  if cargo +nightly --version >/dev/null 2>&1; then
    echo "the stable build failed (see $BUILD_LOG); trying nightly" >&2
    FUZZ=(cargo +nightly fuzz)
    "${FUZZ[@]}" build --sanitizer none >"$BUILD_LOG" 2>&1 || {
      tail -20 "$BUILD_LOG" >&2
      echo "fuzz: the fuzz targets do not build on stable or nightly" >&2
      exit 1
    }
  else
    tail -20 "$BUILD_LOG" >&2
    echo "fuzz: the fuzz targets do not build on stable, and no nightly toolchain is installed" >&2
    exit 1
  fi
fi

# --- fuzzing ------------------------------------------------------------------------
SUMMARY=()
WHY=()
CRASHED=0
for target in $TARGETS; do
  corpus=target/fuzz/corpus/$target
  log=target/fuzz/logs/$target.log
  cargo run -q -p protocol --example fuzz_corpus -- "$corpus" >&2
  echo "fuzzing $target for ${SECONDS_PER_TARGET}s (log: $log)" >&2
  status=0
  # -timeout: an input that takes over 10 s is a hang, and a finding like a crash.
  "${FUZZ[@]}" run --sanitizer none "$target" "$corpus" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -print_final_stats=1 >"$log" 2>&1 ||
    status=$?
  # What libFuzzer said last (a run that crashes at once may not have said all of it).
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | sed 's/corp: //' || true)
  files=$(find "$corpus" -type f | wc -l)
  artifact=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$log" | tail -1 || true)
  if [ "$status" -eq 0 ]; then
    result="no crash"
  elif [ -n "$artifact" ]; then
    result="CRASH: $artifact"
    CRASHED=1
    # The panic's place and message, or libFuzzer's own report (a timeout, say).
    why=$(grep -m1 -A1 ' panicked at ' "$log" || grep -m1 'ERROR: libFuzzer' "$log" || true)
    WHY+=("$target: $why")
  else
    result="FAILED with status $status, no crashing input saved (see $log)"
    CRASHED=1
  fi
  SUMMARY+=("$(printf '%-14s %12s %24s  %s' "$target" "${executions:-?}" \
    "${corp:-?} ($files files)" "$result")")
done

echo
printf '%-14s %12s %24s  %s\n' target executions "corpus (inputs/bytes)" result
printf '%s\n' "${SUMMARY[@]}"
if [ $CRASHED -ne 0 ]; then
  echo
  [ ${#WHY[@]} -eq 0 ] || printf '%s\n' "${WHY[@]}"
  echo "reproduce a crash: ${FUZZ[*]} run --sanitizer none TARGET ARTIFACT" \
    "(FUZZ_TRACE=1 shows the connection target's steps)"
  exit 1
fi
