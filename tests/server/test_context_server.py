"""A model with spatial context over the server: tiles give each other context, as in process."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from conftest import FAST
from server._helpers import TEST_LIMITS, boxes_for, model_tiles
from stimage.models import ModelBundle, Predictor, SpatialContext
from stimage.pipelines import predict_slide
from stimage.server import Server, ServerConfig
from stimage.server.client import Client
from stimage.tiles import TileStore
from stimage.training import train_model


@pytest.fixture(scope="module")
def ctx_predictor(store3: TileStore) -> Predictor:
    cfg = dataclasses.replace(FAST, context=SpatialContext((300.0, 500.0)), name="ctx")
    b: ModelBundle = train_model(store3, cfg, ["S1", "S2"])
    return Predictor(b, device="cpu")


@pytest.fixture(scope="module")
def ctx_server(ctx_predictor: Predictor, slide_root: Path) -> Iterator[Server]:
    cfg = ServerConfig(port=0, limits=TEST_LIMITS, allow_roots=(slide_root,), device="cpu")
    with Server([ctx_predictor], cfg) as s:
        yield s


def test_tiles_give_each_other_context(
    ctx_server: Server, client_of: Callable[..., Client], ctx_predictor: Predictor
) -> None:
    tiles, mpp = model_tiles(ctx_predictor, 6, seed=3, px=ctx_predictor.tile_px)
    c = client_of(ctx_server.address)
    boxes = boxes_for(6)  # a row of touching tiles: 200 µm apart
    every = c.predict(tiles, boxes, mpp, format="table", image_id="a")
    some = c.predict(
        tiles, boxes, mpp, format="table", image_id="a", context_only=[0, 0, 0, 0, 1, 1]
    )
    cols = every["columns"]
    assert some["boxes"] == boxes[:4].tolist() and some["values"].shape[0] == 4
    np.testing.assert_allclose(some["values"], every["values"][:4], rtol=1e-5, atol=1e-6)
    n_ctx = every["values"][:, cols.index("Tile: context tiles")]
    assert n_ctx.tolist() == [2, 3, 4, 4, 3, 2]
    far = c.predict(
        tiles, boxes_for(6, side=100.0) * [10, 1, 1, 1], mpp, format="table", image_id="a"
    )
    assert (far["values"][:, cols.index("Tile: context tiles")] == 0).all()


def test_slide_region_reads_a_margin_as_in_process(
    ctx_server: Server,
    client_of: Callable[..., Client],
    ctx_predictor: Predictor,
    slide_root: Path,
) -> None:
    path = slide_root / "wsi.tif"
    out = client_of(ctx_server.address).predict_slide(path, [300, 200, 400, 300], format="table")
    ref = predict_slide(ctx_predictor, path, region=box(300, 200, 700, 500))
    assert out["n_tiles"] == ref.n_obs > 6
    cols = out["columns"]
    gene = ref.var_names[0]
    np.testing.assert_allclose(
        out["values"][:, cols.index(f"{gene}: mean")], ref[:, gene].X.ravel(), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(
        out["values"][:, cols.index("Tile: context tiles")], ref.obs["context_tiles"]
    )


@pytest.fixture(scope="module")
def crop_server(ctx_predictor: Predictor) -> Iterator[tuple[Server, Path]]:
    """The context model's server reading the bundled HER2ST crop's folder (real nuclei)."""
    from stimage.examples import example_path

    path = example_path() / "ST-imgs" / "B" / "B4" / "B4_crop.jpg"
    cfg = ServerConfig(port=0, limits=TEST_LIMITS, allow_roots=(path.parent,), device="cpu")
    with Server([ctx_predictor], cfg) as s:
        yield s, path


def test_explain_holds_the_neighbours_the_tile_was_predicted_with(
    crop_server: tuple[Server, Path], client_of: Callable[..., Client], ctx_predictor: Predictor
) -> None:
    """Explaining with the tiles around it (sent by the client, or read from the slide) gives
    the tile's prediction with context: what predict returns for it with those neighbours."""
    from stimage.data import open_slide
    from stimage.pipelines import tile_box

    server, path = crop_server
    mpp = 0.69
    with open_slide(path, mpp=mpp) as s:
        he = s.read_region(0, 0, *s.dimensions)
    side = round(ctx_predictor.tile_um / mpp)
    x0 = y0 = 1600
    reach = ctx_predictor.bundle.context.reach_um  # type: ignore[union-attr]
    around = [
        (dx, dy)
        for dy in range(-3, 4)
        for dx in range(-3, 4)
        if (dx, dy) != (0, 0) and np.hypot(dx, dy) * ctx_predictor.tile_um <= reach
    ]
    boxes = [[x0 + dx * side, y0 + dy * side, side, side] for dx, dy in around]
    cut = [he[int(b[1]) : int(b[1]) + side, int(b[0]) : int(b[0]) + side] for b in boxes]
    assert all(t.shape == (side, side, 3) for t in cut)
    tile = he[y0 : y0 + side, x0 : x0 + side]
    box0 = [float(x0), float(y0), float(side), float(side)]
    gene = ctx_predictor.bundle.genes[0]
    c = client_of(server.address)
    held = c.explain(
        [gene],
        tile,
        box0,
        mpp,
        neighbours=list(zip(cut, boxes, strict=True)),
        method="occlusion",
        image_id="crop",
    )
    alone = c.explain([gene], tile, box0, mpp, method="occlusion", image_id="crop")
    assert held["context_tiles"] == len(around) == 20 and alone["context_tiles"] == 0
    pred = c.predict(
        [tile, *cut],
        [box0, *boxes],
        mpp,
        genes=[gene],
        image_id="crop",
        format="table",
        context_only=[0] + [1] * len(cut),
    )
    col = pred["columns"].index(f"{gene}: mean")
    assert pred["values"][0, pred["columns"].index("Tile: context tiles")] == 20
    np.testing.assert_allclose(held["prediction"], pred["values"][0, [col]], rtol=1e-3, atol=1e-3)
    # the tile as predict saw it: the model sees exactly that tile, equal to float precision
    exact = c.explain(
        [gene], tile, box0, mpp, neighbours=list(zip(cut, boxes, strict=True)), model_tile=tile,
        method="occlusion", image_id="crop",
    )  # fmt: skip
    assert exact["context_tiles"] == 20
    np.testing.assert_allclose(exact["prediction"], pred["values"][0, [col]], rtol=1e-5)
    lone = c.predict([tile], [box0], mpp, genes=[gene], image_id="crop", format="table")
    np.testing.assert_allclose(alone["prediction"], lone["values"][0, [col]], rtol=1e-3, atol=1e-3)
    assert abs(held["prediction"][0] - alone["prediction"][0]) > 1e-3  # context matters here
    # a slide request reads the neighbours itself: predict-slide's prediction of that tile
    with open_slide(path, mpp=mpp) as s:
        sbox = tile_box(s, ctx_predictor.tile_um, (x0 + side / 2, y0 + side / 2))
    out = c.explain([gene], slide=path, box=sbox, slide_mpp=mpp, method="occlusion")
    x, y, w, h = sbox
    ref = predict_slide(ctx_predictor, path, mpp=mpp, region=box(x, y, x + w, y + h), genes=[gene])
    assert out["context_tiles"] == ref.obs["context_tiles"].iloc[0] > 0
    np.testing.assert_allclose(out["prediction"], np.asarray(ref.X)[0], rtol=1e-4)


def test_explain_neighbour_frames_are_checked(
    crop_server: tuple[Server, Path], client_of: Callable[..., Client], ctx_predictor: Predictor
) -> None:
    from stimage.server import ErrorCode, ServerError

    server, _ = crop_server
    c = client_of(server.address)
    tiles, mpp = model_tiles(ctx_predictor, 2, seed=1, px=ctx_predictor.tile_px)
    side = ctx_predictor.tile_um / mpp
    b0, b1 = [0.0, 0.0, side, side], [side, 0.0, side, side]
    gene = ctx_predictor.bundle.genes[0]
    params = {
        "genes": [gene],
        "mpp": mpp,
        "method": "occlusion",
        "tile": {"frame": 0, "box": b0},
        "neighbours": [{"frame": 2, "box": b1}],
    }
    from stimage.server._images import encode_tile

    frames = [encode_tile(t, "png") for t in tiles]
    with pytest.raises(ServerError) as e:
        c.request("explain", params, frames)
    assert e.value.code == ErrorCode.BAD_REQUEST and "frame" in str(e.value)
    # a neighbour at the wrong scale is named
    params["neighbours"] = [{"frame": 1, "box": [side, 0.0, 2 * side, 2 * side]}]
    with pytest.raises(ServerError) as e:
        c.request("explain", params, frames)
    assert e.value.code == ErrorCode.WRONG_SCALE and "neighbours[0]" in str(e.value)
    # the model's view goes after the neighbours, and must cover the tile
    params["neighbours"] = [{"frame": 1, "box": b1}]
    params["model_tile"] = {"frame": 1}
    with pytest.raises(ServerError) as e:
        c.request("explain", params, [*frames, frames[0]])
    assert e.value.code == ErrorCode.BAD_REQUEST and "model's view" in str(e.value)
    params["model_tile"] = {"frame": 2}
    half = encode_tile(tiles[0][: len(tiles[0]) // 2], "png")
    with pytest.raises(ServerError) as e:
        c.request("explain", params, [*frames, half])
    assert e.value.code == ErrorCode.WRONG_SCALE and "model_tile" in str(e.value)


@pytest.mark.slow
def test_explain_neighbours_fuzz(
    crop_server: tuple[Server, Path], ctx_predictor: Predictor
) -> None:
    """Seeded hostile explain requests with neighbours: each gets a reply (never ``internal``)
    and the server keeps serving."""
    import copy
    import json
    import random

    import zmq

    from stimage.server import ErrorCode, validate
    from stimage.server._images import encode_tile

    rng = random.Random(77)
    server, _ = crop_server
    arrs, mpp = model_tiles(ctx_predictor, 3, seed=4, px=ctx_predictor.tile_px)
    good = [encode_tile(a) for a in arrs]
    side = ctx_predictor.tile_um / mpp
    base = {
        "protocol": 1, "id": "e", "op": "explain",
        "params": {
            "genes": [ctx_predictor.bundle.genes[0]], "mpp": mpp, "method": "occlusion",
            "tile": {"frame": 0, "box": [side, 0.0, side, side]},
            "neighbours": [{"frame": 1, "box": [0.0, 0.0, side, side]},
                           {"frame": 2, "box": [2 * side, 0.0, side, side]}],
        },
    }  # fmt: skip
    weird: list = [None, -1, 0, 3, 1.5, "1", [], {}, [0, 0, 1], [0, 0, -5, 5], [0, 0, 1e308, 1e308],
                   [float("nan")] * 4, "x" * 300, [{"frame": 1}], [{"frame": 1, "box": [0, 0, 1, 1]}] * 600]  # fmt: skip
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    codes: dict[str, int] = {"result": 0}
    for k in range(160):
        h = copy.deepcopy(base)
        h["id"] = f"e{k}"
        frames = list(good)
        for _ in range(rng.randrange(1, 3)):
            what = rng.randrange(6)
            nb = h["params"]["neighbours"]
            if what == 0:
                h["params"]["neighbours"] = rng.choice(weird)
            elif what == 1 and isinstance(nb, list) and nb and isinstance(nb[0], dict):
                nb[0][rng.choice(["frame", "box", "zzz"])] = rng.choice(weird)
            elif what == 2:
                frames = frames[: rng.randrange(len(frames) + 1)] + [good[0]] * rng.randrange(3)
            elif what == 3:
                i = rng.randrange(len(frames)) if frames else 0
                if frames:
                    b = bytearray(frames[i])
                    for _ in range(rng.randrange(1, 10)):
                        b[rng.randrange(8, len(b))] = rng.randrange(256)
                    frames[i] = bytes(b[: rng.randrange(9, len(b) + 1)])
            elif what == 4:  # the model's view of the tile, right or wrong
                h["params"]["model_tile"] = rng.choice([{"frame": len(frames)}, *weird[:8]])
                frames.append(rng.choice([good[0], good[0][: len(good[0]) // 2], b"x"]))
            else:
                h["params"].pop("tile", None) if rng.random() < 0.2 else None
                h["params"]["slide"] = rng.choice([None, {"path": "/x.tif", "box": [0, 0, 1, 1]}])
        raw = json.dumps(h, allow_nan=True).encode()
        sock.send_multipart([raw, *frames])
        while True:
            assert sock.poll(30000), f"no reply to fuzzed explain {k}"
            reply = json.loads(sock.recv_multipart()[0])
            if reply["kind"] in ("result", "error"):
                break
        validate(reply, reply["kind"])
        if reply["kind"] == "error":
            assert reply["code"] != ErrorCode.INTERNAL, (k, h, reply)
            codes[reply["code"]] = codes.get(reply["code"], 0) + 1
        else:
            codes["result"] += 1
    sock.close()
    # the wrong ways are each named, and what stayed valid was explained
    assert codes["bad_request"] > 50 and codes["bad_image"] > 5 and codes["result"] > 0, codes
    assert Client(server.address, timeout=10).hello()["ops"]


def test_client_predicts_an_image_in_blocks_with_their_margin(
    crop_server: tuple[Server, Path], ctx_predictor: Predictor, tmp_path: Path
) -> None:
    """``stimage client predict IMAGE --region``: blocks of a few tiles, each with the tiles in
    reach, give every tile what one request of them all gives it, and the neighbours
    ``predict-slide --region`` gives it."""
    from stimage.cli._client_tiles import predict_image

    server, path = crop_server
    region = (1300.0, 1300.0, 1200.0, 900.0)
    x, y, w, h = region

    def run(batch: int) -> dict[tuple[int, int], dict]:
        with Client(server.address, timeout=120) as c:
            feats = predict_image(c, path, region, 0.69, None, None, 0.7, batch)
        out = {}
        for f in feats:
            xs = [p[0] for p in f["geometry"]["coordinates"][0]]
            ys = [p[1] for p in f["geometry"]["coordinates"][0]]
            out[(round(min(xs)), round(min(ys)))] = f["properties"]["measurements"]
        return out

    blocks, whole = run(4), run(512)
    assert blocks.keys() == whole.keys() and len(blocks) >= 8
    gene = ctx_predictor.bundle.genes[0]
    for k in blocks:
        assert blocks[k]["Tile: context tiles"] == whole[k]["Tile: context tiles"]
        assert blocks[k][f"{gene}: mean"] == pytest.approx(whole[k][f"{gene}: mean"], rel=1e-4)
    ref = predict_slide(ctx_predictor, path, mpp=0.69, region=box(x, y, x + w, y + h))
    n_ref = {
        (round(a), round(b)): n
        for a, b, n in zip(ref.obs["x"], ref.obs["y"], ref.obs["context_tiles"], strict=True)
    }
    assert {k: blocks[k]["Tile: context tiles"] for k in blocks} == n_ref


def test_client_explains_an_image_tile_with_its_neighbours(
    crop_server: tuple[Server, Path], ctx_predictor: Predictor, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from stimage.cli import cli

    server, path = crop_server
    gene = ctx_predictor.bundle.genes[0]
    side = round(ctx_predictor.tile_um / 0.69)
    r = CliRunner().invoke(
        cli,
        ["client", "-a", server.address, "explain", str(path), "--mpp", "0.69",
         "--box", f"1600,1600,{side},{side}", "--genes", gene, "--method", "occlusion",
         "-o", str(tmp_path / "e.geojson")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "with 20 neighbouring tiles held fixed" in r.output


def test_client_explain_of_an_image_is_the_tile_predict_gave(
    crop_server: tuple[Server, Path], ctx_predictor: Predictor
) -> None:
    """What ``stimage client explain IMAGE`` sends (the tile, its neighbours, the tile as
    predict reads it) makes the explained prediction the one ``client predict`` gives it."""
    from stimage.cli._client_tiles import explain_inputs, predict_image
    from stimage.data import open_slide

    server, path = crop_server
    gene = ctx_predictor.bundle.genes[0]
    side = float(round(ctx_predictor.tile_um / 0.69))
    b = (1600.0, 1600.0, side, side)
    image_id = f"{path.resolve()}:{path.stat().st_size}"
    with Client(server.address, timeout=120) as c, open_slide(path, mpp=0.69) as s:
        (tile_feature,) = predict_image(c, path, b, 0.69, None, [gene], 0.5, 64)
        view, around = explain_inputs(c.hello(), s, path, b, None, 0.5)
        res = c.explain(
            [gene], s.read_region(*b), b, s.mpp, image_id=image_id, neighbours=around,
            model_tile=view, method="occlusion",
        )  # fmt: skip
    m = tile_feature["properties"]["measurements"]
    assert res["context_tiles"] == m["Tile: context tiles"] == len(around) == 20
    np.testing.assert_allclose(res["prediction"], [m[f"{gene}: mean"]], rtol=1e-5)
