"""The cohort manifest reader: columns, paths, clear errors for bad rows, and a seeded fuzz."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest

from stimage.errors import ConfigError, InputFileNotFoundError
from stimage.pipelines import Ledger, cohort_slides, read_manifest
from stimage.pipelines._cohort_manifest import MAX_COLUMNS, MAX_FIELD_CHARS, MAX_ID_CHARS


def test_columns_paths_and_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    m = tmp_path / "sub" / "cohort.tsv"
    m.parent.mkdir()
    m.write_text(
        "\ufeffSlide\tID\tRegion\tµm/px\tpatient\n"  # a BOM, any case, an extra column
        "scans/A 1.svs\t\t\t\tP1\n"
        "/abs/B.ndpi\tb-2\tr/b.geojson\t0.25\tP2\n"
        "\n"  # blank rows are skipped
    )
    specs = read_manifest(m)
    assert [s.id for s in specs] == ["A_1", "b-2"] and [s.index for s in specs] == [0, 1]
    assert specs[0].slide == m.parent / "scans" / "A 1.svs" and specs[0].region is None
    assert specs[1].slide == Path("/abs/B.ndpi") and specs[1].mpp == 0.25
    assert specs[1].region == m.parent / "r" / "b.geojson"
    assert "columns ignored: patient" in caplog.text


def test_csv_with_quotes_and_commas(tmp_path: Path) -> None:
    m = tmp_path / "c.csv"
    m.write_text('slide,mpp\n"x, y.tif",0.5\n')
    assert read_manifest(m)[0].slide.name == "x, y.tif"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path_to_slide,mpp\na.tif,0.5\n", "no 'slide' column"),
        ("slide,mpp\n,0.5\n", "line 2: the slide column is empty"),
        ("slide,mpp\na.tif,abc\n", "line 2: mpp 'abc' is not a number"),
        ("slide,mpp\na.tif,40\n", "line 2: mpp 40 is not a plausible"),
        ("slide,mpp\na.tif,nan\n", "not a plausible"),
        ("slide,id\na.tif,x\nb.tif,X\n", "slides 1 and 2 both have the id 'X'"),
        ("slide\nd1/a.tif\nd2/a.tif\n", "both have the id 'a'"),
        ("slide,id\na.tif,../evil\n", "not usable as a file name"),
        ("slide,id\na.tif," + "x" * (MAX_ID_CHARS + 1) + "\n", "not usable as a file name"),
        ("slide\n" + "a" * (MAX_FIELD_CHARS + 1) + "\n", "longer than"),
        ('slide\n"a.tif\n', "not valid CSV"),
        ("slide,slide\na,b\n", "two columns give 'slide'"),
        ("slide\n", "no slides"),
        (",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)) + "\n", "columns"),
        ("slide\n" + "a," * (MAX_COLUMNS + 1) + "\n", "fields"),
    ],
)
def test_bad_manifests_say_what_and_how_to_fix(tmp_path: Path, text: str, message: str) -> None:
    m = tmp_path / "m.csv"
    m.write_text(text)
    with pytest.raises(ConfigError, match=None) as e:
        read_manifest(m)
    assert message in str(e.value) and str(m) in str(e.value)


def test_too_large_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stimage.pipelines._cohort_manifest as mod

    m = tmp_path / "m.csv"
    m.write_text("slide\n" + "".join(f"s{i}.tif\n" for i in range(20)))
    monkeypatch.setattr(mod, "MAX_MANIFEST_ROWS", 10)
    with pytest.raises(ConfigError, match="more than 10 slides; split"):
        read_manifest(m)
    monkeypatch.setattr(mod, "MAX_MANIFEST_BYTES", 50)
    with pytest.raises(ConfigError, match="too large for a manifest"):
        read_manifest(m)
    with pytest.raises(InputFileNotFoundError, match="no such manifest or folder"):
        cohort_slides(tmp_path / "nothing.csv")
    (tmp_path / "bin.csv").write_bytes(b"slide\n\xff\xfe\x00a\n")
    monkeypatch.setattr(mod, "MAX_MANIFEST_BYTES", 1 << 20)
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_manifest(tmp_path / "bin.csv")


def test_a_folder_is_its_slide_files(tmp_path: Path) -> None:
    for n in ("b.svs", "a.tif", "notes.txt", ".hidden.tif"):
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert [(s.id, s.slide.name) for s in cohort_slides(tmp_path)] == [
        ("a", "a.tif"),
        ("b", "b.svs"),
    ]
    (tmp_path / "a.svs").write_bytes(b"x")
    with pytest.raises(ConfigError, match="both have the id 'a'"):
        cohort_slides(tmp_path)
    with pytest.raises(ConfigError, match="no slide files"):
        cohort_slides(tmp_path / "sub")


def _junk(rng: random.Random, n: int) -> str:
    alphabet = string.printable + "µé\u00a0\ufeff,\t\"'\x00/\\."
    return "".join(rng.choice(alphabet) for _ in range(n))


@pytest.mark.parametrize("seed", range(4))
def test_fuzzed_manifests_parse_or_fail_clearly(tmp_path: Path, seed: int) -> None:
    """Random headers, rows, quotes, separators and long fields (bounded: 60 manifests a seed,
    at most 40 rows, fields up to 5,000 characters, up to 70 columns): each either reads into
    slides that keep every promise, or raises ConfigError naming the manifest, never anything
    else."""
    rng = random.Random(seed)
    good = bad = 0
    for i in range(60):
        cols = rng.choice([["slide"], ["slide", "id"], ["slide", "id", "region", "mpp"],
                           ["path", "mpp", "extra"], [_junk(rng, 5)],
                           ["slide"] + [f"x{k}" for k in range(rng.randint(0, 70))]])  # fmt: skip
        sep = rng.choice([",", "\t"])
        lines = [sep.join(cols)]
        for _ in range(rng.randint(0, 40)):
            row = []
            for c in cols:
                r = rng.random()
                if c == "mpp":
                    v = rng.choice(["", "0.25", "0.5", "1", "-1", "1e9", "x", "inf", "0.049"])
                elif c == "id":
                    v = rng.choice(["", f"s{rng.randint(0, 30)}", _junk(rng, rng.randint(0, 9))])
                elif r < 0.1:
                    v = _junk(rng, rng.randint(0, 5000))
                else:
                    v = f"dir{rng.randint(0, 3)}/slide_{rng.randint(0, 60)}.svs"
                row.append(v)
            if rng.random() < 0.1:
                row = row[: rng.randint(0, len(row))]
            lines.append(sep.join(row))
        m = tmp_path / f"m{i}.{'tsv' if sep == chr(9) else 'csv'}"
        m.write_text("\n".join(lines) + rng.choice(["", "\n"]), encoding="utf-8")
        try:
            specs = read_manifest(m)
        except ConfigError as e:
            assert str(m) in str(e) and len(str(e)) < 1000
            bad += 1
            continue
        good += 1
        ids = [s.id.lower() for s in specs]
        assert len(set(ids)) == len(ids) and specs
        assert [s.index for s in specs] == list(range(len(specs)))
        for s in specs:
            assert 0 < len(s.id) <= MAX_ID_CHARS and "/" not in s.id and s.id[0].isalnum()
            assert s.mpp is None or 0.05 <= s.mpp <= 4.0
            assert len(str(s.slide)) <= MAX_FIELD_CHARS + len(str(tmp_path)) + 2
    assert good and bad  # both paths taken


def test_ledger_skips_a_torn_line(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.jsonl")
    led.append({"slide": "a", "event": "done", "settings": "d", "tiles": 3})
    with open(led.path, "ab") as fh:
        fh.write(b'{"slide": "b", "event": "do')  # a write cut off by a crash
    assert [e["slide"] for e in led.events()] == ["a"]
    led.append({"slide": "b", "event": "failed", "error": "x" * 100_000, "final": True})
    recs = led.records("d")
    assert recs["a"].done is not None and recs["b"].attempts == 1
    assert len(recs["b"].last_error or "") < 20_000  # cut to fit a line


def test_paths_are_absolute_for_workers_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ray worker or a Slurm task may run in another folder: paths do not depend on ours."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.csv").write_text("slide,region\na.tif,r.geojson\n")
    (tmp_path / "sub" / "b.svs").write_bytes(b"x")
    spec = read_manifest("sub/m.csv")[0]
    assert (
        spec.slide == tmp_path / "sub" / "a.tif" and spec.region == tmp_path / "sub" / "r.geojson"
    )
    assert cohort_slides("sub")[0].slide == tmp_path / "sub" / "b.svs"
