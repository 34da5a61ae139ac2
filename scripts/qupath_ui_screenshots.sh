#!/usr/bin/env bash
# Opens each of the STImage QuPath extension's JavaFX dialogs outside QuPath (OpenJFX under a
# virtual X display, xvfb-run), checks them as a user would, and writes a PNG of each window into
# docs/images/qupath/. The harness is qupath_extension/src/uicheck (never packaged; read its README).
#
#   bash scripts/qupath_ui_screenshots.sh            # checks + screenshots (live backend when .venv has one)
#   bash scripts/qupath_ui_screenshots.sh --check    # checks only, hello from the protocol fixture (fast)
#
# The dialogs are filled from a live backend's hello: the script's harness starts
# `.venv/bin/stimage serve` on a free port (about 15 s on a CPU) and stops it at the end; without
# the venv, or with STIMAGE_UI_LIVE=0, the hello comes from tests/fixtures/protocol.
# Needs javac 17+, the jars of qupath_extension/java-deps.txt (JeroMQ 0.6 + jnacl, Gson, SLF4J,
# OpenJFX; downloaded from Maven Central into a checked cache by scripts/_java_deps.sh, as
# scripts/java_test.sh does) and xvfb-run (xvfb); installs xvfb with apt-get unless
# STIMAGE_JAVA_NO_INSTALL=1. Exits 0 with a loud SKIPPED line when they cannot be had; non-zero
# when a check fails.
#
# Environment:
#   JAVA_HOME                the JDK to use (default: javac on PATH)
#   STIMAGE_JAVA_JARS=DIR    where the jars are, by artifact name (default: build/java-deps/lib,
#                            filled from Maven Central)
#   STIMAGE_UI_LIVE=0        hello from the fixture even when .venv has stimage
#   STIMAGE_UI_OUT=DIR       where the PNGs go (default docs/images/qupath)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_apt.sh
source scripts/_apt.sh
REPO=$PWD
if [[ -z "${STIMAGE_JAVA_JARS:-}" ]]; then
    # shellcheck source=scripts/_java_deps.sh
    source scripts/_java_deps.sh
    java_deps_fetch "$REPO/build/java-deps/lib" || true  # a missing jar is reported below
fi
JARS="${STIMAGE_JAVA_JARS:-$REPO/build/java-deps/lib}"
MODE=shots
[[ "${1:-}" == "--check" ]] && MODE=check

skip() {
    echo "=====================================================================" >&2
    echo "SKIPPED: QuPath extension UI check: $*" >&2
    echo "=====================================================================" >&2
    exit 0
}

if [[ -n "${JAVA_HOME:-}" ]]; then
    JAVAC="$JAVA_HOME/bin/javac"
    JAVA="$JAVA_HOME/bin/java"
else
    JAVAC=javac
    JAVA=java
fi
NEED=(jeromq.jar gson.jar slf4j-api.jar javafx-base.jar javafx-controls.jar javafx-graphics.jar)
missing_jars() {
    local j
    for j in "${NEED[@]}"; do
        [[ -f "$JARS/$j" ]] || return 0
    done
    return 1
}
pkgs=()
command -v "$JAVAC" >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
command -v xvfb-run >/dev/null 2>&1 || pkgs+=(xvfb xauth)
if ((${#pkgs[@]})); then
    apt_install qupath_ui_screenshots.sh "${pkgs[@]}" || skip "could not install ${pkgs[*]}"
fi
command -v "$JAVAC" >/dev/null 2>&1 || skip "no javac ($JAVAC)"
missing_jars && skip "jars missing under $JARS: need ${NEED[*]} (downloaded from Maven Central by scripts/_java_deps.sh: see above)"
command -v xvfb-run >/dev/null 2>&1 || skip "no xvfb-run (apt-get install xvfb)"
major=$("$JAVAC" -version 2>&1 | sed -E 's/^javac ([0-9]+).*/\1/')
[[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] || skip "javac $major is older than 17"

SRC=qupath_extension/src
BUILD="$REPO/build/qupath-ui-check"
rm -rf "$BUILD"
mkdir -p "$BUILD/classes"
CP=$(printf "$JARS/%s:" "${NEED[@]}")
CP=${CP%:}
# the Maven Central set of scripts/java_test.sh (STIMAGE_JAVA_JARS=build/java-deps/lib) adds Gson's
# annotations (needed by -Werror) and JeroMQ's jnacl (CURVE)
for j in error_prone_annotations.jar jnacl.jar; do
    [[ -f "$JARS/$j" ]] && CP="$CP:$JARS/$j"
done
RUN_CP="$CP"
[[ -f "$JARS/slf4j-simple.jar" ]] && RUN_CP="$RUN_CP:$JARS/slf4j-simple.jar"
# the extension's sources, the compile-only QuPath stand-ins except PathPrefs (the harness brings an
# in-memory one: the stand-in throws), and the harness
"$JAVAC" --release 17 -encoding UTF-8 -Xlint:all,-options -Werror -cp "$CP" -d "$BUILD/classes" \
    $(find "$SRC/main/java" "$SRC/uicheck/java" -name '*.java' | sort) \
    $(find "$SRC/stubs/java" -name '*.java' -not -path '*/qupath/lib/gui/prefs/PathPrefs.java' | sort)

args=(--repo "$REPO")
if [[ "$MODE" == shots ]]; then
    OUT="${STIMAGE_UI_OUT:-$REPO/docs/images/qupath}"
    args+=(--out "$OUT")
    if [[ "${STIMAGE_UI_LIVE:-1}" != 0 && -x "$REPO/.venv/bin/stimage" ]]; then
        args+=(--live)
    else
        echo "qupath_ui_screenshots.sh: hello from the protocol fixture (no .venv/bin/stimage or STIMAGE_UI_LIVE=0)" >&2
    fi
fi
# GTK quietly, software rendering (no GPU under Xvfb), 1:1 pixels
exec xvfb-run -a -s "-screen 0 1600x1200x24" "$JAVA" -Dprism.order=sw -Dglass.gtk.uiScale=1 \
    -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$RUN_CP:$BUILD/classes" qupath.ext.stimage.ui.UiCheck "${args[@]}"
