#!/usr/bin/env bash
# Compile QuPath's own GeoJSON reader/writer (qupath-core at a tag) with Probe.java, so that
# tests/qupath/test_qupath_reader.py can check our output against the real thing.
#
#   build.sh <qupath git dir> <tag> <out dir> <classpath>
#
# qupath-core needs gson (>= 2.11 for QuPath 0.6+), jts-core, slf4j-api 2, commons-math3,
# picocli and guava on <classpath>, and a JDK matching the tag (17 for 0.5, 21+ for 0.6/0.7).
# Its one use of ImageJ (BufferedImageTools.resize, image resizing) is stubbed out: GeoJSON
# never touches it.
set -euo pipefail
git_dir=$1; tag=$2; out=$3; cp=$4
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out"; mkdir -p "$out/src" "$out/classes"
git --git-dir="$git_dir" archive "$tag" qupath-core/src/main/java | tar -x -C "$out/src"
python3 - "$out/src/qupath-core/src/main/java/qupath/lib/awt/common/BufferedImageTools.java" <<'PY'
import sys
p = sys.argv[1]
lines = open(p).read().split("\n")
start = next(i for i, l in enumerate(lines) if "boolean areaAveraging;" in l)
end = next(i for i in range(start, len(lines)) if "return new BufferedImage(img.getColorModel(), raster2" in lines[i]
           or 'System.err.println(String.format("Resizing from' in lines[i])
lines[start:end] = ['\t\tif (true) throw new UnsupportedOperationException("stubbed: no ImageJ");']
open(p, "w").write("\n".join(l for l in lines if not l.startswith("import ij.")))
PY
status=0
javac -nowarn -proc:none -d "$out/classes" -cp "$cp" -sourcepath "$out/src/qupath-core/src/main/java" \
    "$here/Probe.java" > "$out/javac.log" 2>&1 || status=$?
grep -v '^Note:' "$out/javac.log" >&2 || :
if [ "$status" -ne 0 ]; then
    echo "build.sh: javac failed (exit $status) compiling qupath-core $tag with Probe.java;" \
         "the errors are above (a missing jar on the classpath, or a JDK older than the tag needs)" >&2
    exit "$status"
fi
