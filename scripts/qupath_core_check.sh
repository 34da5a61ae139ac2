#!/usr/bin/env bash
# A strong local check of the QuPath layer of the extension against a REAL QuPath core build (not the
# compile-only stand-ins of qupath_extension/src/stubs). Not run in CI: QuPath's jars cannot be
# fetched there. It
#   1. compiles the client, the pure-Java core, the QuPath layer (qupath.ext.stimage.qp) and the
#      scripting API (qupath.ext.stimage.STImage) against QuPath core;
#   2. checks that every stand-in of a qupath-core class declares only members that the real class
#      has (javap), and, given QuPath's git repository, that every GUI stand-in method exists with the
#      same parameter types in QuPath's sources;
#   3. runs QuPathCoreLiveTest end to end: an ImageData over the bundled HER2ST crop (0.689 µm/px),
#      annotations, a live `stimage serve` started by the test; predict (tiles with "GENE: mean"
#      under the annotation, re-run replaces them, user objects kept, workflow script line), cells,
#      explain, error messages; it prints BENCHMARK lines (16-tile batch latency, tiles/s).
#
#   STIMAGE_QUPATH_APP=/opt/QuPath/lib/app bash scripts/qupath_core_check.sh
#
# (the lib/app folder of an installed QuPath: its qupath-core jar and every jar it ships; on
# macOS QuPath.app/Contents/app, on Windows QuPath\app).
#
# Environment:
#   STIMAGE_QUPATH_APP        an installed QuPath's jar folder (lib/app); or
#   STIMAGE_QUPATH_CORE_CP    an explicit class path of QuPath core and its dependencies
#                             (one of the two is required: SKIPPED without)
#   STIMAGE_QUPATH_JAVA_HOME  the JDK that compiled that core or newer (25 for QuPath 0.7 class
#                             files); default: JAVA_HOME, else java on PATH
#   STIMAGE_QUPATH_GIT        optional QuPath git dir (bare or .git); STIMAGE_QUPATH_TAG (v0.7.0):
#                             also check the GUI stand-ins (qupath.lib.gui.*) against its sources
#   STIMAGE_JAVA_LIVE=0       compile and check only (no server, no end-to-end run)
#   STIMAGE_JAVA_JARS         where jeromq.jar and junit-platform-console-standalone.jar are
#                             (default: build/java-deps/lib, filled from Maven Central with the
#                             versions of qupath_extension/java-deps.txt by scripts/_java_deps.sh)
# Exits 0 with a loud SKIPPED line without a QuPath core; non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
if [[ -z "${STIMAGE_JAVA_JARS:-}" ]]; then
    # shellcheck source=scripts/_java_deps.sh
    source scripts/_java_deps.sh
    java_deps_fetch "$REPO/build/java-deps/lib" || true  # a missing jar is reported below
fi
JARS="${STIMAGE_JAVA_JARS:-$REPO/build/java-deps/lib}"

skip() {
    echo "=====================================================================" >&2
    echo "SKIPPED: QuPath core check: $*" >&2
    echo "=====================================================================" >&2
    exit 0
}

if [[ -z "${STIMAGE_QUPATH_CORE_CP:-}" && -n "${STIMAGE_QUPATH_APP:-}" ]]; then
    [[ -d "$STIMAGE_QUPATH_APP" ]] || skip "STIMAGE_QUPATH_APP=$STIMAGE_QUPATH_APP is not a folder"
    shopt -s nullglob
    app_jars=("$STIMAGE_QUPATH_APP"/*.jar)
    shopt -u nullglob
    ((${#app_jars[@]})) || skip "no jars in $STIMAGE_QUPATH_APP (give an installed QuPath's lib/app)"
    STIMAGE_QUPATH_CORE_CP=$(IFS=:; echo "${app_jars[*]}")
fi
[[ -n "${STIMAGE_QUPATH_CORE_CP:-}" ]] || skip "set STIMAGE_QUPATH_APP to an installed QuPath's lib/app folder"
JH="${STIMAGE_QUPATH_JAVA_HOME:-${JAVA_HOME:-}}"
if [[ -n "$JH" ]]; then
    JAVAC="$JH/bin/javac"; JAVA="$JH/bin/java"; JAVAP="$JH/bin/javap"
else
    JAVAC=javac; JAVA=java; JAVAP=javap
fi
command -v "$JAVAC" >/dev/null 2>&1 || skip "no javac ($JAVAC)"
for j in jeromq.jar junit-platform-console-standalone.jar; do
    [[ -f "$JARS/$j" ]] || skip "missing $JARS/$j (scripts/_java_deps.sh downloads it from Maven Central: see above)"
done
QP_CP="$STIMAGE_QUPATH_CORE_CP"
"$JAVA" -cp "$QP_CP" qupath.lib.objects.utils.Tiler 2>&1 | grep -q "main method\|Main method" \
    || "$JAVAP" -cp "$QP_CP" qupath.lib.objects.utils.Tiler >/dev/null 2>&1 \
    || skip "no qupath.lib.objects.utils.Tiler on STIMAGE_QUPATH_CORE_CP (QuPath core 0.5 or newer needed)"

SRC=qupath_extension/src
OUT="$REPO/build/qupath-core-check"
rm -rf "$OUT"
mkdir -p "$OUT/main" "$OUT/test" "$OUT/stubs"
echo "qupath_core_check.sh: $("$JAVAC" -version 2>&1), --release 17, against: ${QP_CP%%:*}" >&2

# 1. the layer against QuPath core
"$JAVAC" --release 17 -encoding UTF-8 -Xlint:all,-classfile,-path -Werror -cp "$QP_CP:$JARS/jeromq.jar" \
    -d "$OUT/main" \
    $(find "$SRC/main/java/qupath/ext/stimage/client" "$SRC/main/java/qupath/ext/stimage/core" \
        "$SRC/main/java/qupath/ext/stimage/qp" -name '*.java' | sort) \
    "$SRC/main/java/qupath/ext/stimage/STImage.java"
echo "compiled the QuPath layer (client, core, qp, STImage) against QuPath core: OK"

# 2. the stand-ins declare only what QuPath has
STUB_FX=""
for j in javafx-base javafx-controls javafx-graphics; do
    [[ -f "$JARS/$j.jar" ]] && STUB_FX="$STUB_FX:$JARS/$j.jar"
done
core_stubs=$(cd "$SRC/stubs/java" && find qupath -name '*.java' -not -path 'qupath/lib/gui/*' | sort)
"$JAVAC" --release 17 -encoding UTF-8 -nowarn -cp "$QP_CP" -d "$OUT/stubs" \
    $(for f in $core_stubs; do echo "$SRC/stubs/java/$f"; done)
normalise() {
    sed -E -e 's/^ +//' -e 's/(synchronized|abstract|final|native|strictfp) //g' -e 's/;$//' \
        | { grep -E '\(' || true; } | { grep -v -E '^(public |protected )?(abstract |final )*(class|interface) ' || true; } \
        | sort -u
}
n_classes=0; n_members=0; bad=0
for f in $core_stubs; do
    cls=${f%.java}; cls=${cls//\//.}
    mapfile -t classes < <(cd "$OUT/stubs" && find "${cls//.//}.class" "${cls//.//}\$"*.class 2>/dev/null \
        | sed -e 's/\.class$//' -e 's#/#.#g')
    for c in "${classes[@]}"; do
        stub=$("$JAVAP" -public -cp "$OUT/stubs" "$c" | normalise)
        if ! "$JAVAP" -public -cp "$QP_CP" "$c" >/dev/null 2>&1; then
            echo "MISSING in QuPath: $c"; bad=1; continue
        fi
        real=$("$JAVAP" -public -cp "$QP_CP" "$c" | normalise)
        n_classes=$((n_classes + 1))
        while IFS= read -r m; do
            if [[ -z "$m" ]]; then continue; fi
            n_members=$((n_members + 1))
            grep -qxF -- "$m" <<<"$real" || { echo "NOT IN QUPATH: $c: $m"; bad=1; }
        done <<<"$stub"
    done
done
((bad == 0)) || { echo "FAILED: stand-ins declare members QuPath core does not have" >&2; exit 1; }
echo "stand-ins: $n_classes qupath-core classes, $n_members members, all present in QuPath core: OK"

if [[ -n "${STIMAGE_QUPATH_GIT:-}" ]]; then
    TAG="${STIMAGE_QUPATH_TAG:-v0.7.0}"
    python3 - "$STIMAGE_QUPATH_GIT" "$TAG" "$SRC/stubs/java" <<'PY'
import re, subprocess, sys
from pathlib import Path
git, tag, root = sys.argv[1], sys.argv[2], Path(sys.argv[3])
SIG = re.compile(r"public\s+(?:static\s+|default\s+|final\s+|synchronized\s+|abstract\s+)*"
                 r"([\w.<>\[\]?, ]+?)\s+(\w+)\s*\(([^)]*)\)")
def sigs(text):
    out = set()
    for ret, name, params in SIG.findall(re.sub(r"\s+", " ", text)):
        types = tuple(re.sub(r"\bfinal\s+", "", p).strip().rsplit(" ", 1)[0].replace(" ", "")
                      for p in params.split(",") if p.strip())
        out.add((ret.strip().split()[-1].replace(" ", ""), name, types))
    return out
files = sorted((root / "qupath/lib/gui").rglob("*.java"))
n = 0
for f in files:
    rel = f.relative_to(root).as_posix()
    real = subprocess.run(["git", "--git-dir", git, "show", f"{tag}:qupath-gui-fx/src/main/java/{rel}"],
                          capture_output=True, text=True)
    if real.returncode != 0:
        sys.exit(f"MISSING in QuPath {tag}: {rel}")
    have = sigs(real.stdout)
    for s in sigs(f.read_text()):
        n += 1
        if s not in have:
            sys.exit(f"NOT IN QUPATH {tag}: {rel}: {s}")
print(f"GUI stand-ins: {len(files)} files, {n} methods, all in QuPath {tag} sources: OK")
PY
else
    echo "GUI stand-ins not checked (set STIMAGE_QUPATH_GIT to QuPath's git dir to check them)"
fi

[[ "${STIMAGE_JAVA_LIVE:-1}" == 0 ]] && { echo "STIMAGE_JAVA_LIVE=0: no end-to-end run"; exit 0; }

# 3. end to end on QuPath core with a live backend
LAUNCHER="$JARS/junit-platform-console-standalone.jar"
"$JAVAC" --release 17 -encoding UTF-8 -nowarn -cp "$QP_CP:$JARS/jeromq.jar:$OUT/main:$LAUNCHER" -d "$OUT/test" \
    "$SRC/test/java/qupath/ext/stimage/qp/QuPathCoreLiveTest.java"
exec "$JAVA" -Dstimage.repo="$REPO" -Djava.awt.headless=true \
    -jar "$LAUNCHER" -cp "$QP_CP:$JARS/jeromq.jar:$OUT/main:$OUT/test" \
    --select-class qupath.ext.stimage.qp.QuPathCoreLiveTest --disable-banner --disable-ansi-colors \
    --details=tree --fail-if-no-tests "$@"
