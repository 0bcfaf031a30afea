#!/bin/sh
# Build the local test image apphost-test/recorder:1, a stand-in for Redis Insight, idempotently.
#
# Redis Insight cannot be built offline, so the tests use an image that listens on Redis
# Insight's port (5540) and shows what the container was given. At start it writes
#   /env.txt    the container's environment, `env` output (NAME=value, one per line)
#   /env0.txt   the same, NUL-separated (`env -0`: safe for values containing newlines)
#   /args.txt   the arguments given to the container (after the image's entrypoint), one per line
#   /index.html a small page
# into /www and serves that folder with busybox httpd: `curl http://127.0.0.1:<port>/env.txt`.
# The root file system is Debian's static busybox (busybox-static) as /bin/busybox and /bin/sh,
# and tini-static (package tini, which docker.io pulls in) as PID 1, so that `docker stop`
# ends httpd at once instead of after the grace period. Imported with `docker import`.
# Usage: build_recorder_image.sh [--force]
#        (image name: $APPHOST_RECORDER_IMAGE, default apphost-test/recorder:1)
set -eu

IMAGE="${APPHOST_RECORDER_IMAGE:-apphost-test/recorder:1}"

. "$(dirname "$0")/rootfs.sh"
image_is_built "$IMAGE" "$@"
START="$(date +%s)"

# busybox-static's binary is /bin/busybox (the non-static busybox package has the same path, so
# check that it is the static one: `file` may be missing, so ask ldd).
busybox_is_static() {
    [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1
}
if ! busybox_is_static || [ ! -x /usr/bin/tini-static ]; then
    apt_install busybox-static tini
fi

new_rootfs
mkdir -p "$ROOT/www"
chmod 0777 "$ROOT/www"

cp -L /bin/busybox "$ROOT/bin/busybox"
for applet in sh env cat ls mkdir printf echo sleep; do
    ln -s busybox "$ROOT/bin/$applet"
done
cp -L /usr/bin/tini-static "$ROOT/usr/bin/tini"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"

cat >"$ROOT/entrypoint.sh" <<'EOF'
#!/bin/sh
# Record what the container was given, then serve /www on port 5540 (Redis Insight's port).
set -eu
mkdir -p /www
env >/www/env.txt
env -0 >/www/env0.txt
: >/www/args.txt
for arg in "$@"; do printf '%s\n' "$arg" >>/www/args.txt; done
printf '<!doctype html><title>apphost-test recorder</title><p>recorder: see <a href="env.txt">env.txt</a></p>\n' >/www/index.html
echo "recorder: listening on port 5540, serving /www (env.txt, env0.txt, args.txt)"
exec /bin/busybox httpd -f -p 5540 -h /www
EOF
chmod 0755 "$ROOT/entrypoint.sh"

tar -C "$ROOT" --numeric-owner -cf "$WORK/rootfs.tar" .
docker import \
    --change 'ENTRYPOINT ["/usr/bin/tini", "--", "/entrypoint.sh"]' \
    --change 'CMD []' \
    --change 'EXPOSE 5540' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'WORKDIR /www' \
    "$WORK/rootfs.tar" "$IMAGE" >/dev/null
echo "build_recorder_image.sh: built $IMAGE in $(($(date +%s) - START)) s" >&2
