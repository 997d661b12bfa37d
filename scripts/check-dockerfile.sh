#!/usr/bin/env bash
# Checks the registry path: builds the root Dockerfile with `docker build .`, as a user
# with image-registry access would, then runs what it built: every binary by name, and a
# server container (its health check must pass) measured by a simulator container.
#
# The Dockerfile's only image from a registry is its build stage, rust:1.95-bookworm. If
# the engine has it or can pull it, that is used. Otherwise (this machine, CI) the script
# makes a stand-in under the same name: a Debian bookworm root filesystem from debootstrap
# (Debian's apt mirror, not an image registry) with gcc, the host's Rust toolchain and the
# host's CA certificates (so that cargo inside the build reaches crates.io the way the host
# does). The stand-in is removed at the end, with everything else this script made.
#
# Like scripts/container-smoke.sh it installs docker.io (and debootstrap, if it needs the
# stand-in) with apt where missing, and starts and stops its own dockerd where none runs.
# Run by .ci/run; about 2½ minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=rust:1.95-bookworm
IMAGE=servelab-registry-check:latest
NETWORK=servelab-registry-check
WORK=$(mktemp -d /tmp/servelab-dockerfile.XXXXXX)
STANDIN=0
# shellcheck source=lib/install.sh
. scripts/lib/install.sh
# shellcheck source=lib/docker.sh
. scripts/lib/docker.sh

log() { echo "check-dockerfile: $*" >&2; }

cleanup() {
  local rc=$?
  if docker info >/dev/null 2>&1; then
    docker rm -f "$NETWORK-server" >/dev/null 2>&1 || true
    docker network rm "$NETWORK" >/dev/null 2>&1 || true
    docker image rm -f "$IMAGE" >/dev/null 2>&1 || true
    [ $STANDIN -eq 0 ] || docker image rm -f "$BASE" >/dev/null 2>&1 || true
  fi
  docker_down
  $SUDO rm -rf "$WORK" 2>/dev/null || true
  exit $rc
}
trap cleanup EXIT

docker_up

# --- the build stage's base image ---------------------------------------------------
if docker image inspect "$BASE" >/dev/null 2>&1; then
  log "using the engine's $BASE"
elif timeout 60 docker pull -q "$BASE" >/dev/null 2>&1; then
  log "pulled $BASE"
else
  log "no registry: making a stand-in $BASE (debootstrap bookworm + the host's Rust)"
  command -v debootstrap >/dev/null || apt_install debootstrap
  ROOTFS=$WORK/rootfs
  $SUDO debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates \
    bookworm "$ROOTFS" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  SYSROOT=$(rustc --print sysroot)
  $SUDO mkdir -p "$ROOTFS/usr/local/rust"
  $SUDO cp -a "$SYSROOT/bin" "$SYSROOT/lib" "$ROOTFS/usr/local/rust/"
  $SUDO cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
  $SUDO tar -C "$ROOTFS" -c . |
    docker import --change 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$BASE" >/dev/null
  STANDIN=1
  log "stand-in $BASE with $(rustc -V)"
fi

# --- docker build . -------------------------------------------------------------------
log "docker build -t $IMAGE ."
docker build -q -t "$IMAGE" . >/dev/null
log "built $IMAGE: $(docker image ls "$IMAGE" --format '{{.Size}}'), user $(docker image inspect --format '{{.Config.User}}' "$IMAGE")"

# Every architecture of the registry (as the image's simulator lists it), and the simulator.
ARCHS=$(docker run --rm "$IMAGE" simulator architectures --names | tr '\n' ' ')
for bin in $ARCHS simulator; do
  docker run --rm "$IMAGE" "$bin" --version >/dev/null ||
    { log "FAIL: docker run $IMAGE $bin --version"; exit 1; }
done

# --- a server container, its health check, and the simulator against it -------------
docker network create "$NETWORK" >/dev/null
docker run -d --name "$NETWORK-server" --network "$NETWORK" --network-alias server \
  "$IMAGE" prefork-pool --addr 0.0.0.0:7777 --workers 2 >/dev/null
# Waits (at most 30 s) for the image's HEALTHCHECK (simulator probe) to pass.
health=starting
for _ in $(seq 150); do
  health=$(docker inspect --format '{{.State.Health.Status}}' "$NETWORK-server")
  [ "$health" = starting ] || break
  sleep 0.2
done
[ "$health" = healthy ] || { log "FAIL: the server container is $health"; docker logs "$NETWORK-server" >&2; exit 1; }

# Four clients of 200 ms against 2 workers: two rounds, all within the 1 s deadline.
report=$(docker run --rm --network "$NETWORK" "$IMAGE" simulator run --target server:7777 \
  --clients 4 --request "GET /sleep/200" --timeout 1s --format json)
served=$(grep -oE '"served": *[0-9]+' <<<"$report" | head -1 | grep -oE '[0-9]+$')
[ "$served" = 4 ] || { log "FAIL: the simulator container saw $served of 4 clients served"; exit 1; }
log "passed: the image built by 'docker build .' is healthy and served 4 of 4 clients"
