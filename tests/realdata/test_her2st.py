"""Checks on the real HER2ST sections in ../shared/data/her2st (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stimage.constants import Key
from stimage.data import check_spots_inside, load_dataset, open_sample_slide
from stimage.tiles import TileSettings, TileStore, detect_tissue, prepare_dataset

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_every_section_reads_with_its_scale_from_the_grid(her2st: Path) -> None:
    ds = load_dataset(her2st)
    assert len(ds) >= 1
    for spec in ds:
        a = spec.load()
        meta = a.uns[Key.UNS]
        assert meta[Key.MPP_SOURCE] == "spot grid"
        assert meta[Key.MPP] == pytest.approx(0.69, abs=0.01), spec.sample_id
        assert a.n_obs > 100 and a.n_vars > 10_000
        assert np.issubdtype(a.X.dtype, np.integer)
        assert Key.CELLTYPE_PROPORTIONS in a.obsm
        with open_sample_slide(a) as slide:
            check_spots_inside(a, *slide.dimensions)
            mask = detect_tissue(slide)
            # Spots were selected as under tissue: nearly all centres must fall on the mask.
            assert mask.contains(a.obsm[Key.SPATIAL]).mean() > 0.97, spec.sample_id


def test_tiles_are_cut_for_every_section(her2st: Path, tmp_path: Path) -> None:
    ds = load_dataset(her2st)
    rep = prepare_dataset(ds, tmp_path / "store", TileSettings(tile_px=64, stain=None))
    store = TileStore(tmp_path / "store")
    assert store.sample_ids == ds.ids
    for s in rep.samples:
        assert s.kept / s.tiles > 0.9, s  # edge spots only are dropped
        tiles = store.tiles(s.sample_id)
        assert tiles.shape == (s.kept, 64, 64, 3)
        assert float(np.asarray(tiles[:16]).mean()) < 215  # tissue, not glass
