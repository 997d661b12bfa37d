#!/usr/bin/env bash
# The simulator in shards on Docker Swarm, end to end: a single-node swarm (initialised
# here if the engine is not in one), deploy/stack.yaml with one server and SHARDS simulator
# replicas that start together, their results merged with `simulator merge`, and a check
# that the merged ledger covers every client. Run by scripts/container-smoke.sh (so by CI);
# takes about a minute once the image exists.
#
# Leaves the machine as it found it: removes the stack, its network and volume, and
# leaves the swarm if it initialised it (a swarm that already existed is kept). Where no
# engine is running it starts dockerd itself, as scripts/container-smoke.sh does.
#
# Environment: SERVELAB_IMAGE (default servelab; built with scripts/build-images.sh if
# missing), SHARDS (3), ARCH (thread-per-conn), CLIENTS (300), REQUEST, TIMEOUT, DURATION
# (see deploy/stack.yaml). The merged report is printed, and kept in $SHARDS_OUT if set.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK=servelab-shards
export SERVELAB_IMAGE=${SERVELAB_IMAGE:-servelab}
export SHARDS=${SHARDS:-3} CLIENTS=${CLIENTS:-300}
WORK=$(mktemp -d /tmp/servelab-swarm.XXXXXX)
# shellcheck source=lib/install.sh
. scripts/lib/install.sh
# shellcheck source=lib/docker.sh
. scripts/lib/docker.sh

log() { echo "swarm-shards: $*" >&2; }

JOINED=0
cleanup() {
  local rc=$?
  if docker info >/dev/null 2>&1; then
    docker stack rm "$STACK" >/dev/null 2>&1 || true
    # The stack's containers, network and volume go away a moment after `stack rm`.
    for _ in $(seq 100); do
      [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ] &&
        [ -z "$(docker network ls -q --filter "label=com.docker.stack.namespace=$STACK")" ] && break
      sleep 0.2
    done
    docker volume rm "${STACK}_results" >/dev/null 2>&1 || true
    if [ "$JOINED" = 1 ]; then
      docker swarm leave --force >/dev/null 2>&1 || true
      log "left the swarm this script initialised"
    fi
  fi
  docker_down
  $SUDO rm -rf "$WORK" 2>/dev/null || true
  exit $rc
}
trap cleanup EXIT

docker_up
if ! docker image inspect "$SERVELAB_IMAGE" >/dev/null 2>&1; then
  scripts/build-images.sh "$SERVELAB_IMAGE"
fi

# --- a swarm of one node, unless the engine is in one already --------------------------
state=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [ "$state" = inactive ]; then
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
  JOINED=1
  log "initialised a single-node swarm"
else
  log "using the swarm this engine is in ($state)"
fi

# --- deploy: the server, and the shards, which start together ---------------------------
# Time for every replica to start, find the server and wait for it before the common start.
START_AT=$(date -u -d '+20 seconds' +%Y-%m-%dT%H:%M:%SZ)
export START_AT
log "deploying $STACK: $SHARDS shards of $CLIENTS clients against ${ARCH:-thread-per-conn}, starting at $START_AT"
docker stack deploy --resolve-image never -c deploy/stack.yaml "$STACK" >/dev/null

# Waits (at most 3 minutes) until every shard's task has ended.
service="${STACK}_simulator"
for _ in $(seq 900); do
  states=$(docker service ps "$service" --format '{{.CurrentState}}' 2>/dev/null || true)
  ended=$(grep -cE '^(Complete|Failed|Rejected|Shutdown)' <<<"$states" || true)
  [ "$ended" -ge "$SHARDS" ] && break
  sleep 0.2
done
docker service ps "$service" --no-trunc --format '{{.Name}} {{.CurrentState}} {{.Error}}' >&2
if [ "${ended:-0}" -lt "$SHARDS" ]; then
  log "FAIL: the shards did not all end within 3 minutes"
  docker service logs --raw "$service" 2>&1 | tail -20 >&2
  exit 1
fi

# --- collect and merge: one command ------------------------------------------------------
set +e
docker run --rm -v "${STACK}_results:/results" "$SERVELAB_IMAGE" \
  simulator merge /results --save /results/merged >"$WORK/merged.txt" 2>"$WORK/merge.err"
rc=$?
set -e
cat "$WORK/merged.txt"
if [ -n "${SHARDS_OUT:-}" ]; then
  mkdir -p "$SHARDS_OUT"
  cp "$WORK/merged.txt" "$SHARDS_OUT/"
  docker run --rm -v "${STACK}_results:/results" "$SERVELAB_IMAGE" simulator merge /results \
    --format json >"$SHARDS_OUT/merged.json" 2>/dev/null || true
fi
if [ $rc -ne 0 ]; then
  log "FAIL: simulator merge exited with $rc"
  cat "$WORK/merge.err" >&2
  docker service logs --raw "$service" 2>&1 | tail -20 >&2
  exit 1
fi

# --- the check: every client in the merged ledger -----------------------------------------
covered="merged $SHARDS of $SHARDS shards ($(seq -s ', ' 1 "$SHARDS")): $CLIENTS of the run's $CLIENTS clients"
if ! grep -qF "$covered" "$WORK/merged.txt"; then
  log "FAIL: the merged report does not say '$covered'"
  exit 1
fi
served=$(sed -nE 's/^served within deadline: ([0-9]+)\/([0-9]+)$/\1 \2/p' "$WORK/merged.txt")
read -r got total <<<"$served"
if [ "${total:-0}" -ne "$CLIENTS" ] || [ "${got:-0}" -lt 1 ]; then
  log "FAIL: the merged ledger says '$served'"
  exit 1
fi
log "passed: $SHARDS shards merged, $got of $total clients served, every client in the ledger"
