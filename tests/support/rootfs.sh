# Shared by the build_*_image.sh scripts (sourced, POSIX sh): images made offline as a root file
# system of Debian binaries and their libraries, imported with `docker import`.
#
#   image_is_built IMAGE "$@"   exit 0 from the script when IMAGE exists (unless --force)
#   apt_install PACKAGE...      install Debian packages (apt-get update first), as root or sudo
#   new_rootfs                  a temp folder: $WORK, and $ROOT with /bin /usr/bin /etc and /tmp
#   copy_with_libs SRC DEST     copy a binary into $ROOT at DEST with every library ldd lists

image_is_built() {
    if docker image inspect "$1" >/dev/null 2>&1 && [ "${2:-}" != "--force" ]; then
        exit 0
    fi
}

apt_install() {
    _sudo=""
    if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then _sudo="sudo -n"; fi
    echo "$(basename "$0"): installing Debian's $*" >&2
    $_sudo apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -qq "$@" >/dev/null
}

new_rootfs() {
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    ROOT="$WORK/rootfs"
    mkdir -p "$ROOT/bin" "$ROOT/usr/bin" "$ROOT/tmp" "$ROOT/etc"
    chmod 1777 "$ROOT/tmp"
}

copy_with_libs() {
    mkdir -p "$ROOT$(dirname "$2")"
    cp -L "$1" "$ROOT$2"
    ldd "$1" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' |
        while read -r lib; do
            mkdir -p "$ROOT$(dirname "$lib")"
            cp -L "$lib" "$ROOT$lib"
        done
}
