"""The run report: self-contained, bounded pictures, warnings first, model and cells."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stimage.pipelines import (
    RunReport,
    cells_section,
    explanation_warnings,
    model_section,
    training_overlap,
)
from stimage.pipelines._run_report import MAX_EMBED_PX


class _Bundle:
    """The parts of a ModelBundle the report reads."""

    name = "tiny"
    description = "a test model"
    genes = ("A", "B", "C")

    def __init__(self, training: dict | None = None, cv: bool = True) -> None:
        self.training = training or {"samples": ["S1", "S2"]}
        self.metrics = {"cv": {"by_gene_set": {"panel": {"mean_pcc": 0.31}}}} if cv else {}

    def gene_reliability(self) -> dict:
        return {
            "A": {"pcc": 0.4, "coverage": 0.9, "reliable": True},
            "B": {"pcc": 0.02, "coverage": 0.8, "reliable": False},
            "C": {"pcc": None, "coverage": None, "reliable": False},
        }


def _png(path: Path, size: tuple[int, int], noise: bool = False) -> Path:
    rng = np.random.default_rng(0)
    arr = (
        rng.integers(0, 255, (size[1], size[0], 3), np.uint8)
        if noise
        else np.full((size[1], size[0], 3), 200, np.uint8)
    )
    Image.fromarray(arr).save(path)
    return path


def test_report_is_self_contained_and_bounded(tmp_path: Path) -> None:
    small = _png(tmp_path / "small.png", (300, 200))
    wide = _png(tmp_path / "wide.png", (6000, 300))
    heavy = _png(tmp_path / "heavy.png", (1200, 1200), noise=True)  # ~4 MB as PNG
    data = tmp_path / "sub" / "x.h5ad"
    data.parent.mkdir()
    data.write_bytes(b"x")
    rep = RunReport(
        title="T <&>",
        intro="what ran",
        numbers=[("tiles", 12), ("seconds", 1.23456)],
        settings={"genes": ["A", "B"], "region": None},
        figures=[(small, "small"), (wide, "wide"), (heavy, "heavy"), (tmp_path / "gone.png", "x")],
        files=[(data, "the data")],
    )
    rep.warnings.append("first warning")
    out = rep.write(tmp_path / "r" / "report.html")
    page = out.read_text()
    assert not list(out.parent.glob("*.tmp"))
    assert "T &lt;&amp;&gt;" in page and "<script" not in page and "http" not in page
    # Warnings come before the numbers; settings are shown as given.
    assert page.index("first warning") < page.index("<h2>The run</h2>")
    assert "<code>A, B</code>" in page and "<code>(not set)</code>" in page
    srcs = re.findall(r"<img src='data:(image/\w+);base64,([^']+)'", page)
    assert len(srcs) == 3  # the missing picture is left out
    sizes = [Image.open(io.BytesIO(base64.b64decode(b))).size for _, b in srcs]
    assert sizes[0] == (300, 200) and srcs[0][0] == "image/png"
    assert max(sizes[1]) == MAX_EMBED_PX and srcs[1][0] == "image/jpeg"
    assert srcs[2][0] == "image/jpeg"  # over the byte bound: re-encoded
    assert "href='../sub/x.h5ad'" in page


def test_model_section_warns_for_unreliable_genes() -> None:
    html, warns = model_section(_Bundle(), ["A", "B", "Z"])  # Z: not in the model
    assert "<td>A</td>" in html and "<td>Z</td>" not in html and "0.310" in html
    assert "read with caution" in html
    assert len(warns) == 1 and "1 of the 2 genes" in warns[0] and "B" in warns[0]
    html2, warns2 = model_section(_Bundle(cv=False), ["A"])
    assert "records no held-out accuracy" in html2 and warns2 == []


def test_training_overlap_by_name() -> None:
    b = _Bundle({"samples": ["B4", "C2"], "slides": ["/data/x/BT10737_D2_HE.jpg"]})
    assert training_overlap(b, "/shared/her2st/ST-imgs/B/B4/any.jpg") == "B4"
    assert training_overlap(b, "/elsewhere/BT10737_D2_HE.jpg") == "BT10737_D2_HE.jpg"
    assert training_overlap(b, "/slides/C2.svs") == "C2"
    assert training_overlap(b, "/slides/new.svs", sample_id="C2") == "C2"
    assert training_overlap(b, "/slides/B40/new.svs") is None


class _Cells:
    """The parts of Cells the report reads."""

    def __init__(self, types: pd.DataFrame) -> None:
        self.types = types

    def __len__(self) -> int:
        return len(self.types)

    def composition(self) -> pd.Series:
        return self.types["class"].value_counts(normalize=True)


def test_cells_section_and_explanation_warnings() -> None:
    types = pd.DataFrame({"class": ["Immune"] * 3 + ["Stromal"], "entropy": [0.9, 0.95, 0.85, 0.1]})
    html, warns = cells_section(_Cells(types), "in the region")  # type: ignore[arg-type]
    assert "4 nuclei segmented in the region" in html and "75%" in html
    assert len(warns) == 1 and "75% of the cells in the region" in warns[0]
    sure = types.assign(entropy=0.2)
    assert cells_section(_Cells(sure))[1] == []  # type: ignore[arg-type]
    warns = explanation_warnings({"ERBB2": 0.41, "COX6C": 0.8, "X": float("nan")})
    assert len(warns) == 1 and "ERBB2" in warns[0] and "R² 0.41" in warns[0]
    assert len(explanation_warnings({"A": 0.49, "B": 0.5})) == 1  # LOW_R2 0.5 is fine


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium (apt install chromium)")
@pytest.mark.parametrize("width", [800, 1280])
def test_layout_fits_the_window_in_headless_chromium(tmp_path: Path, width: int) -> None:
    """Long paths, gene lists, warnings and wide pictures wrap or shrink: nothing is cut off."""
    import subprocess

    wide = _png(tmp_path / "w.png", (2600, 400))
    rep = RunReport(
        title="Layout",
        numbers=[("tiles", 3)],
        settings={
            "slide": "/very/" + "long_folder_name_" * 20 + "/slide.svs",
            "genes": [f"GENE{i}" for i in range(200)],
        },
        figures=[(wide, "wide")],
        files=[(wide, "a picture")],
    )
    rep.warnings.append("x" * 400)
    page = rep.write(tmp_path / "r.html")
    shot = tmp_path / "s.png"
    cmd = [
        str(_chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},1600",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape[1] == width
    assert (img < 200).mean() > 0.02  # the page drew something
    # Content reaching the window's right edge means it overflowed and was cut off.
    assert int((img[:, -6:] < 250).sum()) == 0
