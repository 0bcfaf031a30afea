#!/bin/sh
# Install Debian's chromium for the dashboard's browser test (tests/e2e/test_dashboard_browser.py),
# idempotently. Playwright drives this system binary headless; no browser is ever downloaded
# (never `playwright install`), and chromium-driver is not needed.
set -eu

BINARY=/usr/lib/chromium/chromium

if [ -x "$BINARY" ]; then
    exit 0
fi

_sudo=""
if [ "$(id -u)" != "0" ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install_chromium.sh: $BINARY is missing and this is not root: run as root, or install sudo" >&2
        exit 1
    fi
    _sudo="sudo -n"
fi

echo "install_chromium.sh: installing Debian's chromium" >&2
$_sudo apt-get update -qq >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -qq chromium >/dev/null

if [ ! -x "$BINARY" ]; then
    echo "install_chromium.sh: the chromium package did not install $BINARY" >&2
    exit 1
fi
