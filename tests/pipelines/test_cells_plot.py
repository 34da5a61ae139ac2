"""The cells overlay shows each cell's type and how sure it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from tests._synth import render_he

from stimage.data import ArraySlide
from stimage.models import default_celltype_model_path, load_celltype_model
from stimage.pipelines import detect_cells, plot_cells
from stimage.pipelines._cells import UNCERTAIN_ENTROPY


def test_overlay_draws_uncertain_cells_dashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rgb = render_he(600, 600, seed=4, nuclei_per_mpx=2500)
    slide = ArraySlide(rgb, 0.5)
    cells = detect_cells(
        slide, (0, 0, 600, 600), model=load_celltype_model(default_celltype_model_path())
    )
    assert len(cells) > 20
    entropy = cells.types["entropy"].to_numpy()
    figs: list[Figure] = []
    real = Figure.savefig

    def keep(self: Figure, *a: object, **k: object) -> None:
        figs.append(self)
        real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(Figure, "savefig", keep)
    out = plot_cells(slide, cells, tmp_path / "cells.png")
    assert out.is_file() and out.stat().st_size > 10_000
    ax = figs[0].axes[0]
    drawn = {}
    for coll in ax.collections:
        dashes = coll.get_linestyle()[0][1]
        drawn["dashed" if dashes else "solid"] = (len(coll.get_paths()), coll.get_linewidth())
    n_unsure = int((entropy >= UNCERTAIN_ENTROPY).sum())
    assert drawn.get("dashed", (0,))[0] == n_unsure
    assert drawn.get("solid", (0,))[0] == len(cells) - n_unsure
    # Line width follows certainty: the surest cell has the thickest outline.
    widths = np.concatenate([w for _, w in drawn.values()])
    assert widths.max() == pytest.approx(0.5 + 1.5 * (1 - entropy.min()), abs=1e-6)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-1] == f"dashed: uncertain {n_unsure / len(cells):.0%}"
    assert "certainty" in ax.get_title()


def test_overlay_without_types_draws_plain_outlines(tmp_path: Path) -> None:
    rgb = render_he(300, 300, seed=5, nuclei_per_mpx=2500)
    slide = ArraySlide(rgb, 0.5)
    cells = detect_cells(slide, (0, 0, 300, 300), model=None)
    assert len(cells) > 3
    assert plot_cells(slide, cells, tmp_path / "n.png").is_file()
