"""``stimage client``: no server says so at once; hello shows genes and limits; one-tile images."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from _synth import render_he
from stimage.cli import cli
from stimage.cli._client_tiles import predict_image
from stimage.cli.client import _hello_lines
from stimage.errors import ConfigError, NoTissueError
from stimage.server.client import Client, ServerError

MPP = 0.689


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def test_no_server_is_reported_within_seconds() -> None:
    address = _free_address()
    t0 = time.monotonic()
    r = CliRunner().invoke(cli, ["client", "-a", address, "hello"])
    assert time.monotonic() - t0 < 6
    assert r.exit_code == 2
    assert f"no stimage server answers at {address}" in r.output
    assert "start one with `stimage serve`" in r.output
    assert r.output.strip().count("\n") == 0


def test_python_client_keeps_its_api_and_fails_fast() -> None:
    with Client(_free_address(), heartbeat_timeout=30, connect_timeout=0.5) as c:
        t0 = time.monotonic()
        with pytest.raises(ServerError) as e:
            c.ping()
        assert time.monotonic() - t0 < 3
        assert e.value.code == "disconnected" and "stimage serve" in e.value.message
        with pytest.raises(ServerError):  # and again: a fresh socket each time
            c.hello()


INFO: dict[str, Any] = {
    "version": "0.1",
    "protocol": 1,
    "device": "cpu",
    "ops": ["hello", "predict"],
    "slide_paths": False,
    "models": [
        {
            "name": "tiny",
            "default": True,
            "genes": [f"G{i}" for i in range(20)],
            "tile_um": 200.0,
            "tile_px": 64,
            "stain": None,
        }
    ],
    "limits": {
        "max_request_bytes": 256 << 20,
        "max_tiles": 512,
        "batch_size": 64,
        "scale_tolerance": 0.05,
    },
}


def test_hello_names_genes_and_limits() -> None:
    text = "\n".join(_hello_lines(INFO))
    assert "tiny (default): 20 genes, tiles of 200 µm at 64 px" in text
    assert "genes: G0, G1, G2" in text and "G19" not in text and "..." in text
    assert "limits: max_request_bytes 256 MiB, max_tiles 512, batch_size 64" in text
    assert "scale_tolerance 0.05" in text


class FakeClient:
    """Answers hello with :data:`INFO` and records what predict is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[Sequence[np.ndarray], np.ndarray, float]] = []

    def hello(self) -> dict[str, Any]:
        return INFO

    def predict(
        self, tiles: Sequence[np.ndarray], boxes: np.ndarray, mpp: float, **kw: Any
    ) -> dict[str, Any]:
        self.sent.append((tiles, np.asarray(boxes), mpp))
        feats: list[dict[str, Any]] = [{"type": "Feature", "geometry": None} for _ in tiles]
        return {"geojson": {"features": feats}}


def _png(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb).save(path)
    return path


def test_an_image_of_one_model_tile_is_predicted_as_that_tile(tmp_path: Path) -> None:
    """290 px at 0.689 µm/px is one 200 µm tile: far below the tissue minimum area."""
    dense = np.ones((290, 290), bool)
    img = _png(tmp_path / "tile.png", render_he(290, 290, dense, seed=2, nuclei_per_mpx=4000))
    c = FakeClient()
    feats = predict_image(c, img, None, MPP, None, None, 0.5, 64)
    assert len(feats) == 1 and len(c.sent) == 1
    tiles, boxes, mpp = c.sent[0]
    assert boxes.tolist() == [[0, 0, 290, 290]] and tiles[0].shape == (64, 64, 3)
    assert mpp == pytest.approx(200 / 64)


def test_a_small_image_of_tissue_is_tiled_and_too_small_ones_said(tmp_path: Path) -> None:
    """Two by two tiles of tissue (160,000 µm², less than 4 x the tissue minimum area)."""
    c = FakeClient()
    tissue = np.ones((581, 581), bool)
    img = _png(tmp_path / "four.png", render_he(581, 581, tissue, seed=3))
    assert len(predict_image(c, img, None, MPP, None, None, 0.5, 3)) == 4
    assert [len(t) for t, _, _ in c.sent] == [3, 1]
    small = _png(tmp_path / "small.png", render_he(200, 200, seed=4))
    with pytest.raises(ConfigError, match="smaller than one tile"):
        predict_image(c, small, None, MPP, None, None, 0.5, 64)


def test_no_tissue_message_names_only_options_the_command_has(tmp_path: Path) -> None:
    blank = _png(tmp_path / "glass.png", np.full((700, 700, 3), 242, np.uint8))
    with pytest.raises(NoTissueError) as e:
        predict_image(FakeClient(), blank, None, MPP, None, None, 0.5, 64)
    assert "--tissue-min-od" not in str(e.value) and "--mpp" in str(e.value)


def test_context_blocks_predict_every_tile_once_with_all_its_neighbours() -> None:
    """A 9 x 7 region and its margin in blocks under max_tiles: each region tile is predicted
    once, with every tile within reach as context, and no request is over the limit."""
    from scipy.spatial import cKDTree

    from stimage.cli._client_tiles import _ServedModel, context_blocks

    side = 100.0  # 200 µm at 2 µm/px
    region = [[x * side, y * side, side, side] for y in range(3, 10) for x in range(3, 12)]
    margin = [[x * side, y * side, side, side] for y in range(0, 13) for x in range(0, 15)
              if not (3 <= x < 12 and 3 <= y < 10)]  # fmt: skip
    boxes = np.asarray(region + margin)
    centres = boxes[:, :2] + side / 2
    within = cKDTree(centres).query_ball_point(centres, 250.0 + 1e-6)  # 500 µm
    for max_tiles, batch in ((60, 64), (512, 16), (512, 512)):
        served = _ServedModel("ctx", 200.0, 64, 0.05, 500.0, max_tiles)
        reqs = context_blocks(boxes, len(region), served, 2.0, batch)
        predicted = np.concatenate([p for p, _ in reqs])
        assert sorted(predicted.tolist()) == list(range(len(region)))
        for pred, ctx in reqs:
            assert len(pred) + len(ctx) <= max_tiles and len(pred) <= batch
            sent = set(pred.tolist()) | set(ctx.tolist())
            for i in pred:
                assert set(within[i]) <= sent  # every neighbour in reach goes with the tile
    assert (
        len(
            context_blocks(
                boxes, len(region), _ServedModel("c", 200.0, 64, 0.05, 500.0, 60), 2.0, 64
            )
        )
        > 4
    )
