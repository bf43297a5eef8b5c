#!/usr/bin/env bash
# Prepares the host's Docker engine for the kind lab (called by `make lab-up`), and says on stderr
# everything it changes:
#   - Debian + root: installs docker.io when dockerd is missing;
#   - starts dockerd when no daemon answers (systemctl where systemd runs, else dockerd in the
#     background: pid file /run/keysync-dockerd.pid, log /var/log/keysync-dockerd.log);
#   - only when this host's capability bounding set lacks CAP_SYS_RESOURCE (privileged containers
#     fail there with "unable to apply caps: operation not permitted"): installs
#     keysync-runtime-wrapper as dockerd's default runtime in /etc/docker/daemon.json and makes
#     the daemon reload it.
# Then it proves the result: `docker run --privileged` of a FROM-scratch image.
#   hack/prepare-docker.sh [--check]   (--check: change nothing, exit 1 when something is missing)
. "$(dirname "$0")/lib.sh"

check_only=false
[ "${1:-}" = --check ] && check_only=true

WRAPPER_DST=/usr/local/libexec/keysync/keysync-runtime-wrapper
RUNTIME_NAME=keysync
DAEMON_JSON=${KEYSYNC_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
PIDFILE=/run/keysync-dockerd.pid
DOCKERD_LOG=/var/log/keysync-dockerd.log

die() { log "prepare-docker: $*"; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
is_debian() { [ -r /etc/debian_version ] && command -v apt-get >/dev/null; }
daemon_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# needs_wrapper: true when CAP_SYS_RESOURCE (bit 24) is missing from this process's CapBnd.
needs_wrapper() {
  local bnd
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  [ -n "$bnd" ] || die "failed to read CapBnd from /proc/self/status"
  (( (16#$bnd >> 24 & 1) == 0 ))
}

# 1. the engine
if ! command -v dockerd >/dev/null; then
  $check_only && die "dockerd is not installed (run make lab-up as root on Debian)"
  is_root && is_debian || die "dockerd is not installed and this is not Debian as root: install Docker yourself"
  log "prepare-docker: installing Debian package docker.io (dockerd is missing)"
  apt-get update -qq
  # A temporary policy-rc.d keeps the postinst from starting the daemon behind our back; this
  # script starts it below, the same way on hosts with and without systemd.
  added_policy=false
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && added_policy=true
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null || rc=$?
  $added_policy && rm -f /usr/sbin/policy-rc.d
  [ $rc -eq 0 ] || die "failed to install docker.io (apt-get exit $rc)"
fi

start_dockerd() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    log "prepare-docker: starting docker.service (systemctl start docker)"
    systemctl start docker
  else
    log "prepare-docker: starting dockerd in the background (no systemd; pid $PIDFILE, log $DOCKERD_LOG)"
    # setsid: the daemon outlives this script and make; it is not part of our process group.
    setsid dockerd --pidfile "$PIDFILE" </dev/null >>"$DOCKERD_LOG" 2>&1 &
  fi
  local i
  for i in $(seq 1 60); do daemon_up && return 0; sleep 0.5; done
  die "dockerd did not answer within 30 s; see $DOCKERD_LOG"
}

if ! daemon_up; then
  $check_only && die "no Docker daemon answers"
  is_root || die "no Docker daemon answers and this is not root: start Docker yourself"
  start_dockerd
fi

# 2. the runtime wrapper, only where the bounding set lacks CAP_SYS_RESOURCE
if needs_wrapper; then
  current=$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null || true)
  if [ "$current" != "$RUNTIME_NAME" ]; then
    $check_only && die "this host lacks CAP_SYS_RESOURCE and dockerd's default runtime is '$current', not the keysync wrapper"
    is_root || die "this host lacks CAP_SYS_RESOURCE: dockerd needs keysync-runtime-wrapper as default runtime; rerun as root"
    log "prepare-docker: this host's capability bounding set lacks CAP_SYS_RESOURCE, so runc refuses privileged containers"
    log "prepare-docker: installing $WRAPPER_DST and making it dockerd's default runtime '$RUNTIME_NAME' in $DAEMON_JSON (was '$current')"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$KEYSYNC_ROOT" && CGO_ENABLED=0 go build -trimpath -o "$tmp/wrapper" ./cmd/keysync-runtime-wrapper)
    install -D -m 0755 "$tmp/wrapper" "$WRAPPER_DST"
    runc_path=$(command -v runc || true)
    [ -n "$runc_path" ] || die "runc is not installed (Debian package runc)"
    mkdir -p "$(dirname "$DAEMON_JSON")"
    [ -s "$DAEMON_JSON" ] || echo '{}' >"$DAEMON_JSON"
    cp "$DAEMON_JSON" "$DAEMON_JSON.keysync-backup"
    log "prepare-docker: previous $DAEMON_JSON saved as $DAEMON_JSON.keysync-backup"
    jq --arg name "$RUNTIME_NAME" --arg path "$WRAPPER_DST" --arg runc "$runc_path" \
      '.runtimes[$name] = {path: $path, runtimeArgs: ["--keysync-runtime=" + $runc]} | ."default-runtime" = $name' \
      "$DAEMON_JSON.keysync-backup" >"$tmp/daemon.json"
    install -m 0644 "$tmp/daemon.json" "$DAEMON_JSON"
    # runtimes and default-runtime are reloadable: SIGHUP, no restart of running containers.
    pid=$(pidof dockerd || true)
    [ -n "$pid" ] || die "failed to find dockerd's pid to reload $DAEMON_JSON"
    log "prepare-docker: reloading dockerd (SIGHUP to pid $pid)"
    kill -HUP "$pid"
    for i in $(seq 1 20); do
      [ "$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" = "$RUNTIME_NAME" ] && break
      sleep 0.5
    done
    [ "$(docker info --format '{{.DefaultRuntime}}')" = "$RUNTIME_NAME" ] ||
      die "dockerd did not take default-runtime '$RUNTIME_NAME' from $DAEMON_JSON; see $DOCKERD_LOG"
  fi
fi

# 3. prove it: a privileged container from a FROM-scratch image (no pull).
probe=keysync-probe:latest
if ! docker image inspect "$probe" >/dev/null 2>&1; then
  command -v catatonit >/dev/null || die "catatonit is missing (Debian package catatonit)"
  ctx=$(mktemp -d)
  cp "$(command -v catatonit)" "$ctx/catatonit"
  printf 'FROM scratch\nCOPY catatonit /catatonit\nENTRYPOINT ["/catatonit","--version"]\n' >"$ctx/Dockerfile"
  if ! out=$(DOCKER_BUILDKIT=0 docker build -q -t "$probe" "$ctx" 2>&1); then rm -rf "$ctx"; die "failed to build $probe: $out"; fi
  rm -rf "$ctx"
fi
if ! out=$(docker run --rm --privileged --network none "$probe" 2>&1); then
  die "docker run --privileged failed: $out"
fi
log "prepare-docker: ok: docker run --privileged works (runtime $(docker info --format '{{.DefaultRuntime}}'))"
