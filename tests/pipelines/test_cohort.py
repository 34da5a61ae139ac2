"""``stimage predict-slides``: a cohort in-process (and tests/pipelines/test_cohort_ray.py on Ray).

A tiny model and tiny slides (tifffile): a cohort's per-slide outputs are byte for byte
``predict-slide``'s, an interrupted cohort resumes without redoing finished slides, a corrupt
slide fails alone after its retries with its reason in the summary, and the Slurm-array form
(``--only-index``) fills one shared ledger.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import shapely
import torch
from click.testing import CliRunner

from _synth import render_he, tiny_slide_model, write_pyramid_tiff
from qupath._project_helpers import QpImage, make_qpproj, user_annotation
from stimage.cli._main import cli
from stimage.errors import StimageError
from stimage.models import Predictor
from stimage.pipelines import (
    CohortProgress,
    CohortSettings,
    InProcessRunner,
    Ledger,
    ModelSpec,
    RayRunner,
    SlideSpec,
    annotate_project,
    cohort_slides,
    run_cohort,
)
from stimage.pipelines._cohort_ray import _check_reachable
from stimage.qupath import GeoJSONDirProject

MPP = 1.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_slide_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three small H&E-like slides at 1 µm/px (200 µm tiles: a handful each)."""
    d = tmp_path_factory.mktemp("slides")
    for k, (h, w) in enumerate([(800, 1000), (700, 900), (900, 800)]):
        write_pyramid_tiff(d / f"s{k}.tif", render_he(h, w, seed=20 + k), MPP, levels=2)
    return d


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A slide file that is not an image (a truncated download)."""
    p = tmp_path_factory.mktemp("bad") / "broken.tif"
    p.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    return p


def _cli(*args: object) -> object:
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


def _base(model_dir: Path) -> list[object]:
    return ["--model", model_dir, "--device", "cpu", "--batch-size", 2, "--chunk-batches", 1]


def _ledger(out: Path) -> list[dict]:
    return Ledger(out / "ledger.jsonl").events()


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv", newline="") as fh:
        return {r["id"]: r for r in csv.DictReader(fh)}


def _without_ids(path: Path) -> dict:
    """A GeoJSON document with its object ids left out (fresh random UUIDs on every run)."""
    doc = json.loads(path.read_text())
    for f in doc["features"]:
        assert str(f.pop("id")).startswith("5714a9e0-0001-8")
    return doc


def assert_same_outputs(a: Path, b: Path, name_a: str, name_b: str) -> None:
    """GeoJSON equal but for object ids, heatmap PNGs byte for byte, the h5ad's arrays equal."""
    doc = _without_ids(a / f"{name_a}.geojson")
    assert doc == _without_ids(b / f"{name_b}.geojson") and doc["features"]
    x, y = ad.read_h5ad(a / f"{name_a}.h5ad"), ad.read_h5ad(b / f"{name_b}.h5ad")
    assert np.array_equal(x.X, y.X) and list(x.obs_names) == list(y.obs_names)
    assert set(x.layers) == set(y.layers)
    for k in x.layers:
        assert np.array_equal(x.layers[k], y.layers[k]), k
    assert x.obs.equals(y.obs) and x.uns["stimage"] == y.uns["stimage"]
    pa = sorted((a / f"{name_a}.heatmaps").glob("*.png"))
    pb = sorted((b / f"{name_b}.heatmaps").glob("*.png"))
    assert [p.name for p in pa] == [p.name for p in pb] and pa
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(pa, pb, strict=True))


def test_in_process_cohort_equals_predict_slide(
    model_dir: Path, slides: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cohort"
    genes = ModelSpec(model_dir).bundle().genes
    r = _cli("predict-slides", slides, "--out", out, *_base(model_dir), "--heatmaps", genes[0])
    assert r.exit_code == 0, r.output
    assert "3 done, 0 done before, 0 failed" in r.output
    for k in range(3):
        single = tmp_path / f"single{k}"
        r1 = _cli("predict-slide", slides / f"s{k}.tif", "--out", single / f"s{k}.geojson",
                  *_base(model_dir), "--heatmaps", genes[0])  # fmt: skip
        assert r1.exit_code == 0, r1.output
        folder = out / "slides" / f"s{k}"
        assert_same_outputs(folder, single, f"s{k}", f"s{k}")
        meta = json.loads((folder / "run_metadata.json").read_text())
        assert meta["model_id"].startswith("tiny sha256:") and meta["tiles"] > 0
        assert meta["job"]["batch_size"] == 2 and meta["settings"]["heatmaps"] == [genes[0]]
        # Each slide has predict-slide's report too, its links pointing inside the folder.
        page = (folder / f"s{k}.report.html").read_text()
        assert f"<th>tiles predicted</th><td class='n'>{meta['tiles']}</td>" in page
        assert f"href='s{k}.h5ad'" in page and page.count("<img src='data:image/") == 1
    assert not (out / "work").exists() or not any((out / "work").iterdir())  # stores removed
    rows = _summary(out)
    assert [rows[f"s{k}"]["status"] for k in range(3)] == ["done"] * 3
    assert all(float(rows[f"s{k}"]["tiles_per_s"]) > 0 for k in range(3))
    # again: every slide is done before; nothing is predicted
    r2 = _cli("predict-slides", slides, "--out", out, *_base(model_dir), "--heatmaps", genes[0])
    assert r2.exit_code == 0 and "0 done, 3 done before" in r2.output, r2.output
    # settings the outputs depend on are refused on the same folder
    r3 = _cli("predict-slides", slides, "--out", out, *_base(model_dir), "--level", 0.8)
    assert r3.exit_code == 2 and "other settings (heatmaps, level changed)" in r3.output, r3.output


def test_interrupted_cohort_resumes_without_redoing_finished_slides(
    model_dir: Path, slides: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "cohort"
    specs = cohort_slides(slides)
    settings = CohortSettings(batch_size=2, chunk_batches=1)
    model = ModelSpec(model_dir, "cpu")

    def ctrl_c_in_second_slide(slide_id: str, done: int, total: int) -> None:
        if slide_id == "s1" and done >= 4:
            raise KeyboardInterrupt  # Ctrl-C with s0 done and two chunks of s1 written

    with pytest.raises(KeyboardInterrupt):
        run_cohort(specs, out, model, settings, runner=InProcessRunner(ctrl_c_in_second_slide))
    first = out / "slides" / "s0" / "s0.geojson"
    assert first.is_file() and not (out / "slides" / "s1").exists()
    assert len(list((out / "work" / "s1" / "s1.parts").glob("chunk_*.npz"))) == 2
    rows = _summary(out)  # written on the way out
    assert [rows[f"s{k}"]["status"] for k in range(3)] == ["done", "started", "pending"]
    mtime = first.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="stimage.pipelines"):
        outcomes = run_cohort(specs, out, model, settings)
    assert [o.status for o in outcomes] == ["skipped", "done", "done"]
    assert "resuming at chunk 3" in caplog.text  # s1 went on from its store
    assert first.stat().st_mtime_ns == mtime
    done = [e["slide"] for e in _ledger(out) if e["event"] == "done"]
    assert sorted(done) == ["s0", "s1", "s2"]  # each once: s0 was not redone
    # cut off again, then redone with other settings: the stale store is started again
    with pytest.raises(KeyboardInterrupt):
        run_cohort(specs, out, model, settings, overwrite=True,
                   runner=InProcessRunner(ctrl_c_in_second_slide))  # fmt: skip
    other = CohortSettings(batch_size=4, chunk_batches=1)
    outcomes = run_cohort(specs, out, model, other, overwrite=True)
    assert [o.status for o in outcomes] == ["done"] * 3, outcomes
    meta = json.loads((out / "slides" / "s1" / "run_metadata.json").read_text())
    assert meta["job"]["batch_size"] == 4


def test_a_corrupt_slide_fails_alone_after_its_retries(
    model_dir: Path, slides: Path, corrupt: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "cohort.tsv"
    manifest.write_text(
        "slide\tid\tmpp\tpatient\n"
        f"{slides / 's0.tif'}\tA\t\tP1\n"
        f"{corrupt}\tBAD\t0.5\tP2\n"
        f"{slides / 's1.tif'}\tB\t1.0\tP3\n"
    )
    out = tmp_path / "cohort"
    r = _cli("predict-slides", manifest, "--out", out, *_base(model_dir), "--retries", 2)
    assert r.exit_code == 2, r.output
    assert "2 done, 0 done before, 1 failed" in r.output and "failed: BAD:" in r.output
    rows = _summary(out)
    assert rows["A"]["status"] == rows["B"]["status"] == "done"
    assert rows["BAD"]["status"] == "failed" and rows["BAD"]["attempts"] == "3"
    assert "broken.tif" in rows["BAD"]["error"] and "Error" in rows["BAD"]["error"]
    tries = [e for e in _ledger(out) if e["slide"] == "BAD" and e["event"] == "failed"]
    assert [e["attempt"] for e in tries] == [1, 2, 3]  # --retries 2: three attempts, no more
    assert [e["final"] for e in tries] == [False, False, True]
    assert not (out / "slides" / "BAD").exists()
    # retries 0: one attempt only; a rerun tries the failed slide again (it may be fixed)
    r0 = _cli("predict-slides", manifest, "--out", out, *_base(model_dir), "--retries", 0)
    assert r0.exit_code == 2 and "0 done, 2 done before, 1 failed" in r0.output, r0.output
    assert len([e for e in _ledger(out) if e["slide"] == "BAD" and e["event"] == "failed"]) == 4


def test_slurm_array_tasks_share_one_ledger(model_dir: Path, slides: Path, tmp_path: Path) -> None:
    """``--only-index $SLURM_ARRAY_TASK_ID``: each task one slide, the summary of them all."""
    manifest = tmp_path / "cohort.csv"
    names = sorted(p.name for p in slides.glob("*.tif"))
    manifest.write_text("slide\n" + "".join(f"{slides.name}/{n}\n" for n in names))
    manifest = manifest.rename(slides.parent / "cohort.csv")  # paths relative to the manifest
    out = tmp_path / "cohort"
    for task in (2, 0):
        r = _cli("predict-slides", manifest, "--out", out, *_base(model_dir), "--only-index", task)
        assert r.exit_code == 0 and "1 done" in r.output, r.output
    rows = _summary(out)
    assert [rows[f"s{k}"]["status"] for k in range(3)] == ["done", "pending", "done"]
    st = _cli("predict-slides", manifest, "--out", out, "--status")
    assert st.exit_code == 0 and "2 done, 0 failed, 0 started, 1 pending" in st.output, st.output
    # two slides a task: task 0 is s0 (done before) and s1
    r = _cli("predict-slides", manifest, "--out", out, *_base(model_dir), "--only-index", 0,
             "--slides-per-task", 2)  # fmt: skip
    assert r.exit_code == 0 and "1 done, 1 done before" in r.output, r.output
    assert {r["status"] for r in _summary(out).values()} == {"done"}
    bad = _cli("predict-slides", manifest, "--out", out, *_base(model_dir), "--only-index", 3)
    assert bad.exit_code == 2 and "--array=0-2" in bad.output
    bad = _cli("predict-slides", manifest, "--out", out, "--only-index", 2, "--slides-per-task", 2)
    assert bad.exit_code == 2 and "tasks 0 to 1" in bad.output and "--array=0-1" in bad.output


def test_ray_missing_is_one_line_naming_the_fix(
    slides: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as when not installed
    r = _cli("predict-slides", slides, "--out", tmp_path / "o", "--ray", "auto")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "pip install 'stimage[ray]'" in r.output and "leave out --ray" in r.output


def test_ray_addresses_are_checked_before_anything_waits(slides: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    r = _cli("predict-slides", slides, "--out", tmp_path / "o", "--ray", "headnode")
    assert r.exit_code == 2 and "give auto, local, or the head's HOST:PORT" in r.output
    assert not (tmp_path / "o").exists()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StimageError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:"):
        _check_reachable(f"127.0.0.1:{port}", timeout=5)  # Ray alone would retry for minutes


def test_region_and_mpp_columns_reach_the_slide(
    model_dir: Path, slides: Path, tmp_path: Path
) -> None:
    region = tmp_path / "roi.geojson"
    poly = [[[300, 200], [700, 200], [700, 600], [300, 600], [300, 200]]]
    region.write_text(json.dumps({"type": "Polygon", "coordinates": poly}))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"slide,region,mpp\n{slides / 's0.tif'},roi.geojson,1.0\n")
    out = tmp_path / "cohort"
    r = _cli("predict-slides", manifest, "--out", out, *_base(model_dir))
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "slides" / "s0" / "run_metadata.json").read_text())
    assert meta["job"]["region"].startswith("POLYGON") and meta["mpp_given"] == 1.0
    whole = _cli("predict-slide", slides / "s0.tif", "--out", tmp_path / "w.geojson",
                 *_base(model_dir))  # fmt: skip
    assert whole.exit_code == 0
    n_region = len(json.loads((out / "slides/s0/s0.geojson").read_text())["features"])
    assert 0 < n_region < len(json.loads((tmp_path / "w.geojson").read_text())["features"])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread, as each Ray worker of 1 CPU: float sums add up the same way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real local Ray cluster (2 CPUs, no dashboard, on this machine), stopped afterwards.

    Asked for 127.0.0.1; Ray 2.60 still binds its daemons to the machine's address (with its
    token authentication). Held under a lock shared by pytest-xdist's workers, so two
    clusters never run at once.
    """
    ray = pytest.importorskip("ray")
    lock = tmp_path_factory.getbasetemp().parent / "stimage-ray-tests.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1")  # fmt: skip
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.mark.timeout(300)
def test_ray_cohort_matches_in_process_and_survives_a_killed_worker(
    ray_cluster: object, model_dir: Path, slides: Path, corrupt: Path, tmp_path: Path
) -> None:
    """A real local Ray cluster (2 CPUs, started and stopped here), 2 workers.

    One worker process is killed (SIGKILL) once the first slide is done: no finished slide is
    lost or redone, the slide it held is retried on a fresh worker, the cohort completes with
    outputs identical to the in-process run, and the corrupt slide fails alone.
    """
    specs = [*cohort_slides(slides), SlideSpec("BAD", corrupt, index=3)]
    genes = ModelSpec(model_dir).bundle().genes
    settings = CohortSettings(heatmaps=(genes[0],), batch_size=2, chunk_batches=1, retries=1)
    model = ModelSpec(model_dir, "cpu")
    ref = tmp_path / "in-process"
    with one_thread():
        run_cohort(specs, ref, model, settings)
    runner = RayRunner(workers=2, startup_timeout=120)
    killed: list[tuple[int, str]] = []

    def kill_a_worker(p: CohortProgress) -> None:
        if killed or not p.done:
            return
        busy = runner.busy_pids()
        pid = busy[0] if busy else next(q for q in runner.worker_pids() if q)
        os.kill(pid, signal.SIGKILL)
        killed.append((pid, p.last.id if p.last else ""))

    out = tmp_path / "ray"
    outcomes = run_cohort(specs, out, model, settings, runner=runner, on_progress=kill_a_worker)
    assert runner.replaced >= 1
    assert killed, "no worker was killed"
    status = {o.id: o.status for o in outcomes}
    assert status == {"s0": "done", "s1": "done", "s2": "done", "BAD": "failed"}, outcomes
    events = _ledger(out)
    assert any("worker lost" in str(e.get("error")) for e in events), events
    first_done = killed[0][1]
    assert [e["event"] for e in events if e["slide"] == first_done].count("done") == 1
    for k in range(3):
        assert_same_outputs(out / "slides" / f"s{k}", ref / "slides" / f"s{k}", f"s{k}", f"s{k}")
    rows = _summary(out)
    assert rows["BAD"]["status"] == "failed" and "broken.tif" in rows["BAD"]["error"]
    assert {rows[f"s{k}"]["status"] for k in range(3)} == {"done"}


@pytest.mark.timeout(300)
def test_annotate_project_on_ray_matches_in_process(
    ray_cluster: object, model_dir: Path, slides: Path, corrupt: Path, tmp_path: Path
) -> None:
    """``annotate-project --ray``: the images' predictions on 2 Ray workers, objects as in-process."""
    roi = user_annotation(shapely.box(250, 200, 650, 600))
    regions = tmp_path / "regions"
    regions.mkdir()
    (regions / "s1.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [roi]})
    )
    images = [QpImage(slides / f"s{k}.tif", mpp=1.0) for k in range(3)]
    project = make_qpproj(tmp_path / "proj", [*images, QpImage(corrupt, mpp=1.0)])
    local = tmp_path / "local"
    with one_thread():
        res = annotate_project(GeoJSONDirProject(project, local, regions_dir=regions),
                               Predictor(model_dir, device="cpu"), work_dir=local / ".jobs",
                               batch_size=2)  # fmt: skip
    assert [r.status for r in res] == ["done", "done", "done", "failed"]
    r = _cli("annotate-project", project, "--model", model_dir, "--device", "cpu",
             "--batch-size", 2, "--geojson-dir", tmp_path / "ray", "--regions-dir", regions,
             "--work-dir", tmp_path / "ray" / ".jobs", "--ray", "auto", "--workers", 2)  # fmt: skip
    assert r.exit_code == 2, r.output  # the corrupt image failed, reported; the others done
    assert "3 done, 0 skipped, 1 failed" in r.output and "broken.tif" in r.output
    for k in range(3):
        a, b = (tmp_path / w / f"s{k}.geojson" for w in ("local", "ray"))
        assert _without_ids(a) == _without_ids(b)
    assert not (tmp_path / "ray" / ".jobs").exists()  # each store removed once its image is saved
