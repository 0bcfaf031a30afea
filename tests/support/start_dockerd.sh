#!/bin/sh
# Make a Docker engine answer on this machine, idempotently (at most ~60 s).
#
# - If `docker version` already works (any engine: DOCKER_HOST, context, default socket), do nothing.
# - Otherwise install Debian's docker.io when dockerd is missing, start dockerd in the background
#   (log: ${DOCKERD_LOG:-/tmp/apphost-dockerd.log}) and wait until the engine answers.
# Exit status 0 when an engine answers, 1 otherwise (with the reason on stderr).
set -u

engine_answers() {
    docker version >/dev/null 2>&1
}

if engine_answers; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "start_dockerd.sh: not root and no sudo; start a Docker engine yourself" >&2
        exit 1
    fi
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "start_dockerd.sh: installing Debian's docker.io" >&2
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker.io >/dev/null 2>&1; then
        echo "start_dockerd.sh: apt-get install docker.io failed" >&2
        exit 1
    fi
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    LOG="${DOCKERD_LOG:-/tmp/apphost-dockerd.log}"
    echo "start_dockerd.sh: starting dockerd in the background (log: $LOG)" >&2
    # setsid: the daemon must outlive the shell (and the pytest process) that started it.
    $SUDO setsid dockerd >"$LOG" 2>&1 < /dev/null &
fi

i=0
while [ "$i" -lt 120 ]; do
    if engine_answers; then
        exit 0
    fi
    sleep 0.5
    i=$((i + 1))
done
echo "start_dockerd.sh: dockerd did not answer within 60 s; see ${DOCKERD_LOG:-/tmp/apphost-dockerd.log}" >&2
exit 1
