# shellcheck shell=bash
# Shared by the container scripts: a Docker engine to talk to, and stopping it again.
# Source it after lib/install.sh. Needs WORK (a temporary directory the caller removes) and
# a function `log`.
#
# docker_up: installs docker.io with apt where dockerd is missing; where no engine is
# running, starts dockerd with its state under $WORK (data root, exec root, socket), points
# DOCKER_HOST at it and sets DOCKERD_PID. An engine that already runs is used as it is.
# docker_down: stops the dockerd that docker_up started, by PID.

DOCKERD_PID=""

docker_up() {
  # Docker's engine; docker.io's docker CLI too, unless one is installed already.
  command -v dockerd >/dev/null || apt_install docker.io iptables ca-certificates
  if ! docker info >/dev/null 2>&1; then
    log "no Docker engine running; starting dockerd with data root $WORK/data"
    export DOCKER_HOST="unix://$WORK/docker.sock"
    $SUDO dockerd --data-root "$WORK/data" --exec-root "$WORK/exec" \
      --pidfile "$WORK/dockerd.pid" --host "$DOCKER_HOST" \
      >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    # Waits (at most 30 s) for the daemon to answer.
    for _ in $(seq 300); do
      docker info >/dev/null 2>&1 && break
      if ! $SUDO kill -0 "$DOCKERD_PID" 2>/dev/null; then
        log "dockerd exited; its log:"
        tail -20 "$WORK/dockerd.log" >&2
        return 1
      fi
      sleep 0.1
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not answer within 30 s"; tail -20 "$WORK/dockerd.log" >&2; return 1; }
    # The daemon is root's; let this user's docker CLI reach the socket.
    $SUDO chmod 666 "$WORK/docker.sock"
  fi
  log "engine: $(docker version --format '{{.Server.Version}}'), storage $(docker info --format '{{.Driver}}')"
}

docker_down() {
  [ -n "$DOCKERD_PID" ] || return 0
  log "stopping dockerd (pid $DOCKERD_PID)"
  $SUDO kill "$DOCKERD_PID" 2>/dev/null || true
  # dockerd stops its containers and containerd; give it 20 s.
  for _ in $(seq 200); do
    $SUDO kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.1
  done
  $SUDO kill -9 "$DOCKERD_PID" 2>/dev/null || true
  DOCKERD_PID=""
}
