#!/bin/sh
# Build the local test image apphost-test/redis:7 from Debian's redis-server binary, idempotently.
#
# No registry is reachable on the project's machines, so the image is a root file system made
# of the redis-server binary, its shared libraries (from ldd), /bin/sh (dash) for the shell-form
# command, /data, /tmp and an /etc/passwd, imported with `docker import`. Like the official
# image's entrypoint it runs with --protected-mode no (connections come through a published port).
set -eu

IMAGE="${APPHOST_TEST_IMAGE:-apphost-test/redis:7}"

if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ "${1:-}" != "--force" ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi

if [ ! -x /usr/bin/redis-server ]; then
    echo "build_redis_image.sh: installing Debian's redis-server" >&2
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"
mkdir -p "$ROOT/usr/bin" "$ROOT/bin" "$ROOT/data" "$ROOT/tmp" "$ROOT/etc"
chmod 1777 "$ROOT/tmp"
chmod 0777 "$ROOT/data"

# Copy a binary and every shared library ldd lists, keeping their paths.
copy_with_libs() {
    cp -L "$1" "$ROOT$2"
    ldd "$1" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | while read -r lib; do
        mkdir -p "$ROOT$(dirname "$lib")"
        cp -L "$lib" "$ROOT$lib"
    done
}

copy_with_libs /usr/bin/redis-server /usr/bin/redis-server
copy_with_libs /bin/dash /bin/sh
printf 'root:x:0:0:root:/root:/bin/sh\nredis:x:999:999:redis:/data:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nredis:x:999:\n' >"$ROOT/etc/group"

tar -C "$ROOT" -cf "$WORK/rootfs.tar" .
docker import \
    --change 'ENTRYPOINT ["redis-server"]' \
    --change 'CMD ["--protected-mode", "no"]' \
    --change 'EXPOSE 6379' \
    --change 'WORKDIR /data' \
    "$WORK/rootfs.tar" "$IMAGE" >/dev/null
echo "build_redis_image.sh: built $IMAGE" >&2
