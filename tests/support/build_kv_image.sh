#!/bin/sh
# Build the local test image apphost-test/kv:1 (memcached) from Debian's memcached binary, idempotently.
#
# The tests need a small key-value TCP server that is NOT Redis, to exercise a third-party
# ("community") integration. No registry is reachable on the project's machines, so, like
# build_redis_image.sh, the image is a root file system made of the memcached binary, its shared
# libraries (from ldd), /bin/sh (dash), /tmp and an /etc/passwd, imported with `docker import`.
# It runs as the non-root user memcache (uid 11211), so memcached needs no `-u` and any
# arguments given to the container go straight to memcached (ENTRYPOINT ["memcached"]), as
# with the official image: e.g. `docker run apphost-test/kv:1 -p 11211 -m 64`.
# Usage: build_kv_image.sh [--force]   (image name: $APPHOST_KV_IMAGE, default apphost-test/kv:1)
set -eu

IMAGE="${APPHOST_KV_IMAGE:-apphost-test/kv:1}"

. "$(dirname "$0")/rootfs.sh"
image_is_built "$IMAGE" "$@"
START="$(date +%s)"

if [ ! -x /usr/bin/memcached ]; then
    apt_install memcached
fi

new_rootfs

copy_with_libs /usr/bin/memcached /usr/bin/memcached
copy_with_libs /bin/dash /bin/sh
printf 'root:x:0:0:root:/root:/bin/sh\nmemcache:x:11211:11211:memcached:/tmp:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nmemcache:x:11211:\n' >"$ROOT/etc/group"

tar -C "$ROOT" --numeric-owner -cf "$WORK/rootfs.tar" .
docker import \
    --change 'ENTRYPOINT ["memcached"]' \
    --change 'CMD ["-p", "11211", "-l", "0.0.0.0"]' \
    --change 'USER 11211:11211' \
    --change 'EXPOSE 11211' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'WORKDIR /tmp' \
    "$WORK/rootfs.tar" "$IMAGE" >/dev/null
echo "build_kv_image.sh: built $IMAGE ($(/usr/bin/memcached -V)) in $(($(date +%s) - START)) s" >&2
