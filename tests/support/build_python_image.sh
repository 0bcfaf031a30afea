#!/bin/sh
# Build the local images the published Docker Compose test (tests/publish/test_compose.py)
# runs on, idempotently, without a registry:
#
#   apphost-test/python:3     a stand-in for python:3.12-slim: the interpreter of the project's
#                             .venv (its binary, standard library and shared libraries), with
#                             pip and redis-py in site-packages. PIP_NO_INDEX=1 makes
#                             `pip install -r requirements.txt` work offline: what the app needs
#                             is already installed. Generated Dockerfiles build on it with
#                             --build-arg PYTHON_IMAGE=apphost-test/python:3.
#   apphost-test/redis-cli:7  Debian's redis-server plus redis-cli (the Compose health check
#                             runs `redis-cli ping`, as it would on the official image).
#
# Usage: build_python_image.sh [--force]
# (names: $APPHOST_TEST_PYTHON_IMAGE, $APPHOST_TEST_REDIS_CLI_IMAGE; interpreter: $PYTHON_FOR_IMAGE,
# default .venv/bin/python)
set -eu

PY_IMAGE="${APPHOST_TEST_PYTHON_IMAGE:-apphost-test/python:3}"
REDIS_IMAGE="${APPHOST_TEST_REDIS_CLI_IMAGE:-apphost-test/redis-cli:7}"
FORCE="${1:-}"
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON_FOR_IMAGE:-$HERE/../../.venv/bin/python}"

. "$HERE/rootfs.sh"

needs_build() {
    ! docker image inspect "$1" >/dev/null 2>&1 || [ "$FORCE" = "--force" ]
}

# Copy every shared library the ELF files under $1 (in $ROOT) need.
copy_libs_of_tree() {
    find "$1" -type f -name '*.so*' | while read -r so; do
        ldd "$so" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'
    done | sort -u | while read -r lib; do
        if [ ! -e "$ROOT$lib" ]; then
            mkdir -p "$ROOT$(dirname "$lib")"
            cp -L "$lib" "$ROOT$lib"
        fi
    done
}

build_python() {
    if [ ! -x "$PY" ]; then
        echo "build_python_image.sh: $PY is missing; create the .venv first" >&2
        exit 1
    fi
    # The interpreter behind the venv, its standard library and where site-packages go.
    eval "$("$PY" - <<'EOF'
import os, sys, sysconfig
exe = os.path.realpath(os.path.join(sys.base_prefix, "bin", "python%d.%d" % sys.version_info[:2]))
stdlib = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["stdlib"]
print(f"PY_EXE='{exe}' PY_STDLIB='{stdlib}'")
import pip, redis
print(f"PIP_DIR='{os.path.dirname(pip.__file__)}' REDIS_DIR='{os.path.dirname(redis.__file__)}'")
EOF
)"
    SITE_SRC="$(dirname "$REDIS_DIR")"
    # Where the bare interpreter looks for packages (Debian's: /usr/local/lib/.../dist-packages).
    SITE="$("$PY_EXE" -I -c 'import site; print(site.getsitepackages()[0])')"
    new_rootfs
    mkdir -p "$ROOT/usr/local/bin" "$ROOT/root" "$ROOT/app" "$ROOT$SITE" "$ROOT$PY_STDLIB"
    copy_with_libs "$PY_EXE" "$PY_EXE"
    copy_with_libs /bin/dash /bin/sh
    ln -s "$PY_EXE" "$ROOT/usr/local/bin/python"
    ln -s "$PY_EXE" "$ROOT/usr/local/bin/python3"
    tar -C "$PY_STDLIB" --exclude=./site-packages --exclude=./dist-packages --exclude=./test \
        --exclude=./EXTERNALLY-MANAGED \
        --exclude=./idlelib --exclude=./tkinter --exclude=./turtledemo --exclude='__pycache__' \
        -cf - . | tar -C "$ROOT$PY_STDLIB" -xf -
    copy_libs_of_tree "$ROOT$PY_STDLIB/lib-dynload"
    # pip and redis-py with their metadata (so pip sees them installed), and redis-py's
    # dependency on older interpreters.
    for pkg in pip redis async_timeout; do
        for path in "$SITE_SRC/$pkg" "$SITE_SRC"/"$pkg"-*.dist-info \
            "$SITE_SRC"/"$(echo "$pkg" | tr _ -)"-*.dist-info; do
            if [ -e "$path" ] && [ ! -e "$ROOT$SITE/$(basename "$path")" ]; then
                cp -a "$path" "$ROOT$SITE/"
            fi
        done
    done
    find "$ROOT" -name '__pycache__' -type d -prune -exec rm -rf {} +
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
    printf 'root:x:0:\n' >"$ROOT/etc/group"
    tar -C "$ROOT" -cf "$WORK/rootfs.tar" .
    docker import \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
        --change 'ENV HOME=/root' \
        --change 'ENV PIP_NO_INDEX=1' \
        --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
        --change 'CMD ["python3"]' \
        "$WORK/rootfs.tar" "$PY_IMAGE" >/dev/null
    rm -rf "$WORK"
    echo "build_python_image.sh: built $PY_IMAGE" >&2
}

build_redis_cli() {
    if [ ! -x /usr/bin/redis-server ]; then
        apt_install redis-server
    fi
    if [ ! -x /usr/bin/redis-cli ]; then
        apt_install redis-tools
    fi
    new_rootfs
    mkdir -p "$ROOT/data"
    chmod 0777 "$ROOT/data"
    copy_with_libs /usr/bin/redis-server /usr/bin/redis-server
    copy_with_libs /usr/bin/redis-cli /usr/bin/redis-cli
    copy_with_libs /bin/dash /bin/sh
    printf 'root:x:0:0:root:/root:/bin/sh\nredis:x:999:999:redis:/data:/bin/sh\n' >"$ROOT/etc/passwd"
    printf 'root:x:0:\nredis:x:999:\n' >"$ROOT/etc/group"
    tar -C "$ROOT" -cf "$WORK/rootfs.tar" .
    docker import \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
        --change 'ENTRYPOINT ["redis-server"]' \
        --change 'CMD ["--protected-mode", "no"]' \
        --change 'EXPOSE 6379' \
        --change 'WORKDIR /data' \
        "$WORK/rootfs.tar" "$REDIS_IMAGE" >/dev/null
    rm -rf "$WORK"
    echo "build_python_image.sh: built $REDIS_IMAGE" >&2
}

if needs_build "$PY_IMAGE"; then build_python; fi
if needs_build "$REDIS_IMAGE"; then build_redis_cli; fi
