#!/usr/bin/env bash
# Build and run the tests of the pure-Java client (qupath.ext.stimage.client) and of the extension's
# pure-Java core (qupath.ext.stimage.core) with javac and the JUnit 5 console launcher on Debian's
# jars (libjeromq-java, libgoogle-gson-java, libslf4j-java, junit5), installing them with apt-get
# when missing. No Gradle, no network beyond apt.
# The live tests start the real Python server from .venv (run scripts/setup.sh first).
# It also compiles the QuPath layer (qupath.ext.stimage.qp, STImage, the extension and its JavaFX
# UI) against the compile-only stand-ins of qupath_extension/src/stubs (a build aid, not a test of
# QuPath: see that folder's README) and Debian's OpenJFX (libopenjfx-java); without OpenJFX the
# JavaFX part is skipped loudly. scripts/qupath_core_check.sh checks the layer against real QuPath.
# With xvfb-run it also opens the extension's dialogs headless and checks them
# (scripts/qupath_ui_screenshots.sh --check; skipped loudly without xvfb-run).
#
#   bash scripts/java_test.sh [extra JUnit console launcher arguments]
#
# Environment:
#   JAVA_HOME                the JDK to use (17 or newer; default: javac on PATH)
#   STIMAGE_JAVA_LIVE=0      only the offline tests (fixture round trips), no server
#   STIMAGE_JAVA_NO_INSTALL=1  never run apt-get
#   STIMAGE_MODEL=DIR        serve this model bundle in the live tests (default: the bundled one)
#   STIMAGE_JAVA_JARS=DIR    where the jars are (default /usr/share/java; OpenJFX: javafx-*.jar there)
#   STIMAGE_JAVA_UI=0        skip the dialogs' headless UI check (run when xvfb-run is there)
# Exits 0 with a loud SKIPPED line when javac or the jars cannot be had, so that the Python
# suite still runs; non-zero when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_apt.sh
source scripts/_apt.sh
REPO=$PWD
JARS="${STIMAGE_JAVA_JARS:-/usr/share/java}"
NEED=(jeromq.jar gson.jar slf4j-api.jar junit-platform-console-standalone.jar)

skip() {
    echo "=====================================================================" >&2
    echo "SKIPPED: Java client tests: $*" >&2
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

missing_jars() {
    local j
    for j in "${NEED[@]}"; do
        [[ -f "$JARS/$j" ]] || return 0
    done
    return 1
}

pkgs=()
command -v "$JAVAC" >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
missing_jars && pkgs+=(libjeromq-java libgoogle-gson-java libslf4j-java junit5)
if ((${#pkgs[@]})); then
    apt_install java_test.sh "${pkgs[@]}" || skip "could not install ${pkgs[*]}"
fi
command -v "$JAVAC" >/dev/null 2>&1 || skip "no javac ($JAVAC)"
missing_jars && skip "jars missing under $JARS: need ${NEED[*]}"
major=$("$JAVAC" -version 2>&1 | sed -E 's/^javac ([0-9]+).*/\1/')
[[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] || skip "javac $major is older than 17"

CP="$JARS/jeromq.jar:$JARS/gson.jar:$JARS/slf4j-api.jar"
RUN_CP="$CP"
[[ -f "$JARS/slf4j-simple.jar" ]] && RUN_CP="$RUN_CP:$JARS/slf4j-simple.jar"
LAUNCHER="$JARS/junit-platform-console-standalone.jar"
SRC=qupath_extension/src
MAIN="$SRC/main/java/qupath/ext/stimage"
BUILD="$REPO/build/java-client-test"
rm -rf "$BUILD"
mkdir -p "$BUILD/main" "$BUILD/test" "$BUILD/stubs" "$BUILD/layer"

echo "java_test.sh: $("$JAVAC" -version 2>&1), --release 17" >&2
# the client and the extension's pure-Java core (no QuPath, no JavaFX)
"$JAVAC" --release 17 -encoding UTF-8 -Xlint:all -Werror -cp "$CP" -d "$BUILD/main" \
    $(find "$MAIN/client" "$MAIN/core" -name '*.java' | sort)
"$JAVAC" --release 17 -encoding UTF-8 -cp "$CP:$BUILD/main:$LAUNCHER" -d "$BUILD/test" \
    $(find "$SRC/test/java/qupath/ext/stimage/client" "$SRC/test/java/qupath/ext/stimage/core" -name '*.java' | sort)

# the QuPath layer against the compile-only stand-ins (never packaged, never run)
FX_JARS=(javafx-base.jar javafx-controls.jar javafx-graphics.jar)
missing_fx() {
    local j
    for j in "${FX_JARS[@]}"; do
        [[ -f "$JARS/$j" ]] || return 0
    done
    return 1
}
if missing_fx; then
    apt_install java_test.sh libopenjfx-java || true
fi
core_stubs=$(find "$SRC/stubs/java" -name '*.java' -not -path '*/qupath/lib/gui/*' | sort)
"$JAVAC" --release 17 -encoding UTF-8 -Xlint:all -Werror -cp "$CP" -d "$BUILD/stubs" $core_stubs
"$JAVAC" --release 17 -encoding UTF-8 -Xlint:all -Werror -cp "$CP:$BUILD/stubs:$BUILD/main" -d "$BUILD/layer" \
    $(find "$MAIN/qp" -name '*.java' | sort) "$MAIN/STImage.java"
if missing_fx; then
    echo "=====================================================================" >&2
    echo "SKIPPED: compiling the JavaFX part of the QuPath layer (qupath.ext.stimage.ui," >&2
    echo "StimageExtension): no OpenJFX jars (${FX_JARS[*]}) under $JARS; apt-get install libopenjfx-java" >&2
    echo "=====================================================================" >&2
else
    FX_CP=$(printf "$JARS/%s:" "${FX_JARS[@]}")
    "$JAVAC" --release 17 -encoding UTF-8 -Xlint:all -Werror -cp "$CP:$FX_CP$BUILD/stubs" -d "$BUILD/stubs" \
        $(find "$SRC/stubs/java/qupath/lib/gui" -name '*.java' | sort)
    "$JAVAC" --release 17 -encoding UTF-8 -Xlint:all -Werror -cp "$CP:$FX_CP$BUILD/stubs:$BUILD/main:$BUILD/layer" \
        -d "$BUILD/layer" $(find "$MAIN/ui" -name '*.java' | sort) "$MAIN/StimageExtension.java"
    echo "java_test.sh: the QuPath layer compiles against the stand-ins and OpenJFX" >&2
    # the dialogs' headless UI check (checks only, no screenshots; about 20 s): needs xvfb-run
    if [[ "${STIMAGE_JAVA_UI:-1}" == 0 ]]; then
        echo "java_test.sh: dialogs' UI check off (STIMAGE_JAVA_UI=0)" >&2
    elif command -v xvfb-run >/dev/null 2>&1; then
        STIMAGE_JAVA_NO_INSTALL=1 bash scripts/qupath_ui_screenshots.sh --check >&2 \
            || { echo "java_test.sh: the dialogs' UI check failed (scripts/qupath_ui_screenshots.sh --check)" >&2; exit 1; }
    else
        echo "=====================================================================" >&2
        echo "SKIPPED: the dialogs' headless UI check (scripts/qupath_ui_screenshots.sh --check):" >&2
        echo "no xvfb-run; apt-get install xvfb" >&2
        echo "=====================================================================" >&2
    fi
fi

live=true
[[ "${STIMAGE_JAVA_LIVE:-1}" == 0 ]] && live=false
exec "$JAVA" -Dstimage.repo="$REPO" -Dstimage.live="$live" -Dstimage.model="${STIMAGE_MODEL:-}" \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
    -jar "$LAUNCHER" -cp "$RUN_CP:$BUILD/main:$BUILD/test" \
    --select-package qupath.ext.stimage.client --select-package qupath.ext.stimage.core \
    --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests "$@"
