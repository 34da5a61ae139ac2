# Sourced by scripts/java_test.sh and scripts/qupath_ui_screenshots.sh (not run on its own).
#
#   apt_install TAG PACKAGE...
#
# Installs Debian packages with apt-get (through `sudo -n` when not root), retrying once after
# `apt-get update`. Prints why it did not and returns non-zero when it cannot: with
# STIMAGE_JAVA_NO_INSTALL=1, without apt-get, or as a non-root user without sudo. TAG prefixes
# its messages (the calling script's name). Callers decide whether that is a skip.
apt_install() {
    local tag=$1
    shift
    if [[ "${STIMAGE_JAVA_NO_INSTALL:-0}" == 1 ]]; then
        echo "$tag: missing $*, and STIMAGE_JAVA_NO_INSTALL=1" >&2
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$tag: missing $*, and no apt-get to install them" >&2
        return 1
    fi
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "$tag: missing $*; not root and no sudo" >&2
            return 1
        fi
        sudo=(sudo -n)
    fi
    echo "$tag: installing $*" >&2
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@" >&2; then
        "${sudo[@]}" apt-get update -q >&2 || true
        if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@" >&2; then
            echo "$tag: apt-get could not install $*" >&2
            return 1
        fi
    fi
    hash -r
}
