#!/usr/bin/env bash
# The HTML reports as a person sees them: one report of each kind (a run, a comparison, a
# sweep, a lab, a merge of shards), each opened in headless Chromium and photographed. Fails
# if a page is blank (its screenshot is nearly empty, or its DOM has no chart) or the
# browser logged a console error, and if the run page's replay does not move (two
# photographs at different moments are the same). Run by .ci/run; takes a minute once
# Chromium is there.
#
# Installs Debian's `chromium` with apt where it is missing.
# Usage: scripts/check-reports.sh [DIR]   (DIR keeps the reports and screenshots; default:
#        a temporary directory, removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/install.sh
. scripts/lib/install.sh
# shellcheck source=lib/server.sh
. scripts/lib/server.sh

KEEP=${1:-}
OUT=${KEEP:-$(mktemp -d /tmp/servelab-reports.XXXXXX)}
mkdir -p "$OUT"
cleanup() {
  local rc=$?
  server_stop_all
  [ -n "$KEEP" ] || rm -rf "$OUT"
  exit $rc
}
trap cleanup EXIT
log() { echo "check-reports: $*" >&2; }

BROWSER=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$BROWSER" ]; then
  apt_install chromium fonts-dejavu-core
  BROWSER=$(command -v chromium)
fi

cargo build --locked -q -p simulator -p single
SIM=target/debug/simulator
SERVER_BIN_DIR=target/debug server_start single 7795 "$OUT/single.stderr" --keep-alive-timeout 5s
$SIM run --target 127.0.0.1:7795 --wait 10s --clients 1 >/dev/null

# One report of each kind, small enough to take seconds.
$SIM run --target 127.0.0.1:7795 --clients 5 --hold 500ms --timeout 1400ms --report "$OUT/run.html" >/dev/null
$SIM compare --clients 8 --report "$OUT/compare.html" >/dev/null
$SIM sweep --archs prefork-pool,event-loop --workers 4 --rates 100,200,400,1000,2000 --refine 0 \
  --step 500ms --report "$OUT/sweep.html" >/dev/null
$SIM lab 4 --report "$OUT/lab.html" >/dev/null
AT=$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%SZ)
shards=()
for i in 1 2 3; do
  $SIM run --target 127.0.0.1:7795 --clients 6 --request "GET /sleep/50" --timeout 1s \
    --shard "$i/3" --start-at "$AT" --save "$OUT/shards" >/dev/null 2>&1 &
  shards+=($!)
done
wait "${shards[@]}"
$SIM merge "$OUT/shards" --report "$OUT/merge.html" >/dev/null

failed=0
for kind in run compare sweep lab merge; do
  page="$OUT/$kind.html"
  # The browser's own log: console messages and page errors appear as CONSOLE lines.
  "$BROWSER" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1150,1700 \
    --enable-logging=stderr --v=0 --screenshot="$OUT/$kind.png" "file://$(realpath "$page")" \
    >/dev/null 2>"$OUT/$kind.browser.log" || true
  dom=$("$BROWSER" --headless --no-sandbox --disable-gpu --dump-dom "file://$(realpath "$page")" 2>/dev/null || true)
  size=$(stat -c %s "$OUT/$kind.png" 2>/dev/null || echo 0)
  charts=$(grep -o '<svg' <<<"$dom" | wc -l)
  if grep -qE 'CONSOLE|Uncaught' "$OUT/$kind.browser.log"; then
    log "FAIL: $kind: the browser logged console errors:"
    grep -E 'CONSOLE|Uncaught' "$OUT/$kind.browser.log" | head -5 >&2
    failed=1
  elif [ "$size" -lt 20000 ] || [ "$charts" -lt 1 ]; then
    log "FAIL: $kind: the page looks blank (screenshot $size bytes, $charts charts in the DOM)"
    failed=1
  else
    log "ok: $kind.html $(( $(stat -c %s "$page") / 1024 )) KiB, $charts charts, screenshot $((size / 1024)) KiB"
  fi
done
# The replay moves: the run page's replay photographed at two moments of its loop must
# differ. Headless Chromium photographs a page as soon as it has loaded, and its virtual
# clock does not drive CSS animations, so each moment is set in a copy of the page: the
# replay's animations start that far into their loop (a negative animation-delay) and stand
# still there (paused, as the page's own checkbox pauses them). The window is tall enough
# to hold the whole page.
for at in 0.3 1.2; do
  sed "s|</style>|.replay .moving { animation-delay: -${at}s !important; animation-play-state: paused !important; }</style>|" \
    "$OUT/run.html" >"$OUT/replay-$at.html"
  "$BROWSER" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1150,3400 \
    --screenshot="$OUT/replay-$at.png" "file://$(realpath "$OUT/replay-$at.html")" >/dev/null 2>&1 || true
done
if ! grep -q 'class="moving veil"' "$OUT/run.html"; then
  log "FAIL: replay: the run page has no replay"
  failed=1
elif [ ! -s "$OUT/replay-0.3.png" ] || [ ! -s "$OUT/replay-1.2.png" ]; then
  log "FAIL: replay: the browser took no photograph of the replay"
  failed=1
elif cmp -s "$OUT/replay-0.3.png" "$OUT/replay-1.2.png"; then
  log "FAIL: replay: the photographs 0.3 s and 1.2 s into the replay are the same: nothing moved"
  failed=1
else
  log "ok: replay: the photographs 0.3 s and 1.2 s into the replay differ"
fi
[ $failed -eq 0 ] || exit 1
log "passed"
