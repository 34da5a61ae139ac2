"""The cells and explain operations through the Python client, against a live server.

The tiny test model (conftest) explains tiles of the bundled HER2ST crop (0.69 µm/px);
cells are typed by the bundled default cell-type model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from server._helpers import TEST_LIMITS, wait_for
from stimage.data import open_slide
from stimage.examples import example_path
from stimage.models import Predictor
from stimage.qupath import validate_geojson
from stimage.server import ErrorCode, Server, ServerConfig, ServerError
from stimage.server._protocol import validate
from stimage.server.client import Client

ClientOf = Callable[..., Client]
MPP = 0.69


@pytest.fixture(scope="module")
def he_path() -> Path:
    return example_path() / "ST-imgs" / "B" / "B4" / "B4_crop.jpg"


@pytest.fixture(scope="module")
def he(he_path: Path) -> np.ndarray:
    with open_slide(he_path, mpp=MPP) as s:
        return s.read_region(0, 0, *s.dimensions)


@pytest.fixture(scope="module")
def xserver(predictor: Predictor, he_path: Path) -> Iterator[Server]:
    """A server that may read the example image's folder."""
    cfg = ServerConfig(port=0, limits=TEST_LIMITS, allow_roots=(he_path.parent,), device="cpu")
    with Server([predictor], cfg) as s:
        yield s


def _tile(he: np.ndarray, predictor: Predictor, x: int = 1600, y: int = 1600) -> tuple:
    side = round(predictor.tile_um / MPP)
    return he[y : y + side, x : x + side].copy(), [float(x), float(y), float(side), float(side)]


def _cells_of(geo: dict) -> list[dict]:
    return [f for f in geo["features"] if f["properties"]["objectType"] == "cell"]


def test_hello_lists_cells_and_explain(xserver: Server, client_of: ClientOf) -> None:
    ops = client_of(xserver.address).hello()["ops"]
    assert "cells" in ops and "explain" in ops


def test_cells_of_client_pixels_are_typed_geojson(
    xserver: Server, client_of: ClientOf, he: np.ndarray
) -> None:
    x0, y0, d = 1200.0, 1400.0, 1.0
    img = he[1400:1700, 1200:1500]
    events: list[tuple[int, int]] = []
    out = client_of(xserver.address).cells(
        img, MPP, origin=(x0, y0), downsample=d, progress=lambda a, b: events.append((a, b))
    )
    validate(out, "result_cells")
    assert validate_geojson(out["geojson"]) == out["n_cells"] > 10
    cells = _cells_of(out["geojson"])
    assert len(cells) == out["n_cells"]
    classes = [c["properties"]["classification"]["name"] for c in cells]
    assert set(classes) <= set(out["classes"]) and len(out["classes"]) >= 2
    assert sum(out["counts"].values()) == out["n_cells"]
    assert out["counts"] == {k: classes.count(k) for k in out["classes"]}  # zeros included
    assert out["cell_model"] and out["mpp"] == pytest.approx(MPP)
    # Geometry in full-resolution pixels of the image, inside the region sent.
    xy = np.array([c["nucleusGeometry"]["coordinates"][0][0] for c in cells])
    assert xy[:, 0].min() >= x0 - 1 and xy[:, 0].max() <= x0 + 300 + 1
    assert xy[:, 1].min() >= y0 - 1 and xy[:, 1].max() <= y0 + 300 + 1
    assert events and events[-1][0] == events[-1][1]


def test_cells_downsampled_image_maps_to_full_resolution(
    xserver: Server, client_of: ClientOf, he: np.ndarray
) -> None:
    import cv2

    img = cv2.resize(he[1000:1600, 1000:1600], (300, 300), interpolation=cv2.INTER_AREA)
    out = client_of(xserver.address).cells(
        img, 2 * MPP, origin=(1000, 1000), downsample=2.0, classify=False
    )
    assert out["cell_model"] is None and out["counts"] == {} and out["mpp"] == pytest.approx(MPP)
    cells = _cells_of(out["geojson"])
    assert cells and "classification" not in cells[0]["properties"]
    xy = np.concatenate([np.array(c["nucleusGeometry"]["coordinates"][0]) for c in cells])
    assert xy.min() >= 999 and xy.max() <= 1601 and np.ptp(xy[:, 0]) > 400


def test_cells_of_a_slide_file(
    xserver: Server, client_of: ClientOf, he_path: Path, tmp_path: Path
) -> None:
    c = client_of(xserver.address)
    out = c.cells(slide=he_path, region=[1400, 1400, 250, 250], slide_mpp=MPP)
    validate(out, "result_cells")
    assert out["n_cells"] > 5 and out["slide"]["width"] == 3200
    validate_geojson(out["geojson"])
    with pytest.raises(ServerError) as e:
        c.cells(slide=tmp_path / "x.jpg", region=[0, 0, 10, 10])
    assert e.value.code == ErrorCode.FORBIDDEN_PATH


def test_explain_lime_scores_nuclei_for_two_genes(
    xserver: Server, client_of: ClientOf, he: np.ndarray, predictor: Predictor
) -> None:
    genes = list(predictor.bundle.genes[:2])
    tile, box = _tile(he, predictor)
    events: list[tuple[int, int]] = []
    out = client_of(xserver.address).explain(
        genes,
        tile,
        box,
        MPP,
        num_samples=30,
        image_id="example",
        progress=lambda a, b: events.append((a, b)),
    )
    validate(out, "result_explain")
    assert out["targets"] == genes and out["measurements"] == [f"LIME: {g}" for g in genes]
    assert out["num_samples"] == 30 and out["n_nuclei"] >= 3
    assert validate_geojson(out["geojson"]) == out["n_nuclei"]
    feats = out["geojson"]["features"]
    scores = np.array(
        [[f["properties"]["measurements"][m] for m in out["measurements"]] for f in feats]
    )
    assert scores.shape == (out["n_nuclei"], 2) and np.isfinite(scores).all()
    assert np.abs(scores).sum() > 0
    assert all(f["properties"]["classification"]["name"] == "Nucleus" for f in feats)
    assert (30, 30) in events  # per-batch progress of the perturbed tiles
    # The intact tile's prediction is the model's (normalised as predict does).
    pred = client_of(xserver.address).predict(
        [tile], [box], MPP, genes=genes, image_id="example", format="table"
    )
    cols = [pred["columns"].index(f"{g}: mean") for g in genes]
    np.testing.assert_allclose(out["prediction"], pred["values"][0, cols], rtol=1e-3, atol=1e-3)


def test_explain_occlusion_and_slide_file(
    xserver: Server, client_of: ClientOf, he: np.ndarray, he_path: Path, predictor: Predictor
) -> None:
    gene = predictor.bundle.genes[0]
    _, box = _tile(he, predictor)
    out = client_of(xserver.address).explain(
        [gene], slide=he_path, box=box, slide_mpp=MPP, method="occlusion"
    )
    validate(out, "result_explain")
    assert out["measurements"] == [f"Occlusion: {gene}"] and out["slide"]["mpp"] == MPP
    assert 2 <= out["num_samples"] <= out["n_nuclei"] + 1  # the intact tile + one per nucleus
    assert out["fit_r2"] == [None]


def test_explain_errors(
    xserver: Server, client_of: ClientOf, he: np.ndarray, predictor: Predictor
) -> None:
    c = client_of(xserver.address)
    tile, box = _tile(he, predictor)
    glass = np.full_like(tile, 236)
    with pytest.raises(ServerError) as e:
        c.explain([predictor.bundle.genes[0]], glass, box, MPP, num_samples=20)
    assert e.value.code == "no_nuclei" and "no nuclei" in e.value.message
    pale = np.clip(tile.astype(int) + 120, 0, 255).astype(np.uint8)  # tissue too faint for nuclei
    with pytest.raises(ServerError) as e:
        c.explain([predictor.bundle.genes[0]], pale, box, MPP, num_samples=20)
    assert e.value.code in ("no_nuclei", ErrorCode.NO_TISSUE), e.value
    with pytest.raises(ServerError) as e:
        c.explain(["NOT_A_GENE"], tile, box, MPP, num_samples=20)
    assert e.value.code == ErrorCode.UNKNOWN_GENE and "NOT_A_GENE" in e.value.message
    with pytest.raises(ServerError) as e:
        c.explain([predictor.bundle.genes[0]], tile[:40, :40], box, MPP, num_samples=20)
    assert e.value.code == ErrorCode.WRONG_SCALE
    with pytest.raises(ServerError) as e:
        c.request("explain", {"genes": ["A"], "mpp": 1.0})
    assert e.value.code == ErrorCode.BAD_REQUEST


def test_cancel_mid_explain(
    xserver: Server, client_of: ClientOf, he: np.ndarray, predictor: Predictor
) -> None:
    c = client_of(xserver.address)
    tile, box = _tile(he, predictor, 1700, 1500)
    cancel = threading.Event()
    seen: list[int] = []
    before = xserver.batcher.tiles

    def progress(done: int, total: int) -> None:
        if total == 5000:
            seen.append(done)
            cancel.set()

    with pytest.raises(ServerError) as e:
        c.explain(
            [predictor.bundle.genes[0]],
            tile,
            box,
            MPP,
            num_samples=5000,
            progress=progress,
            cancel=cancel,
        )
    assert e.value.code == ErrorCode.CANCELLED
    assert seen and max(seen) < 5000
    # The device stops within a batch: the job leaves the batcher, other requests go on.
    assert wait_for(lambda: xserver.in_flight == 0 and xserver.batcher.active == 0, 10)
    assert xserver.batcher.tiles - before < 5000
    assert c.ping() > 0


def test_cli_client_cells_and_explain(
    xserver: Server, he: np.ndarray, he_path: Path, predictor: Predictor, tmp_path: Path
) -> None:
    import json

    from click.testing import CliRunner

    from stimage.cli import cli

    runner = CliRunner()
    out = tmp_path / "cells.geojson"
    base = ["client", "-a", xserver.address]
    r = runner.invoke(
        cli,
        [
            *base,
            "cells",
            str(he_path),
            "--mpp",
            str(MPP),
            "--region",
            "1400,1400,200,200",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    n = validate_geojson(out)
    assert n > 3 and f"wrote {n} cells" in r.output
    _, box = _tile(he, predictor)
    gene = predictor.bundle.genes[0]
    out2 = tmp_path / "explain.geojson"
    r = runner.invoke(
        cli,
        [
            *base,
            "explain",
            "--slide",
            str(he_path),
            "--mpp",
            str(MPP),
            "--box",
            ",".join(str(v) for v in box),
            "--genes",
            gene,
            "--num-samples",
            "20",
            "-o",
            str(out2),
        ],
    )
    assert r.exit_code == 0, r.output
    feats = json.loads(out2.read_text())["features"]
    assert feats and f"LIME: {gene}" in feats[0]["properties"]["measurements"]


def test_explain_p_high(
    xserver: Server, client_of: ClientOf, he: np.ndarray, predictor: Predictor
) -> None:
    clf = predictor.bundle.classifier
    if clf is None or not clf.genes:
        pytest.skip("the test model has no P(high) classifier")
    gene = clf.genes[0]
    tile, box = _tile(he, predictor)
    out = client_of(xserver.address).explain(
        [gene], tile, box, MPP, target="p_high", num_samples=20
    )
    assert out["targets"] == [f"{gene} P(high)"] and 0 <= out["prediction"][0] <= 1
    assert out["measurements"] == [f"LIME: {gene} P(high)"]
