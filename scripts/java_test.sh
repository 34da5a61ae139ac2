#!/usr/bin/env bash
# Builds the QuPath extension without Gradle and runs the Java tests, the way CI does:
#
#   1. scripts/build_extension_jar.sh: downloads the jars of qupath_extension/java-deps.txt from
#      Maven Central (the versions QuPath 0.7 ships, JeroMQ 0.6.0 + jnacl; cached in
#      ~/.cache/stimage/java-deps, each checked against Maven Central's checksums and the sha256
#      pinned there), compiles the client, the core, the QuPath layer and the JavaFX UI (against the
#      compile-only QuPath stand-ins of qupath_extension/src/stubs), packs the installable jar
#      build/libs/qupath-extension-stimage-<version>-all.jar and checks it (services entry,
#      manifest, no QuPath or JavaFX classes inside, loaded through ServiceLoader, CURVE works);
#   2. the dialogs' headless UI check (scripts/qupath_ui_screenshots.sh --check) under xvfb-run,
#      installing xvfb and xauth with apt-get when missing (a loud SKIPPED line when that is impossible);
#   3. the JUnit 5 tests of the client and the core (console launcher); the live ones start the real
#      Python server from .venv (run scripts/setup.sh first), with and without CURVE keys.
#
#   bash scripts/java_test.sh [extra JUnit console launcher arguments]
#
# Environment:
#   JAVA_HOME                the JDK to use (17 or newer; default: javac on PATH)
#   STIMAGE_JAVA_LIVE=0      only the offline tests (fixture round trips, key files), no server
#   STIMAGE_JAVA_NO_INSTALL=1  never run apt-get
#   STIMAGE_JAVA_REQUIRED=1  fail (instead of skipping loudly) when javac or the jars cannot be had
#                            (.ci/run sets it: CI has apt and Maven Central)
#   STIMAGE_MODEL=DIR        serve this model bundle in the live tests (default: the bundled one)
#   STIMAGE_JAVA_DEPS_CACHE  the jar download cache (default ~/.cache/stimage/java-deps)
#   STIMAGE_JAVA_UI=0        skip the dialogs' headless UI check
# Exits non-zero when a build step, a check or a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_apt.sh
source scripts/_apt.sh
REPO=$PWD

skip() {
    if [[ "${STIMAGE_JAVA_REQUIRED:-0}" == 1 ]]; then
        echo "java_test.sh: FAILED: $* (STIMAGE_JAVA_REQUIRED=1)" >&2
        exit 1
    fi
    echo "=====================================================================" >&2
    echo "SKIPPED: Java build and tests: $*" >&2
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
if ! command -v "$JAVAC" >/dev/null 2>&1; then
    apt_install java_test.sh default-jdk-headless || skip "no javac ($JAVAC), and it could not be installed"
fi
command -v "$JAVAC" >/dev/null 2>&1 || skip "no javac ($JAVAC)"
major=$("$JAVAC" -version 2>&1 | sed -E 's/^javac ([0-9]+).*/\1/')
[[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] || skip "javac $major is older than 17"
command -v curl >/dev/null 2>&1 || apt_install java_test.sh curl ca-certificates || true

# 1. the installable jar, and its check
# shellcheck source=scripts/_java_deps.sh
source scripts/_java_deps.sh
LIB="$REPO/build/java-deps/lib"
java_deps_fetch "$LIB" || skip "the jars of qupath_extension/java-deps.txt could not be had from Maven Central (above)"
# a fresh folder per run: other runs may share this checkout
mkdir -p "$REPO/build"
BUILD=$(mktemp -d "$REPO/build/java-test.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
bash scripts/build_extension_jar.sh --keep "$BUILD/classes"

# 2. the dialogs' headless UI check (checks only, no screenshots; about 20 s): needs xvfb-run
if [[ "${STIMAGE_JAVA_UI:-1}" == 0 ]]; then
    echo "java_test.sh: dialogs' UI check off (STIMAGE_JAVA_UI=0)" >&2
else
    command -v xvfb-run >/dev/null 2>&1 || apt_install java_test.sh xvfb xauth || true
    if command -v xvfb-run >/dev/null 2>&1; then
        STIMAGE_JAVA_JARS="$LIB" STIMAGE_JAVA_NO_INSTALL=1 bash scripts/qupath_ui_screenshots.sh --check >&2 \
            || { echo "java_test.sh: the dialogs' UI check failed (scripts/qupath_ui_screenshots.sh --check)" >&2; exit 1; }
    else
        echo "=====================================================================" >&2
        echo "SKIPPED: the dialogs' headless UI check (scripts/qupath_ui_screenshots.sh --check):" >&2
        echo "no xvfb-run, and apt-get could not install xvfb xauth (above)" >&2
        echo "=====================================================================" >&2
    fi
fi

# 3. the tests of the client and the core
CP="$LIB/jeromq.jar:$LIB/jnacl.jar:$LIB/gson.jar:$LIB/slf4j-api.jar"
LAUNCHER="$LIB/junit-platform-console-standalone.jar"
SRC=qupath_extension/src
CLASSES="$BUILD/classes/client"
mkdir -p "$BUILD/test"
"$JAVAC" --release 17 -encoding UTF-8 -cp "$CP:$CLASSES:$LAUNCHER" -d "$BUILD/test" \
    $(find "$SRC/test/java/qupath/ext/stimage/client" "$SRC/test/java/qupath/ext/stimage/core" -name '*.java' | sort)

live=true
[[ "${STIMAGE_JAVA_LIVE:-1}" == 0 ]] && live=false
"$JAVA" -Dstimage.repo="$REPO" -Dstimage.live="$live" -Dstimage.model="${STIMAGE_MODEL:-}" \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
    -jar "$LAUNCHER" -cp "$CP:$LIB/slf4j-simple.jar:$CLASSES:$BUILD/test" \
    --select-package qupath.ext.stimage.client --select-package qupath.ext.stimage.core \
    --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests "$@"
