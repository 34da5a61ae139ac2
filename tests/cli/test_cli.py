from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stimage.cli import cli
from stimage.tiles import TileStore


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_help_and_version() -> None:
    code, out, _ = run("--help")
    assert code == 0 and "prepare" in out and "doctor" in out and "demo" in out
    code, out, _ = run("--version")
    assert code == 0 and "stimage" in out


def test_prepare_writes_a_store_and_says_what_it_did(legacy_st_two: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    code, stdout, _ = run(
        "-q", "prepare", str(legacy_st_two), "--out", str(out), "--tile-px", "32", "--stain", "none"
    )
    assert code == 0, stdout
    assert "S1: done" in stdout and "S2: done" in stdout and "µm/px from spot grid" in stdout
    assert TileStore(out).sample_ids == ["S1", "S2"]
    meta = json.loads((out / "run_metadata.json").read_text())
    assert meta["command"] == "prepare" and meta["arguments"]["tile_px"] == 32
    code, stdout, _ = run(
        "-q",
        "prepare",
        str(legacy_st_two),
        "--out",
        str(out),
        "--tile-px",
        "32",
        "--stain",
        "none",
        "--samples",
        "S2",
    )
    assert code == 0 and "S2: skipped" in stdout and "S1" not in stdout


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        ("missing_dataset", "no such dataset folder"),
        ("mismatched_spots", "have no row in S1_selection.tsv"),
        ("truncated_image", "truncated"),
        ("spots_outside", "lie outside the"),
        ("no_tissue", "--min-coverage"),
        ("bad_manifest", "no 'path'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    make: str, needle: str, legacy_st: tuple[Path, dict], tmp_path: Path
) -> None:
    import pandas as pd

    root, info = legacy_st
    target = root
    extra: list[str] = []
    if make == "missing_dataset":
        target = tmp_path / "nowhere"
    elif make == "mismatched_spots":
        c = info["counts"].copy()
        c.index = [f"{i}x77" for i in range(len(c))]
        c.to_csv(root / "ST-cnts" / "S1.tsv.gz", sep="\t")
    elif make == "truncated_image":
        img: Path = info["image"]
        img.write_bytes(img.read_bytes()[:2000])
    elif make == "spots_outside":
        sp: pd.DataFrame = info["spots"].copy()
        sp["pixel_x"] += 100000
        sp.to_csv(root / "ST-spotfiles" / "S1_selection.tsv", sep="\t", index=False)
        extra = ["--mpp", "2.0"]
    elif make == "no_tissue":
        extra = ["--tile-um", "4000"]
    elif make == "bad_manifest":
        target = tmp_path / "m.csv"
        target.write_text("sample_id,format\nA,visium\n")
    r = CliRunner().invoke(
        cli, ["-q", "prepare", str(target), "--out", str(tmp_path / "o"), "--stain", "none", *extra]
    )
    assert r.exit_code == 2, r.output
    assert needle in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        cli, ["--debug", "prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code != 0
    assert r.exception is not None and "no such dataset" in str(r.exception)


def test_usage_errors_are_clicks() -> None:
    code, _, err = run("prepare")
    assert code == 2 and "Missing argument" in err


def test_doctor_reports_versions_weights_and_device() -> None:
    code, out, _ = run("doctor")
    assert code == 0
    for needle in (
        "packages:",
        "torch",
        "weights:",
        "efficientnet_lite0",
        "compute:",
        "device",
        "cache:",
    ):
        assert needle in out


@pytest.mark.slow
def test_demo_runs_the_pipeline_on_the_bundled_example(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    code, stdout, _ = run("-q", "demo", "--out", str(out))
    assert code == 0, stdout
    assert "µm/px, from the spot grid" in stdout
    for f in (
        "tiles_overview.png",
        "tiles_raw_vs_normalised.png",
        "run_metadata.json",
        "tiles/store.json",
    ):
        assert (out / f).exists(), f
    store = TileStore(out / "tiles")
    assert store.sample_ids == ["B4"]
    assert store.spots("B4").n_obs >= 80  # of the 100 spots in the crop
    report = (out / "report.html").read_text()
    # The report says which model, how far to trust it, and that B4 was in its training data.
    assert "The model" in report and "Held-out accuracy" in report
    assert "Read with care" in report and "(B4) was in the model" in report
    assert "<td>COX6C</td>" in report and "paper_panel" in report
    # Self-contained: every picture embedded, nothing loaded from elsewhere.
    assert report.count("<img src='data:image/") >= 4 and "src='http" not in report
    assert "<h2>Cells</h2>" in report and "nuclei segmented" in report
    assert "<th>tiles kept</th>" in report
