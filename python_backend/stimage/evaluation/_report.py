"""Writing a cross-validation's results: tables, summary JSON and the plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.constants import Key

if TYPE_CHECKING:
    from stimage.evaluation._cv import CVResult
    from stimage.training import SpotSet

__all__ = ["write_report"]

logger = logging.getLogger(__name__)


def write_report(
    result: CVResult,
    spots: SpotSet,
    out: Path,
    *,
    extra: dict[str, Any] | None = None,
    top_genes: int = 4,
) -> dict[str, Any]:
    """Write ``genes.csv``, ``coverage.csv``, ``summary.json`` and the plots into ``out``.

    Plots: per gene set, box plots of per-section PCC by method; per held-out section,
    truth / prediction / epistemic / aleatoric maps over the H&E for the genes ``nb`` predicts
    best there (with their PCC); the calibration of ``nb``'s intervals.
    """
    from stimage.evaluation._plots import calibration_plot, pcc_boxplot

    out.mkdir(parents=True, exist_ok=True)
    result.genes.to_csv(out / "genes.csv", index=False)
    result.coverage.to_csv(out / "coverage.csv", index=False)
    summary = result.summary()
    doc: dict[str, Any] = {
        "summary": summary.to_dict(orient="records"),
        "timings_s": result.timings,
        "gene_sets": result.gene_sets,
        **(extra or {}),
    }
    if not result.coverage.empty:
        doc["coverage"] = result.coverage.groupby("level")["observed"].mean().to_dict()
        if "observed_pit" in result.coverage:
            doc["coverage_pit"] = result.coverage.groupby("level")["observed_pit"].mean().to_dict()
    nb = result.genes[result.genes["method"] == "nb"]
    if len(nb):
        cols = [
            c
            for c in ("epistemic_error_spearman", "total_error_spearman", "ause_epistemic", "auc")
            if c in nb
        ]
        doc["nb_uncertainty"] = {c: float(nb[c].mean()) for c in cols}
    (out / "summary.json").write_text(json.dumps(doc, indent=1, default=float))
    exploded = result.genes.assign(gene_set=result.genes["gene_sets"].str.split(",")).explode(
        "gene_set"
    )
    for gs, df in exploded.groupby("gene_set"):
        pcc_boxplot(df, str(gs), path=out / f"pcc_{gs}.png")
    if not result.coverage.empty:
        tables = {}
        for col, label in (("observed", "interval of counts"), ("observed_pit", "randomised PIT")):
            if col in result.coverage:
                cov = result.coverage.groupby("level")[col].mean()
                tables[label] = pd.DataFrame(
                    {"nominal": cov.index.to_numpy(), "observed": cov.to_numpy()}, index=cov.index
                )
        calibration_plot(tables, path=out / "calibration.png")
    for section, p in result.predictions.items():
        if "nb" not in p:
            continue
        _maps(section, p, spots, nb, out / f"maps_{section}.png", top_genes)
    return doc


def _maps(
    section: str, p: dict[str, Any], spots: SpotSet, nb: pd.DataFrame, path: Path, k: int
) -> None:
    from stimage.data import open_sample_slide
    from stimage.evaluation._plots import expression_maps

    a = spots.adatas[section]
    sec = nb[nb["section"] == section].sort_values("pcc", ascending=False)
    genes = [g for g in sec["gene"].tolist() if g in p["genes"]][:k]
    if not genes:
        return
    idx = [p["genes"].index(g) for g in genes]
    with open_sample_slide(a) as slide:
        thumb = slide.thumbnail(max_side=1200)
        scale = thumb.shape[1] / slide.dimensions[0]
        um_per_px = slide.mpp / scale
    xy = np.asarray(a.obsm[Key.SPATIAL]) * scale
    pcc = dict(zip(sec["gene"], sec["pcc"], strict=False))
    names = [f"{g} (PCC {pcc[g]:.2f})" for g in genes]
    values = {
        "truth": p["truth"][:, idx],
        "prediction": p["nb"][:, idx],
        "epistemic sd": p["epistemic_sd"][:, idx],
        "aleatoric sd": p["aleatoric_sd"][:, idx],
    }
    expression_maps(thumb, xy, values, names, um_per_px=um_per_px, path=path)
