from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from stimage.constants import Key
from stimage.data import load_dataset, open_sample_slide, read_her2st
from stimage.errors import ConfigError, InputFileNotFoundError, NoTissueError
from stimage.tiles import TileSettings, TileStore, prepare_dataset

FAST = TileSettings(tile_px=32, stain=None)


def test_prepare_cuts_kept_tiles_exactly_as_a_direct_read(
    legacy_st: tuple[Path, dict], tmp_path: Path
) -> None:
    root, _ = legacy_st
    report = prepare_dataset(load_dataset(root), tmp_path / "store", FAST)
    assert [r.status for r in report.samples] == ["done"]
    store = TileStore(tmp_path / "store")
    assert store.sample_ids == ["S1"] and store.patient_of("S1") == "P1"
    assert store.settings == FAST
    spots = store.spots("S1")
    everything = store.spots("S1", kept_only=False)
    assert everything.n_obs == 79
    kept = everything.obs[Key.KEPT].to_numpy(bool)
    assert spots.n_obs == kept.sum() == report.samples[0].kept
    # Spots on the tissue edge have lower coverage and are dropped with a reason.
    cov = everything.obs[Key.TISSUE_COVERAGE].to_numpy()
    assert (cov[kept] >= 0.7).all() and (cov[~kept] < 0.7).all()
    assert set(everything.obs.loc[~kept, Key.DROP_REASON]) <= {"tissue coverage below 70%"}
    tiles = store.tiles("S1")
    assert tiles.shape == (spots.n_obs, 32, 32, 3)
    # Tiles are 200 µm (the legacy ST pitch) around each spot, resized to 32 px.
    a = read_her2st(root, "S1")
    assert spots.uns[Key.UNS]["tile_um"] == 200
    with open_sample_slide(a) as slide:
        i = 5
        x, y = spots.obsm[Key.SPATIAL][i]
        direct = slide.read_um(x, y, 200, 32)
    np.testing.assert_array_equal(tiles[int(spots.obs[Key.TILE_INDEX].iloc[i])], direct)
    np.testing.assert_array_equal(spots.X.toarray(), a[spots.obs_names].X.toarray())


def test_rerun_skips_finished_samples(legacy_st_two: Path, tmp_path: Path) -> None:
    ds = load_dataset(legacy_st_two)
    prepare_dataset(ds, tmp_path / "s", FAST)
    again = prepare_dataset(ds, tmp_path / "s", FAST)
    assert [r.status for r in again.samples] == ["skipped", "skipped"]
    assert again.kept == sum(TileStore(tmp_path / "s").spots(i).n_obs for i in ("S1", "S2"))


def test_interrupted_run_resumes_where_it_stopped(
    legacy_st: tuple[Path, dict], tmp_path: Path
) -> None:
    root, _ = legacy_st
    ds = load_dataset(root)
    out = tmp_path / "s"
    cancel = threading.Event()
    seen = []

    def progress(sample: str, done: int, total: int) -> None:
        seen.append(done)
        if done >= 32:
            cancel.set()  # stop after the first chunk

    first = prepare_dataset(ds, out, FAST, progress=progress, cancel=cancel)
    assert first.samples[0].status == "cancelled"
    prog = json.loads((out / "samples" / "S1" / "progress.json").read_text())
    assert prog["tiles_done"] == 32 and prog["tiles"] > 32
    with pytest.raises(Exception, match="not complete"):
        TileStore(out).tiles("S1")
    resumed = []
    second = prepare_dataset(ds, out, FAST, progress=lambda s, d, t: resumed.append(d))
    assert second.samples[0].status == "resumed"
    assert resumed[0] == 32, "the resumed run starts at the first unwritten chunk"
    # Same result as an uninterrupted run.
    prepare_dataset(ds, tmp_path / "fresh", FAST)
    np.testing.assert_array_equal(
        TileStore(out).tiles("S1")[:], TileStore(tmp_path / "fresh").tiles("S1")[:]
    )


def test_other_settings_need_overwrite(legacy_st: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = legacy_st
    ds = load_dataset(root)
    prepare_dataset(ds, tmp_path / "s", FAST)
    other = TileSettings(tile_px=48, stain=None)
    with pytest.raises(ConfigError, match="tile_px 32 in the store, 48 now"):
        prepare_dataset(ds, tmp_path / "s", other)
    rep = prepare_dataset(ds, tmp_path / "s", other, overwrite=True)
    assert rep.samples[0].status == "done"
    assert TileStore(tmp_path / "s").tiles("S1").shape[1:] == (48, 48, 3)


def test_no_tile_passes_qc(legacy_st: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = legacy_st
    with pytest.raises(NoTissueError, match="--min-coverage"):
        prepare_dataset(
            load_dataset(root), tmp_path / "s", TileSettings(tile_px=32, stain=None, tile_um=5000)
        )


def test_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFoundError, match="stimage prepare"):
        TileStore(tmp_path)


def test_vahadane_store_records_the_slide_fit(legacy_st: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = legacy_st
    prepare_dataset(
        load_dataset(root),
        tmp_path / "s",
        TileSettings(tile_px=32, stain="vahadane", stain_patches=4),
    )
    store = TileStore(tmp_path / "s")
    norm = store.normalizer("S1")
    assert norm is not None and norm.method == "vahadane"
    tiles = np.asarray(store.tiles("S1")[:8])
    assert tiles.dtype == np.uint8 and tiles.std() > 5  # normalised tissue, not blank


@pytest.fixture
def four_sections(tmp_path: Path) -> Path:
    """A HER2ST-layout folder with sections B4 (patient B), C2, C3 and C4 (patient C)."""
    from _synth import make_legacy_st

    root = tmp_path / "st4"
    for i, section in enumerate(("B4", "C2", "C3", "C4")):
        make_legacy_st(root, section, section[0], seed=i + 1, grid=(4, 5))
    return root


def _sample_state(out: Path, sample: str) -> tuple[str, np.ndarray]:
    return (
        (out / "samples" / sample / "done.json").read_text(),
        np.asarray(TileStore(out).tiles(sample)[:]),
    )


def test_overwrite_of_some_samples_rebuilds_only_those(four_sections: Path, tmp_path: Path) -> None:
    # Hardening item 11: `prepare --samples B4 --overwrite` deleted C2, C3 and C4.
    ds = load_dataset(four_sections)
    out = tmp_path / "store"
    prepare_dataset(ds, out, FAST)
    manifest = json.loads((out / "store.json").read_text())
    others = ("C2", "C3", "C4")
    before = {s: _sample_state(out, s) for s in others}
    for s in ("B4", *others):
        (out / "samples" / s / "marker").write_text("untouched")

    rep = prepare_dataset(ds.select(["B4"]), out, FAST, overwrite=True)

    assert [(r.sample_id, r.status) for r in rep.samples] == [("B4", "done")]
    assert not (out / "samples" / "B4" / "marker").exists(), "B4 was rebuilt"
    store = TileStore(out)
    assert store.sample_ids == ["B4", "C2", "C3", "C4"]
    assert json.loads((out / "store.json").read_text()) == manifest
    for s in others:
        assert (out / "samples" / s / "marker").read_text() == "untouched"
        done, tiles = _sample_state(out, s)
        assert done == before[s][0]
        np.testing.assert_array_equal(tiles, before[s][1])
        assert store.spots(s).n_obs == manifest["samples"][s]["kept"]


def test_overwrite_with_other_settings_refuses_to_drop_unselected_samples(
    four_sections: Path, tmp_path: Path
) -> None:
    ds = load_dataset(four_sections)
    out = tmp_path / "store"
    prepare_dataset(ds.select(["B4", "C2", "C3"]), out, FAST)
    manifest = (out / "store.json").read_text()
    other = TileSettings(tile_px=48, stain=None)
    # A store has one set of settings: rebuilding B4 alone with 48 px tiles would mean
    # deleting C2 and C3, so it is refused and nothing changes.
    with pytest.raises(ConfigError, match=r"tile_px 32 in the store, 48 now.*C2, C3"):
        prepare_dataset(ds.select(["B4", "C4"]), out, other, overwrite=True)
    assert (out / "store.json").read_text() == manifest
    assert TileStore(out).sample_ids == ["B4", "C2", "C3"]
    assert TileStore(out).tiles("C2").shape[1:] == (32, 32, 3)
    # Given every sample of the store (and more), the store is rebuilt with the new settings.
    rep = prepare_dataset(ds, out, other, overwrite=True)
    assert [r.status for r in rep.samples] == ["done"] * 4
    store = TileStore(out)
    assert store.sample_ids == ["B4", "C2", "C3", "C4"] and store.settings == other
    assert store.tiles("C2").shape[1:] == (48, 48, 3)


def test_a_default_tile_size_reads_as_the_spot_pitch() -> None:
    from stimage.tiles._store import _diff

    text = _diff({"tile_um": None, "tile_px": 224}, {"tile_um": 150.0, "tile_px": 224})
    assert text == "tile_um the spot pitch (default) in the store, 150.0 now"
