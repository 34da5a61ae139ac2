"""annotate_project over a test double of a QuPath project, with the tiny test model."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image

from _synth import render_he, write_pyramid_tiff
from qupath._project_helpers import FakeProject, QpImage, make_qpproj, user_annotation
from stimage.models import ModelBundle, Predictor
from stimage.pipelines import SlideJob, annotate_project, model_id
from stimage.qupath import is_stimage_id, tile_features

#: The tiny model (trained once per session in tests/conftest.py) makes this module slow.
pytestmark = pytest.mark.slow

MPP = 1.0


@pytest.fixture(scope="module")
def predictor(bundle: ModelBundle) -> Predictor:
    return Predictor(bundle, device="cpu")


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two 1000 x 800 px H&E-like TIFFs at 1 µm/px and a PNG without a pixel size."""
    d = tmp_path_factory.mktemp("slides")
    png = d / "nompp.png"
    Image.fromarray(render_he(400, 400, seed=9)).save(png)
    return {
        "a": write_pyramid_tiff(d / "a.tif", render_he(800, 1000, seed=3), MPP),
        "b": write_pyramid_tiff(d / "b.tif", render_he(800, 1000, seed=4), MPP),
        "png": png,
    }


def _project(tmp_path: Path, slides: dict[str, Path]) -> tuple[FakeProject, dict[str, str]]:
    qp = make_qpproj(
        tmp_path / "proj",
        [
            QpImage(slides["a"], mpp=MPP),
            QpImage(slides["b"], mpp=MPP),
            QpImage(tmp_path / "missing.tif", mpp=MPP),
            QpImage(slides["png"], mpp=None, width=400, height=400),
        ],
    )
    outer = user_annotation(shapely.box(200, 150, 800, 650), "outer")
    inner = user_annotation(shapely.box(250, 200, 550, 500), "inner")
    mine = {  # a user's own detection, never to be touched
        "type": "Feature",
        "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "geometry": {"type": "Point", "coordinates": [10.0, 10.0]},
        "properties": {"objectType": "detection"},
    }
    proj = FakeProject(qp, {"1": [outer, inner, mine]})
    return proj, {"outer": outer["id"], "inner": inner["id"], "mine": mine["id"]}


def _by_parent(proj: FakeProject, image_id: str) -> dict[str | None, list[dict]]:
    out: dict[str | None, list[dict]] = {}
    for f, parent in proj.objects[image_id]:
        out.setdefault(parent, []).append(f)
    return out


def test_batch_annotations_tissue_skips_and_bad_images(
    predictor: Predictor, slides: dict[str, Path], tmp_path: Path
) -> None:
    proj, ids = _project(tmp_path, slides)
    genes = predictor.bundle.genes[:2]
    work = tmp_path / "work"
    seen: list[str] = []
    res = annotate_project(
        proj,
        predictor,
        work_dir=work,
        genes=genes,
        batch_size=4,
        on_image=lambda k, n, im: seen.append(f"{k}/{n}"),
    )
    assert seen == ["1/4", "2/4", "3/4", "4/4"]
    st = {r.id: r for r in res}
    assert [st[i].status for i in "1234"] == ["done", "done", "failed", "failed"]
    assert "missing" in st["3"].note and "no pixel size" in st["4"].note and "--mpp" in st["4"].note
    assert st["1"].regions == "2 annotation(s)" and st["2"].regions == "tissue"
    assert proj.saved == ["1", "2"]  # failed images are not saved
    assert not work.exists()  # stores of finished images are removed

    # image 1: tiles below the annotation they overlap most; the user's objects untouched
    kids = _by_parent(proj, "1")
    assert {f["id"] for f in kids[None]} >= set(ids.values())
    inner_tiles, outer_tiles = kids.get(ids["inner"], []), kids[ids["outer"]]
    assert (
        inner_tiles
        and outer_tiles
        and st["1"].tiles
        == len(inner_tiles)
        + len(outer_tiles)
        + sum(f["properties"]["objectType"] == "tile" for f in kids[None])
    )
    inner_box = shapely.box(250, 200, 550, 500)
    for f, inside in [(f, True) for f in inner_tiles] + [(f, False) for f in outer_tiles]:
        centre = shapely.Polygon(f["geometry"]["coordinates"][0]).centroid
        assert inner_box.contains(centre) == inside  # QuPath's rule: the centre decides
    for f in inner_tiles + outer_tiles:
        assert is_stimage_id(f["id"]) and f["properties"]["objectType"] == "tile"
        m = f["properties"]["measurements"]
        assert {f"{g}: mean" for g in genes} <= set(m)
        assert not any(k.startswith(f"{predictor.bundle.genes[2]}:") for k in m)
    assert proj.images()[0].metadata["stimage.model"] == model_id(predictor)
    assert proj.images()[0].metadata["stimage.objects"] == f"{st['1'].tiles} tiles"

    # image 2 (no annotations): a locked STImage region holding the tiles
    kids2 = _by_parent(proj, "2")
    (region,) = kids2[None]
    assert region["properties"]["name"] == "STImage region" and region["properties"]["isLocked"]
    assert len(kids2[region["id"]]) == st["2"].tiles > 0

    # a second run skips the finished images and predicts nothing
    before = {k: [f["id"] for f, _ in v] for k, v in proj.objects.items()}
    res2 = annotate_project(proj, predictor, work_dir=work, genes=genes, batch_size=4)
    assert [r.status for r in res2[:2]] == ["skipped", "skipped"]
    assert all(r.note == "already done with this model" for r in res2[:2])
    assert {k: [f["id"] for f, _ in v] for k, v in proj.objects.items()} == before

    # other genes: done with other settings, left alone without --overwrite
    res3 = annotate_project(proj, predictor, work_dir=work, images=["a.tif"], genes=genes[:1])
    assert res3[0].status == "skipped" and "other settings" in res3[0].note
    # --overwrite replaces the STImage objects (new ids) and keeps the user's
    res4 = annotate_project(
        proj,
        predictor,
        work_dir=work,
        images=["id:1"],
        genes=genes[:1],
        overwrite=True,
        batch_size=4,
    )
    assert [r.status for r in res4] == ["done"]
    after = [f for f, _ in proj.objects["1"]]
    assert {f["id"] for f in after if not is_stimage_id(f["id"])} == set(ids.values())
    new_tiles = [f for f in after if is_stimage_id(f["id"])]
    assert len(new_tiles) == st["1"].tiles
    assert not {f["id"] for f in new_tiles} & set(before["1"])
    assert all(
        not any(k.startswith(f"{genes[1]}:") for k in f["properties"]["measurements"])
        for f in new_tiles
    )


def test_foreign_stimage_objects_dry_run_and_mpp(
    predictor: Predictor, slides: dict[str, Path], tmp_path: Path
) -> None:
    qp = make_qpproj(
        tmp_path / "proj", [QpImage(slides["a"], mpp=MPP), QpImage(slides["png"], mpp=None)]
    )
    # STImage objects from elsewhere (e.g. the extension) but no record of a batch run
    foreign = list(tile_features(np.array([[0, 0, 200, 200]]), None))
    proj = FakeProject(qp, {"1": foreign})
    work = tmp_path / "work"
    res = annotate_project(proj, predictor, work_dir=work, dry_run=True, mpp=0.5)
    assert [r.status for r in res] == ["skipped", "to do"]
    assert "STImage objects" in res[0].note and "--overwrite" in res[0].note
    assert proj.saved == [] and proj.replaced == [] and not work.exists()
    res = annotate_project(
        proj, predictor, work_dir=work, images=["nompp.png"], mpp=2.0, batch_size=8
    )
    assert res[0].status in ("done", "failed")
    if res[0].status == "failed":  # a 400 px image at 2 µm/px may hold no full tile of tissue
        assert "tissue" in res[0].note


def test_interrupted_batch_keeps_finished_images_and_resumes(
    predictor: Predictor, slides: dict[str, Path], tmp_path: Path
) -> None:
    qp = make_qpproj(
        tmp_path / "proj", [QpImage(slides["a"], mpp=MPP), QpImage(slides["b"], mpp=MPP)]
    )
    proj = FakeProject(qp)
    work = tmp_path / "work"
    cancel = threading.Event()

    def progress(label: str, done: int, total: int) -> None:
        if label == "b.tif" and done >= 4:
            raise KeyboardInterrupt  # Ctrl-C during the second image

    with pytest.raises(KeyboardInterrupt):
        annotate_project(
            proj,
            predictor,
            work_dir=work,
            batch_size=2,
            chunk_batches=1,
            progress=progress,
            cancel=cancel,
        )
    assert proj.saved == ["1"] and proj.replaced == ["1"]
    # the store of the cut image is kept: a model with spatial context encodes every tile
    # first (four of them encoded, on disk), one without writes chunks of two tiles
    cut = SlideJob.open(work / "image-2")
    if predictor.context is not None:
        assert cut.state["encoded"] == 4 and not list((work / "image-2").glob("chunk_*"))
    else:
        assert sorted(p.name for p in (work / "image-2").glob("chunk_*")) == [
            "chunk_00000.npz",
            "chunk_00001.npz",
        ]
    seen: list[int] = []
    res = annotate_project(
        proj,
        predictor,
        work_dir=work,
        batch_size=2,
        chunk_batches=1,
        progress=lambda lab, d, t: seen.append(d),
    )
    assert [r.status for r in res] == ["skipped", "done"]
    assert seen[0] == 4  # resumed after the four tiles done
    assert proj.saved == ["1", "2"] and not work.exists()


def test_cells_below_their_annotation_without_duplicates(
    predictor: Predictor, slides: dict[str, Path], tmp_path: Path
) -> None:
    qp = make_qpproj(tmp_path / "proj", [QpImage(slides["a"], mpp=MPP)])
    outer = user_annotation(shapely.box(300, 200, 600, 500), "outer")
    inner = user_annotation(shapely.box(350, 250, 450, 350), "inner")
    proj = FakeProject(qp, {"1": [outer, inner]})
    res = annotate_project(proj, predictor, work_dir=tmp_path / "w", cells=True, batch_size=8)
    assert res[0].status == "done" and res[0].cells > 5
    kids = _by_parent(proj, "1")
    for parent, box in ((outer["id"], (300, 200, 600, 500)), (inner["id"], (350, 250, 450, 350))):
        cells = [f for f in kids[parent] if f["properties"]["objectType"] == "cell"]
        assert cells, parent
        for f in cells:
            cx, cy = np.array(f["nucleusGeometry"]["coordinates"][0]).mean(axis=0)
            assert box[0] - 10 <= cx <= box[2] + 10 and box[1] - 10 <= cy <= box[3] + 10
    outer_cells = [f for f in kids[outer["id"]] if f["properties"]["objectType"] == "cell"]
    for f in outer_cells:  # the inner annotation's cells are not repeated in the outer one
        cx, cy = np.array(f["nucleusGeometry"]["coordinates"][0]).mean(axis=0)
        assert not (360 <= cx <= 440 and 260 <= cy <= 340)
    assert proj.images()[0].metadata["stimage.objects"].endswith(f"{res[0].cells} cells")
