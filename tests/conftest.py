"""Shared fixtures; the data makers live in ``_synth.py`` (importable from tests).

Everything is generated small and seeded; no test needs ../shared except those marked
``realdata``, which skip without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _synth import her2st_root, make_legacy_st, render_he, write_pyramid_tiff


@pytest.fixture
def her2st() -> Path:
    p = her2st_root()
    if p is None:
        pytest.skip(
            "real HER2ST data not found (set STIMAGE_HER2ST or provide ../shared/data/her2st)"
        )
    return p


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoded-image caches of tests go to a temporary folder, never ~/.cache."""
    monkeypatch.setenv("STIMAGE_CACHE", str(tmp_path_factory.getbasetemp() / "stimage-cache"))


@pytest.fixture(scope="session")
def _he_image() -> np.ndarray:
    return render_he(1200, 1600, seed=1)


@pytest.fixture
def he_image(_he_image: np.ndarray) -> np.ndarray:
    """A 1200 x 1600 synthetic H&E image (a fresh copy per test)."""
    return _he_image.copy()


@pytest.fixture
def pyramid_tiff(tmp_path: Path, he_image: np.ndarray) -> Path:
    """A 3-level tiled pyramidal TIFF at 0.5 µm/px."""
    return write_pyramid_tiff(tmp_path / "slide.tif", he_image, 0.5)


@pytest.fixture
def legacy_st(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    """A HER2ST-layout folder with one synthetic section ``S1`` of patient ``P1``."""
    root = tmp_path / "st"
    info = make_legacy_st(root)
    return root, info


@pytest.fixture
def legacy_st_two(tmp_path: Path) -> Path:
    """A HER2ST-layout folder with sections S1 (patient P1) and S2 (patient P2)."""
    root = tmp_path / "st2"
    make_legacy_st(root, "S1", "P1", seed=1)
    make_legacy_st(root, "S2", "P2", seed=2, grid=(6, 7))
    return root
