#!/bin/sh
# Build the local test image apphost-test/redis-commander:1 (the real Redis Commander), idempotently.
#
# No image registry is reachable on the project's machines, but the npm registry is, so the image
# is the npm package redis-commander (installed with the machine's npm, production dependencies
# only) laid out as in the official image (/redis-commander, HOME=/redis-commander,
# NODE_ENV=production, user 10000, port 8081), plus:
#   - the machine's /usr/bin/node and the shared libraries ldd lists for it (Debian's nodejs,
#     or the Node.js build the machine ships: whichever /usr/bin/node is);
#   - Debian's static busybox (busybox-static) as /bin/sh and the few tools the package's own
#     docker/entrypoint.sh uses (sed, cut, wc, tr, cat, printenv, env, setsid, sleep);
#   - a `jq` stand-in written in node, for the entrypoint's `jq empty FILE` syntax check;
#   - tini-static (package tini, which docker.io pulls in) as PID 1, in place of the official
#     image's dumb-init, so that `docker stop` ends node at once.
# The entrypoint is the package's unchanged docker/entrypoint.sh, so the image honours the
# environment variables the official image documents: REDIS_HOSTS
# (label:host:port:dbIndex:password, comma separated), REDIS_HOST, REDIS_PORT, REDIS_PASSWORD,
# REDIS_USERNAME, REDIS_DB, HTTP_USER, HTTP_PASSWORD, PORT, ... Arguments given to the
# container are passed on to redis-commander (e.g. `--redis-host cache`).
# Usage: build_redis_commander_image.sh [--force]
#        (image name: $APPHOST_REDIS_COMMANDER_IMAGE, default apphost-test/redis-commander:1;
#         npm version: $APPHOST_REDIS_COMMANDER_VERSION, default 0.9.0, which runs on node 18/20)
set -eu

IMAGE="${APPHOST_REDIS_COMMANDER_IMAGE:-apphost-test/redis-commander:1}"
VERSION="${APPHOST_REDIS_COMMANDER_VERSION:-0.9.0}"

. "$(dirname "$0")/rootfs.sh"
image_is_built "$IMAGE" "$@"
START="$(date +%s)"

# What must be installed: Debian's names for node/npm, the static busybox and tini-static.
missing=""
[ -x /usr/bin/node ] || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
# The non-static busybox package has the same path: the static one is the one ldd rejects.
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then missing="$missing busybox-static"; fi
[ -x /usr/bin/tini-static ] || missing="$missing tini"
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    apt_install $missing
fi

new_rootfs
APP="$ROOT/redis-commander"
mkdir -p "$WORK/npm"

# The package and its production dependencies (the npm cache makes a rebuild quick).
(
    cd "$WORK/npm"
    npm install --omit=dev --no-audit --no-fund --no-package-lock --ignore-scripts \
        --prefer-offline --loglevel=error "redis-commander@$VERSION" >"$WORK/npm.log" 2>&1
) || {
    cat "$WORK/npm.log" >&2
    echo "build_redis_commander_image.sh: npm install redis-commander@$VERSION failed" >&2
    exit 1
}
mv "$WORK/npm/node_modules/redis-commander" "$APP"
if [ -e "$APP/node_modules" ]; then
    # Versions npm nested under the package win over the hoisted ones, as in node's lookup.
    cp -a "$APP/node_modules/." "$WORK/npm/node_modules/"
    rm -rf "$APP/node_modules"
fi
mv "$WORK/npm/node_modules" "$APP/node_modules"
rm -rf "$APP/test" "$APP/k8s" "$APP/sbom.json"
# The entrypoint runs ./bin/redis-commander, which the npm package ships as redis-commander.js.
[ -e "$APP/bin/redis-commander" ] || ln -s redis-commander.js "$APP/bin/redis-commander"
# The entrypoint writes config/local-production.json (from REDIS_HOSTS) as user 10000.
chmod 0777 "$APP/config"

copy_with_libs /usr/bin/node /usr/bin/node

cp -L /bin/busybox "$ROOT/bin/busybox"
for applet in sh cat cut wc tr sed printenv env setsid sleep ls mkdir rm echo printf grep; do
    ln -s busybox "$ROOT/bin/$applet"
done
ln -s ../../bin/busybox "$ROOT/usr/bin/env"
cp -L /usr/bin/tini-static "$ROOT/usr/bin/tini"

cat >"$ROOT/usr/bin/jq" <<'EOF'
#!/usr/bin/node
// Stand-in for the only jq call redis-commander's docker/entrypoint.sh makes: `jq empty FILE...`
// (exit 0 when every FILE holds valid JSON, else print the error and exit 1).
'use strict';
const fs = require('fs');
const [filter, ...files] = process.argv.slice(2);
if (filter !== 'empty' || files.length === 0) {
    console.error('jq (stand-in): only `jq empty FILE...` is supported');
    process.exit(2);
}
for (const file of files) {
    try {
        JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
        console.error(`jq (stand-in): ${file}: ${err.message}`);
        process.exit(1);
    }
}
EOF
chmod 0755 "$ROOT/usr/bin/jq"

printf 'root:x:0:0:root:/root:/bin/sh\nredis:x:10000:0:redis:/redis-commander:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"
printf 'hosts: files dns\n' >"$ROOT/etc/nsswitch.conf"

tar -C "$ROOT" --numeric-owner -cf "$WORK/rootfs.tar" .
docker import \
    --change 'ENTRYPOINT ["/usr/bin/tini", "--", "/bin/sh", "/redis-commander/docker/entrypoint.sh"]' \
    --change 'CMD []' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV HOME=/redis-commander' \
    --change 'ENV NODE_ENV=production' \
    --change 'ENV SERVICE_USER=redis' \
    --change 'USER 10000' \
    --change 'WORKDIR /redis-commander' \
    --change 'EXPOSE 8081' \
    "$WORK/rootfs.tar" "$IMAGE" >/dev/null
SIZE="$(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%d MB", $1 / 1000000 }')"
echo "build_redis_commander_image.sh: built $IMAGE (redis-commander $VERSION, node $(/usr/bin/node --version), $SIZE) in $(($(date +%s) - START)) s" >&2
