#!/usr/bin/env bash
# Builds the installable QuPath extension jar without Gradle: javac + jar against the Maven Central
# jars of qupath_extension/java-deps.txt (downloaded into a cache and checked against their
# checksums by scripts/_java_deps.sh), then checks the jar (qupath_extension/src/jarcheck). The same jar as `./gradlew shadowJar`:
#
#   build/libs/qupath-extension-stimage-<version>-all.jar
#
#   * the extension's classes and resources, with META-INF/services/qupath.lib.gui.extensions.QuPathExtension;
#   * JeroMQ and jnacl unpacked into it (as Gradle Shadow does), the only libraries QuPath lacks;
#   * never the compile-only QuPath stand-ins (qupath_extension/src/stubs), Gson, JTS, SLF4J or JavaFX;
#   * a manifest as QuPath's gradle conventions write it (Implementation-Title/-Version,
#     Automatic-Module-Name, QuPath-Version), the values read from build.gradle and settings.gradle.
#
# It compiles in stages so that the layering is checked too: the client and core against JeroMQ,
# Gson and SLF4J only (no QuPath, no JavaFX); the QuPath layer (qp, STImage) against the stand-ins
# without JavaFX; the UI and the extension class with JavaFX.
#
#   bash scripts/build_extension_jar.sh             # build + check
#   bash scripts/build_extension_jar.sh --no-check  # build only
#   bash scripts/build_extension_jar.sh --keep DIR  # keep the compiled classes in DIR (java_test.sh
#                                                   # compiles the tests against DIR/client)
# Intermediate files go to a fresh folder under build/ (several engineers may build in one checkout
# at once); the jar replaces build/libs/... in one move.
#
# Environment:
#   JAVA_HOME                the JDK (17 or newer; default: javac on PATH); class files are --release 17
#   STIMAGE_VERSION          the version to build (default: build.gradle's; a release passes the tag's)
#   STIMAGE_JAVA_DEPS_CACHE  the download cache (default ~/.cache/stimage/java-deps)
#   STIMAGE_MAVEN            Maven Central or a mirror (default https://repo1.maven.org/maven2)
# Exits non-zero, saying why, when a jar cannot be downloaded or checked, or when compiling or the
# jar's check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_java_deps.sh
source scripts/_java_deps.sh
REPO=$PWD
CHECK=1
KEEP=
while (($#)); do
    case "$1" in
        --no-check) CHECK=0 ;;
        --keep) KEEP=$2; shift ;;
        *) echo "build_extension_jar.sh: unknown argument $1 (--no-check, --keep DIR)" >&2; exit 2 ;;
    esac
    shift
done

if [[ -n "${JAVA_HOME:-}" ]]; then
    JAVAC="$JAVA_HOME/bin/javac"
    JAR="$JAVA_HOME/bin/jar"
else
    JAVAC=javac
    JAR=jar
fi
command -v "$JAVAC" >/dev/null 2>&1 || { echo "build_extension_jar.sh: no javac ($JAVAC); install a JDK 17+" >&2; exit 1; }

LIB="$REPO/build/java-deps/lib"
java_deps_fetch "$LIB" || { echo "build_extension_jar.sh: the Java dependencies could not be had (above)" >&2; exit 1; }

# name, version, module name from build.gradle; the QuPath version from settings.gradle
gradle_value() { # FILE PATTERN: the first '...' string on the first line matching PATTERN
    grep -m1 -E "$2" "$1" | sed -E "s/.*'([^']+)'[^']*$/\1/"
}
NAME=$(grep -m1 -E "name\.set\('" build.gradle | sed -E "s/.*name\.set\('([^']+)'\).*/\1/")
VERSION="${STIMAGE_VERSION:-$(gradle_value build.gradle "findProperty\('stimage.version'\)")}"
MODULE=$(grep -m1 -E "automaticModule\.set\('" build.gradle | sed -E "s/.*automaticModule\.set\('([^']+)'\).*/\1/")
QUPATH=$(gradle_value settings.gradle "qupath\.version'\)\.getOrElse\(")
for v in NAME VERSION MODULE QUPATH; do
    [[ -n "${!v}" && "${!v}" != *" "* ]] || { echo "build_extension_jar.sh: could not read $v from build.gradle/settings.gradle" >&2; exit 1; }
done

jars() { # ROLE...: the LIB paths of those roles' jars, ':'-joined
    local roles=" $* " out="" role coords rest a
    while read -r role coords rest; do
        [[ "$roles" == *" $role "* ]] || continue
        IFS=: read -r _ a _ <<<"$coords"
        out+="$LIB/$a.jar:"
    done < <(java_deps_list)
    echo "${out%:}"
}
CP=$(jars bundle provided)
FX_CP=$(jars fx)

SRC=qupath_extension/src
MAIN="$SRC/main/java/qupath/ext/stimage"
mkdir -p "$REPO/build/libs"
if [[ -n "$KEEP" ]]; then
    OUT=$KEEP
    rm -rf "$OUT"
    mkdir -p "$OUT"
else
    OUT=$(mktemp -d "$REPO/build/extension-jar.XXXXXX")
    trap 'rm -rf "$OUT"' EXIT
fi
mkdir -p "$OUT/client" "$OUT/stubs" "$OUT/layer" "$OUT/jar"
JAVAC_OPTS=(--release 17 -encoding UTF-8 -Xlint:all -Werror)

echo "build_extension_jar.sh: $("$JAVAC" -version 2>&1), --release 17; $NAME $VERSION for QuPath $QUPATH" >&2
# 1. the client and the pure-Java core: JeroMQ, Gson, SLF4J only
"$JAVAC" "${JAVAC_OPTS[@]}" -cp "$CP" -d "$OUT/client" $(find "$MAIN/client" "$MAIN/core" -name '*.java' | sort)
# 2. the compile-only QuPath stand-ins (never packaged): core ones without JavaFX, then the GUI ones
"$JAVAC" "${JAVAC_OPTS[@]}" -cp "$CP" -d "$OUT/stubs" \
    $(find "$SRC/stubs/java" -name '*.java' -not -path '*/qupath/lib/gui/*' | sort)
"$JAVAC" "${JAVAC_OPTS[@]}" -cp "$CP:$FX_CP:$OUT/stubs" -d "$OUT/stubs" \
    $(find "$SRC/stubs/java/qupath/lib/gui" -name '*.java' | sort)
# 3. the QuPath layer without JavaFX, then the UI and the extension class with it
"$JAVAC" "${JAVAC_OPTS[@]}" -cp "$CP:$OUT/stubs:$OUT/client" -d "$OUT/layer" \
    $(find "$MAIN/qp" -name '*.java' | sort) "$MAIN/STImage.java"
"$JAVAC" "${JAVAC_OPTS[@]}" -cp "$CP:$FX_CP:$OUT/stubs:$OUT/client:$OUT/layer" -d "$OUT/layer" \
    $(find "$MAIN/ui" -name '*.java' | sort) "$MAIN/StimageExtension.java"

# 4. the jar's tree: bundled libraries first (unpacked, without their manifests and signatures),
#    then the extension's classes and resources on top
while read -r role coords rest; do
    [[ "$role" == bundle ]] || continue
    IFS=: read -r _ a _ <<<"$coords"
    (cd "$OUT/jar" && "$JAR" xf "$LIB/$a.jar")
done < <(java_deps_list)
rm -f "$OUT/jar/META-INF/MANIFEST.MF" "$OUT/jar/module-info.class"
find "$OUT/jar/META-INF" -maxdepth 1 \( -name '*.SF' -o -name '*.RSA' -o -name '*.DSA' -o -name '*.EC' \) -delete
cp -R "$OUT/client/." "$OUT/layer/." "$OUT/jar/"
cp -R "$SRC/main/resources/." "$OUT/jar/"
cp LICENSE "$OUT/jar/META-INF/LICENSE"
cat >"$OUT/MANIFEST.MF" <<EOF
Implementation-Title: $NAME
Implementation-Version: $VERSION
Automatic-Module-Name: $MODULE
QuPath-Version: $QUPATH
EOF
JARFILE="$REPO/build/libs/$NAME-$VERSION-all.jar"
"$JAR" --create --file "$OUT/out.jar" --manifest "$OUT/MANIFEST.MF" -C "$OUT/jar" .
mv -f "$OUT/out.jar" "$JARFILE"
echo "build_extension_jar.sh: wrote ${JARFILE#"$REPO"/} ($(du -k "$JARFILE" | cut -f1) KiB)" >&2

# 5. the jar's check (qupath_extension/src/jarcheck): services entry, manifest, nothing of QuPath or
#    JavaFX inside, ServiceLoader loads the extension from it with only QuPath's side on the parent
#    class path (the stand-ins, JavaFX, Gson, JTS, SLF4J), CURVE works with the bundled JeroMQ
if [[ "$CHECK" == 1 ]]; then
    mkdir -p "$OUT/jarcheck"
    "$JAVAC" "${JAVAC_OPTS[@]}" -cp "$OUT/stubs" -d "$OUT/jarcheck" \
        $(find "$SRC/jarcheck/java" -name '*.java' | sort)
    "${JAVA_HOME:+$JAVA_HOME/bin/}java" -Djava.awt.headless=true \
        -cp "$OUT/jarcheck:$OUT/stubs:$FX_CP:$(jars provided)" \
        qupath.ext.stimage.jarcheck.ExtensionJarCheck "$JARFILE" "$QUPATH" "$NAME" "$VERSION"
fi
