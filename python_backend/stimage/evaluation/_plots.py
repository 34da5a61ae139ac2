"""Figures of an evaluation: expression maps over the H&E, PCC box plots, calibration.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas attached to each
figure, so nothing here touches pyplot or the global backend. Each function returns the
figure and, given ``path``, also saves it (the format follows the file's suffix).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.errors import ConfigError, InvalidSampleError, SpotMismatchError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import EllipseCollection
    from matplotlib.figure import Figure

__all__ = ["calibration_plot", "expression_maps", "pcc_boxplot"]

logger = logging.getLogger(__name__)

_SCALE_BAR_MM = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 20.0)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: str | os.PathLike[str] | None, dpi: int) -> Figure:
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=dpi, bbox_inches="tight", pad_inches=0.1)
        logger.debug("saved figure %s", p)
    return fig


def _as_columns(v: Any, n_spots: int, title: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != n_spots:
        raise SpotMismatchError(
            f"values {title!r} have shape {np.shape(v)}; expected ({n_spots},) or ({n_spots}, n_genes) "
            "for the spots of spot_xy_thumb"
        )
    return a


def _limits(*arrays: np.ndarray) -> tuple[float, float]:
    v = np.concatenate([a.ravel() for a in arrays])
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, [1, 99])
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 0.5, float(lo) + 0.5)


def _scale_bar(ax: Axes, um_per_px: float, width_px: float) -> None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    target_mm = width_px * um_per_px / 1000 / 4
    mm = max([m for m in _SCALE_BAR_MM if m <= target_mm], default=_SCALE_BAR_MM[0])
    # Below the map, in a margin of its own: never over the tissue it measures.
    bar = AnchoredSizeBar(
        ax.transData, mm * 1000 / um_per_px, f"{mm:g} mm", "upper right",
        pad=0.1, borderpad=0.0, sep=2, frameon=False, color="black",
        size_vertical=max(width_px / 150, 1.0), bbox_to_anchor=(1.0, 0.0),
        bbox_transform=ax.transAxes,
    )  # fmt: skip
    ax.add_artist(bar)


def expression_maps(
    he_thumbnail: np.ndarray,
    spot_xy_thumb: np.ndarray,
    values: Mapping[str, np.ndarray],
    genes: Sequence[str] | None = None,
    *,
    shared: Sequence[str] = ("truth", "prediction"),
    um_per_px: float | None = None,
    spot_diameter: float | None = None,
    cmaps: Mapping[str, str] | None = None,
    crop: bool = True,
    panel_size: float = 3.0,
    path: str | os.PathLike[str] | None = None,
    dpi: int = 150,
    alpha: float = 0.6,
    units: Mapping[str, str] | None = None,
) -> Figure:
    """Maps of truth, prediction and uncertainties as coloured spots over the H&E, one row per gene.

    Panels named in ``shared`` (case-insensitive; by default truth and prediction) share one
    colour scale per gene, so a pathologist compares like with like; every other panel
    (epistemic sd, aleatoric sd...) has its own. Scales run from the 1st to the 99th percentile.
    Every panel has a colour bar; the first panel of each row has a scale bar when
    ``um_per_px`` is given.

    Args:
        he_thumbnail: ``(h, w, 3)`` RGB thumbnail of the slide (uint8 or floats in [0, 1]).
        spot_xy_thumb: ``(n, 2)`` spot centres ``(x, y)`` in thumbnail pixels.
        values: Panel title -> ``(n,)`` or ``(n, n_genes)`` values, in column order, e.g.
            ``{"truth": y, "prediction": mu, "epistemic sd": e, "aleatoric sd": a}``.
        genes: Gene names of the rows (default ``gene 1``...).
        shared: Titles of panels that share a colour scale.
        um_per_px: µm per thumbnail pixel, for the scale bar (none without it).
        spot_diameter: Spot diameter in thumbnail pixels (default: the median distance to the
            nearest spot, so neighbours touch).
        cmaps: Title -> colormap name (default viridis for shared panels, magma otherwise).
        crop: Zoom to the spots rather than show the whole thumbnail.
        panel_size: Size of one panel in inches.
        path: Where to save the figure.
        dpi: Resolution of the saved figure.
        alpha: Opacity of the spots (the H&E shows through).
        units: Title -> colour-bar label (default: ``log1p(counts per 10k)`` for shared
            panels, ``sd of log1p(counts per 10k)`` for the others).

    Returns:
        The figure: ``n_genes x n_panels`` map axes, each with a colour-bar axes.

    Raises:
        SpotMismatchError: Values or positions are not for the same spots.
        InvalidSampleError: No values, or gene names that do not match the columns.

    Example:
        >>> xy = np.array([[10.0, 10], [20, 10], [10, 20], [20, 20]])
        >>> he = np.full((32, 32, 3), 230, np.uint8)
        >>> fig = expression_maps(he, xy, {"truth": [1, 2, 3, 4.0], "prediction": [1, 3, 2, 4.0]})
        >>> len(fig.axes)
        4
    """
    xy, cols, names = _map_values(spot_xy_thumb, values, genes)
    shared_l = {s.lower() for s in shared}
    in_shared = [t for t in cols if t.lower() in shared_l]
    if spot_diameter is None:
        spot_diameter = _nearest_distance(xy)
    he = np.asarray(he_thumbnail)
    titles = list(cols)
    fig = _figure(panel_size * len(titles) * 1.2, panel_size * len(names))
    axes = fig.subplots(len(names), len(titles), squeeze=False)
    for i, gene in enumerate(names):
        shared_lim = _limits(*(cols[t][:, i] for t in in_shared)) if in_shared else None
        for j, title in enumerate(titles):
            ax = axes[i, j]
            v = cols[title][:, i]
            is_shared = title in in_shared
            vmin, vmax = shared_lim if is_shared and shared_lim else _limits(v)
            cmap = (cmaps or {}).get(title, "viridis" if is_shared else "magma")
            spots = _spot_map(ax, he, xy, v, spot_diameter, cmap, (vmin, vmax), crop)
            spots.set_alpha(alpha)
            if i == 0:
                ax.set_title(title)
            if j == 0:
                ax.set_ylabel(gene, fontsize="large")
                if um_per_px:
                    x0, x1 = ax.get_xlim()
                    _scale_bar(ax, um_per_px, abs(x1 - x0))
            unit = (units or {}).get(
                title, "log1p(counts per 10k)" if is_shared else "sd of log1p(counts per 10k)"
            )
            bar = fig.colorbar(spots, ax=ax, shrink=0.8)
            if bar.solids is not None:  # the scale in full colour, the spots see-through
                bar.solids.set_alpha(1.0)
            bar.set_label(unit, fontsize="small")
    return _finish(fig, path, dpi)


def _map_values(
    spot_xy_thumb: np.ndarray, values: Mapping[str, np.ndarray], genes: Sequence[str] | None
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """Spot positions, panel title -> ``(n, n_genes)`` values, and gene names, checked."""
    xy = np.asarray(spot_xy_thumb, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise InvalidSampleError(f"spot_xy_thumb must be (n, 2) positions, got shape {xy.shape}")
    if not values:
        raise InvalidSampleError("no values to draw; give e.g. {'truth': ..., 'prediction': ...}")
    cols = {t: _as_columns(v, xy.shape[0], t) for t, v in values.items()}
    n_genes = {a.shape[1] for a in cols.values()}
    if len(n_genes) != 1:
        raise InvalidSampleError(f"panels have different numbers of genes: {sorted(n_genes)}")
    g = n_genes.pop()
    names = [f"gene {k + 1}" for k in range(g)] if genes is None else [str(x) for x in genes]
    if len(names) != g:
        raise InvalidSampleError(f"{len(names)} gene names for {g} columns of values")
    return xy, cols, names


def _spot_map(
    ax: Axes,
    he: np.ndarray,
    xy: np.ndarray,
    v: np.ndarray,
    diameter: float,
    cmap: str,
    limits: tuple[float, float],
    crop: bool,
) -> EllipseCollection:
    """Spots coloured by ``v`` over the H&E on a bare axes (no ticks or frame)."""
    from matplotlib.collections import EllipseCollection
    from matplotlib.colors import Normalize

    ax.imshow(he, zorder=0)
    spots = EllipseCollection(
        diameter, diameter, 0.0, units="xy", offsets=xy, offset_transform=ax.transData,
        cmap=cmap, norm=Normalize(*limits), zorder=1,
    )  # fmt: skip
    spots.set_array(v)
    ax.add_collection(spots)
    if crop and len(xy):
        ax.set_xlim(xy[:, 0].min() - diameter, xy[:, 0].max() + diameter)
        ax.set_ylim(xy[:, 1].max() + diameter, xy[:, 1].min() - diameter)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    return spots


def _nearest_distance(xy: np.ndarray) -> float:
    if len(xy) < 2:
        return 10.0
    from scipy.spatial import cKDTree

    d, _ = cKDTree(xy).query(xy, k=2)
    nn = d[:, 1][d[:, 1] > 0]
    return float(np.median(nn)) if nn.size else 10.0


def pcc_boxplot(
    df: pd.DataFrame,
    gene_set: str | None = None,
    *,
    methods: Sequence[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    dpi: int = 150,
) -> Figure:
    """Box plots of per-gene PCC: one box per method in each held-out section.

    Args:
        df: Columns ``section``, ``method``, ``gene``, ``pcc`` (NaN rows, i.e. constant genes,
            are left out and counted in the log); a ``gene_set`` column names the gene set when
            ``gene_set`` is not given.
        gene_set: Gene-set name for the title.
        methods: Order (and choice) of methods; default their order of appearance.
        path: Where to save the figure.
        dpi: Resolution of the saved figure.

    Returns:
        The figure (one axes).

    Raises:
        InvalidSampleError: Columns are missing.

    Example:
        >>> df = pd.DataFrame({"section": ["A", "A", "B", "B"], "method": ["stimage"] * 4,
        ...                    "gene": ["x", "y", "x", "y"], "pcc": [0.4, 0.2, 0.5, 0.1]})
        >>> len(pcc_boxplot(df, "hvg50").axes)
        1
    """
    from matplotlib.patches import Patch

    missing = {"section", "method", "gene", "pcc"} - set(df.columns)
    if missing:
        raise InvalidSampleError(
            f"PCC table lacks columns {sorted(missing)}; it needs section, method, gene, pcc"
        )
    ok = df[np.isfinite(df["pcc"].to_numpy(dtype=np.float64))]
    if len(ok) < len(df):
        logger.info(
            "PCC box plot: %d of %d gene rows are NaN (constant genes), left out",
            len(df) - len(ok),
            len(df),
        )
    if gene_set is None and "gene_set" in df.columns:
        gene_set = ", ".join(map(str, pd.unique(df["gene_set"])))
    meths = list(pd.unique(df["method"])) if methods is None else list(methods)
    sections = sorted(pd.unique(df["section"]), key=str)
    m = max(len(meths), 1)
    width = 0.8 / m
    fig = _figure(max(4.0, 0.5 + len(sections) * (0.35 * m + 0.3)), 4.0)
    ax = fig.subplots()
    colours = [f"C{k % 10}" for k in range(m)]
    for k, meth in enumerate(meths):
        data, pos = [], []
        for s_i, sec in enumerate(sections):
            v = ok.loc[(ok["section"] == sec) & (ok["method"] == meth), "pcc"].to_numpy(
                dtype=np.float64
            )
            if v.size:
                data.append(v)
                pos.append(s_i - 0.4 + width * (k + 0.5))
        if data:
            bp = ax.boxplot(
                data, positions=pos, widths=width * 0.9, patch_artist=True, manage_ticks=False,
                flierprops={"markersize": 2}, medianprops={"color": "black"},
            )  # fmt: skip
            for box in bp["boxes"]:
                box.set_facecolor(colours[k])
                box.set_alpha(0.8)
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(sections)))
    ax.set_xticklabels([str(s) for s in sections], rotation=90 if len(sections) > 8 else 0)
    ax.set_xlim(-0.6, len(sections) - 0.4)
    ax.set_xlabel("held-out section")
    ax.set_ylabel("PCC per gene")
    ax.set_title(f"PCC per gene{f' ({gene_set})' if gene_set else ''}")
    handles = [Patch(facecolor=c, label=str(mt)) for c, mt in zip(colours, meths, strict=False)]
    ax.legend(
        handles=handles,
        fontsize="small",
        frameon=False,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    return _finish(fig, path, dpi)


def calibration_plot(
    coverage: pd.DataFrame | Mapping[str, pd.DataFrame],
    *,
    title: str = "Calibration of predictive intervals",
    path: str | os.PathLike[str] | None = None,
    dpi: int = 150,
) -> Figure:
    """Observed against nominal coverage of central intervals; the diagonal is perfect.

    Args:
        coverage: A :func:`~stimage.evaluation._metrics.coverage_curve` table (``nominal``,
            ``observed``, then per-gene columns, drawn as an interquartile band), or
            label -> such a table to compare models.
        title: Axes title.
        path: Where to save the figure.
        dpi: Resolution of the saved figure.

    Returns:
        The figure (one axes). Below the diagonal: overconfident intervals.

    Raises:
        ConfigError: A table lacks ``nominal`` or ``observed``.

    Example:
        >>> cov = pd.DataFrame({"nominal": [0.5, 0.9], "observed": [0.4, 0.8]})
        >>> len(calibration_plot(cov).axes)
        1
    """
    tables = {"model": coverage} if isinstance(coverage, pd.DataFrame) else dict(coverage)
    fig = _figure(4.2, 4.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="ideal")
    for k, (label, df) in enumerate(tables.items()):
        if not {"nominal", "observed"} <= set(df.columns):
            raise ConfigError(
                f"coverage table {label!r} needs columns 'nominal' and 'observed' (coverage_curve)"
            )
        d = df.sort_values("nominal")
        x = d["nominal"].to_numpy(dtype=np.float64)
        genes = d.drop(columns=["nominal", "observed"]).to_numpy(dtype=np.float64)
        if genes.shape[1] > 1:
            with warnings.catch_warnings():  # levels where every gene is NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                q1, q3 = np.nanpercentile(genes, [25, 75], axis=1)
            ax.fill_between(x, q1, q3, color=f"C{k % 10}", alpha=0.2, linewidth=0)
        ax.plot(
            x,
            d["observed"].to_numpy(dtype=np.float64),
            marker="o",
            color=f"C{k % 10}",
            label=str(label),
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage")
    ax.set_title(title)
    ax.legend(fontsize="small", frameon=False, loc="upper left")
    return _finish(fig, path, dpi)
