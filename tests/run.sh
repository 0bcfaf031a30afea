#!/usr/bin/env bash
# The project's test command (README): installs and starts everything the tests need on a fresh
# Debian machine (redis-server, Docker engine, a local Redis image, Python deps), then runs
# ruff, mypy and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = "0" ] || SUDO="sudo -n"

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
# Debian's Docker Compose (1.29, the v1 `docker-compose` command) runs the published app in
# tests/publish/test_compose.py.
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# Debian's Chromium, driven headless by Playwright in the dashboard's browser test
# (tests/e2e/test_dashboard_browser.py); never a downloaded browser.
[ -x /usr/lib/chromium/chromium ] || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing ${missing[*]} (Debian packages)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== container engine"
sh tests/support/start_dockerd.sh
sh tests/support/build_redis_image.sh
# The other offline test images (tests/e2e/test_generic_containers.py and
# test_integration_extension.py): memcached, a recorder standing in for Redis Insight, and the
# real Redis Commander (from npm). Each script returns at once when its image exists.
sh tests/support/build_kv_image.sh
sh tests/support/build_recorder_image.sh
sh tests/support/build_redis_commander_image.sh

echo "== python environment (.venv)"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,embedded,entraid,tracing]'
# The offline stand-in for the Python base image (the .venv's interpreter with pip and
# redis-py) and a Redis image with redis-cli, for the published Docker Compose app test.
sh tests/support/build_python_image.sh

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
