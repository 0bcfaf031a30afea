#!/bin/sh
# Build the local test image apphost-test/redis:7 from Debian's redis-server binary, idempotently.
#
# No registry is reachable on the project's machines, so the image is a root file system made
# of the redis-server binary, its shared libraries (from ldd), /bin/sh (dash) for the shell-form
# command, /data, /tmp and an /etc/passwd, imported with `docker import`. Like the official
# image's entrypoint it runs with --protected-mode no (connections come through a published port).
set -eu

IMAGE="${APPHOST_TEST_IMAGE:-apphost-test/redis:7}"

. "$(dirname "$0")/rootfs.sh"
image_is_built "$IMAGE" "$@"


if [ ! -x /usr/bin/redis-server ]; then
    apt_install redis-server
fi

new_rootfs
mkdir -p "$ROOT/data"
chmod 0777 "$ROOT/data"

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
