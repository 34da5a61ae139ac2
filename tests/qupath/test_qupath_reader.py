"""Our GeoJSON through QuPath's own reader and writer, compiled from QuPath's source.

Runs only when a QuPath git checkout is named (it compiles qupath-core, ~1 min)::

    STIMAGE_QUPATH_GIT=/path/to/qupath/.git  [STIMAGE_QUPATH_TAG=v0.7.0]
    [STIMAGE_QUPATH_CP=<gson:jts-core:slf4j-api:commons-math3:picocli:guava jars>]
    [STIMAGE_QUPATH_JAVA_HOME=<JDK 21+ for QuPath 0.6/0.7, 17 for 0.5>]
    pytest tests/qupath/test_qupath_reader.py

Without STIMAGE_QUPATH_CP the jars are looked up in ~/.m2 and /usr/share/java.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stimage.qupath import read_geojson, validate_geojson, write_geojson

pytestmark = [pytest.mark.java, pytest.mark.slow]

PROBE = Path(__file__).parent / "qupath_reader_probe"
JAVA_TYPES = {
    "PathTileObject": "tile",
    "PathDetectionObject": "detection",
    "PathCellObject": "cell",
    "PathAnnotationObject": "annotation",
}


def _version_key(p: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)[:3])


def _find_jar(pattern: str, below: str | None = None) -> str | None:
    m2 = Path.home() / ".m2" / "repository"
    hits = sorted(m2.glob(pattern), key=_version_key)
    if below is not None:
        hits = [h for h in hits if _version_key(h) < tuple(int(x) for x in below.split("."))]
    if hits:
        return str(hits[-1])
    return None


def _classpath() -> str | None:
    if os.environ.get("STIMAGE_QUPATH_CP"):
        return os.environ["STIMAGE_QUPATH_CP"]
    jars = [
        _find_jar("com/google/code/gson/gson/*/gson-*.jar"),
        _find_jar("org/locationtech/jts/jts-core/*/jts-core-*.jar"),
        _find_jar("org/slf4j/slf4j-api/2.*/slf4j-api-*.jar"),
        _find_jar("org/apache/commons/commons-math3/*/commons-math3-*.jar"),
        _find_jar("info/picocli/picocli/*/picocli-*.jar"),
        _find_jar("com/google/guava/guava/*/guava-*.jar")
        or ("/usr/share/java/guava.jar" if Path("/usr/share/java/guava.jar").exists() else None),
    ]
    return None if None in jars else os.pathsep.join(j for j in jars if j)


@pytest.fixture(scope="module")
def qupath(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(java executable, classpath) with QuPath's qupath-core and the probe compiled."""
    git_dir = os.environ.get("STIMAGE_QUPATH_GIT")
    if not git_dir:
        pytest.skip("set STIMAGE_QUPATH_GIT to a QuPath git checkout to run QuPath's own reader")
    java_home = os.environ.get("STIMAGE_QUPATH_JAVA_HOME")
    javac = str(Path(java_home, "bin", "javac")) if java_home else shutil.which("javac")
    java = str(Path(java_home, "bin", "java")) if java_home else shutil.which("java")
    cp = _classpath()
    if not javac or not java or not cp:
        pytest.skip("needs javac and the jars of qupath-core's dependencies (see module doc)")
    out = tmp_path_factory.mktemp("qupath-core")
    env = dict(os.environ, PATH=f"{Path(javac).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    tag = os.environ.get("STIMAGE_QUPATH_TAG", "v0.7.0")
    r = subprocess.run(
        ["bash", str(PROBE / "build.sh"), git_dir, tag, str(out), cp],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return java, f"{out / 'classes'}{os.pathsep}{cp}"


def _probe(qupath: tuple[str, str], *args: str) -> list[dict[str, Any]]:
    java, cp = qupath
    r = subprocess.run(
        [java, "-cp", cp, "Probe", *args], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def test_qupath_reads_our_objects_as_we_mean_them(
    qupath: tuple[str, str], tmp_path: Path, sample_features: list[dict[str, Any]]
) -> None:
    feats = sample_features
    path = tmp_path / "ours.geojson"
    write_geojson(path, feats, validate=True)
    seen = _probe(qupath, str(path))
    assert len(seen) == len(feats)
    for f, q in zip(feats, seen, strict=True):
        props = f["properties"]
        assert JAVA_TYPES[q["type"]] == props["objectType"]
        assert q["id"] == f["id"]  # the STImage marker survives
        assert q["name"] == props.get("name")
        cls = props.get("classification")
        if cls is None:
            assert q["classification"] is None
        else:
            assert q["classification"] == (cls.get("name") or ": ".join(cls["names"]))
            assert q["rgb"] == cls["color"]
        assert q["locked"] == props.get("isLocked", False)
        assert q["geometry"] == f["geometry"]["type"]
        assert (q["nucleusArea"] is not None) == ("nucleusGeometry" in f)
        ours = props.get("measurements", {})
        assert set(q["measurements"]) == set(ours)
        for k, v in ours.items():
            got = q["measurements"][k]
            if isinstance(v, str):
                assert str(got) == {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[v]
            else:
                assert got == pytest.approx(v, rel=1e-6)  # QuPath keeps detections as float32
        if props["objectType"] == "annotation":
            assert q["metadata"] == props["metadata"]


def test_our_objects_stay_ours_after_a_qupath_export(
    qupath: tuple[str, str], tmp_path: Path, sample_features: list[dict[str, Any]]
) -> None:
    feats = sample_features
    ours, theirs = tmp_path / "ours.geojson", tmp_path / "qupath.geojson"
    write_geojson(ours, feats)
    java, cp = qupath
    r = subprocess.run(
        [java, "-cp", cp, "Probe", "--export", str(theirs), str(ours)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert validate_geojson(theirs) == len(feats)
    back = read_geojson(theirs)
    assert [o.id for o in back] == [f["id"] for f in feats]
    assert all(o.is_stimage for o in back)
    assert math.isnan(back[1].measurements["COX6C: mean"])
