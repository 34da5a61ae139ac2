"""Explain one model tile by its nuclei: the one explain pipeline of the CLI and the server.

Segment the tile's nuclei at full detail, cut the tile as the model sees it (the same stain
normalisation as prediction), score every nucleus with LIME or occlusion, and draw the
overlay or write the QuPath objects. The server runs the same function with its own model
function (tiles batched on its device thread) and, for pixels a client sent, the image
seen as a slide (:class:`stimage.data.ArraySlide`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stimage.errors import ConfigError
from stimage.explain import TARGETS, Nuclei, NucleusExplanation
from stimage.pipelines._explain_context import NeighbourTiles, held_context, slide_neighbours

if TYPE_CHECKING:
    from stimage.data import Slide
    from stimage.models import Predictor
    from stimage.tiles import StainNormalizer

__all__ = [
    "TileExplanation",
    "explain_tile",
    "plot_explanation",
    "score_name",
    "target_function",
    "tile_box",
    "write_explanation_geojson",
]

logger = logging.getLogger(__name__)

METHODS = ("lime", "occlusion")


def target_function(
    predictor: Predictor,
    genes: list[str],
    kind: str = "mean",
    features: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
) -> tuple[list[str], Callable[[np.ndarray], np.ndarray]]:
    """The function explained: uint8 tiles ``(n, h, w, 3)`` -> ``(n, len(genes))`` outputs.

    Args:
        predictor: A loaded model.
        genes: Genes to explain (checked against the model).
        kind: ``mean`` (predicted log-normalised expression) or ``p_high``.
        features: Tiles -> the features the model's heads read (default: each tile alone;
            a context model's neighbours held fixed: :func:`held_context`).

    Returns:
        Target names and the function.

    Raises:
        UnknownGeneError: A gene the model does not predict.
        ConfigError: ``p_high`` for a gene without a high/low classifier.
    """
    if kind not in TARGETS:
        raise ConfigError(f"unknown explanation target {kind!r}; use one of {TARGETS}")
    genes = predictor.bundle.check_genes(list(genes))
    if not genes:
        raise ConfigError("name at least one gene to explain")
    bundle = predictor.bundle
    if features is None:

        def features(tiles: np.ndarray) -> dict[str, np.ndarray]:
            return predictor.joined_features(predictor.features(tiles))[0]  # each tile alone

    if kind == "mean":

        def fn(tiles: np.ndarray) -> np.ndarray:
            pred = bundle.predict_features(features(tiles)).subset(genes)
            return np.asarray(pred.mean, dtype=np.float64)

        return list(genes), fn
    clf = bundle.classifier
    missing = [g for g in genes if clf is None or g not in clf.genes]
    if missing:
        raise ConfigError(
            f"model {bundle.name!r} has no high/low classifier for {missing}; explain their mean instead"
        )
    assert clf is not None
    cols = [clf.genes.index(g) for g in genes]

    def fn_high(tiles: np.ndarray) -> np.ndarray:
        probs = bundle.predict_high(features(tiles))
        assert probs is not None
        return np.asarray(probs[:, cols], dtype=np.float64)

    return [f"{g} P(high)" for g in genes], fn_high


@dataclass
class TileExplanation:
    """A tile, its nuclei (full-resolution pixels) and their scores.

    Attributes:
        box: ``(x, y, w, h)`` of the tile in full-resolution pixels.
        nuclei: The nuclei whose centre lies in the tile.
        explanation: Scores per nucleus and target.
        tile: The tile as the model saw it (cut, resized, stain-normalised).
        labels: The tile's nucleus label image (``i + 1`` = nucleus ``i``).
        context_tiles: For a model with spatial context, the neighbouring tiles held fixed
            while the tile was perturbed (0: explained alone); None without context.
    """

    box: tuple[float, float, float, float]
    nuclei: Nuclei
    explanation: NucleusExplanation
    tile: np.ndarray
    labels: np.ndarray
    context_tiles: int | None = None


def tile_box(
    slide: Slide, tile_um: float, spec: Sequence[float]
) -> tuple[float, float, float, float]:
    """A tile box from ``(cx, cy)`` (centre; the model's tile size) or ``(x, y, w, h)``.

    Raises:
        ConfigError: Wrong number of values, or a box outside the image.
    """
    vals = [float(v) for v in spec]
    if len(vals) == 2:
        side = tile_um / slide.mpp
        box = (vals[0] - side / 2, vals[1] - side / 2, side, side)
    elif len(vals) == 4:
        box = (vals[0], vals[1], vals[2], vals[3])
    else:
        raise ConfigError(
            f"a tile is CX,CY (its centre) or X,Y,W,H in full-resolution pixels; got {spec}"
        )
    x, y, w, h = box
    width, height = slide.dimensions
    if w <= 0 or h <= 0:
        raise ConfigError(f"tile {box} has no area")
    if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
        raise ConfigError(
            f"tile {tuple(round(v) for v in box)} lies outside the image ({width} x {height} px); "
            "give coordinates in full-resolution pixels"
        )
    return box


#: Marks "fit the model's stain normaliser on the slide's tissue" (the CLI's default).
FIT_ON_SLIDE = "slide"
#: Marks "read the explained tile's neighbours from the slide" (a model with spatial context).
FROM_SLIDE = "slide"


def explain_tile(
    predictor: Predictor,
    slide: Slide,
    box: tuple[float, float, float, float],
    genes: list[str],
    *,
    target: str = "mean",
    method: str = "lime",
    num_samples: int = 1000,
    segmenter: str = "classical",
    seed: int = 0,
    batch_size: int = 50,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    model_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    encode: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
    neighbours: NeighbourTiles | str | None = FROM_SLIDE,
    model_tile: np.ndarray | None = None,
    normalizer: StainNormalizer | str | None = FIT_ON_SLIDE,
    origin: tuple[float, float] = (0.0, 0.0),
    downsample: float = 1.0,
) -> TileExplanation:
    """Explain the model's prediction for one tile by its nuclei.

    Nuclei are segmented at full detail in the tile's own pixels (so every way in finds the
    same nuclei in the same pixels) and rasterised onto the model's input grid; the tile is
    cut and stain-normalised exactly as for prediction. For a model with spatial context the
    tile's neighbours are encoded once and held fixed while the tile is perturbed
    (:mod:`stimage.pipelines._explain_context`), so the explained prediction is the tile's.

    Args:
        predictor: The model.
        slide: The slide, or an image as one (:class:`stimage.data.ArraySlide`).
        box: Tile ``(x, y, w, h)`` in the slide's pixels (see :func:`tile_box`).
        genes: Genes to explain, all from one set of perturbations.
        target: ``mean`` or ``p_high``.
        method: ``lime`` or ``occlusion``.
        num_samples: LIME's perturbations.
        segmenter: Nucleus segmentation backend.
        seed: LIME's seed.
        batch_size: Tiles per model call.
        progress: Called with (done, total) model inputs.
        cancel: Set to stop between batches.
        model_fn: Tiles -> ``(n, len(genes))`` outputs of ``target``, for a model without
            context (default: the model; the server's is batched on its device).
        encode: Tiles -> features per encoder, for a model with context (default: the model).
        neighbours: For a model with context: :data:`FROM_SLIDE` (read around the box), the
            tiles around it (centres in ``slide``'s pixels), or None (the tile alone).
        model_tile: The tile as prediction saw it (cut, normalised); by default cut from
            ``slide``.
        normalizer: The stain normaliser of the tile, None for none, or
            :data:`FIT_ON_SLIDE` to fit the model's on the slide's tissue.
        origin: Full-resolution ``(x, y)`` of the slide's pixel (0, 0), for an image cut
            from a larger slide: outlines and the result's box are mapped there.
        downsample: Full-resolution pixels per pixel of ``slide``.

    Raises:
        NoNucleiError: No nuclei in the tile (or the tile is blank glass).
        UnknownGeneError: A gene the model lacks.
    """
    from stimage.explain import explain_lime, explain_occlusion

    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; use one of {METHODS}")
    targets, fn = target_function(predictor, genes, target)
    if model_fn is not None:
        fn = model_fn
    x, y, w, h = box
    mask = None
    if normalizer == FIT_ON_SLIDE:
        from stimage.tiles import detect_tissue

        mask = detect_tissue(slide)
        normalizer = predictor.normalizer_for(slide, mask)
    tile = _model_tile(predictor, slide, box, normalizer) if model_tile is None else model_tile
    nuclei, labels = _tile_nuclei(predictor, slide, box, segmenter)
    context_tiles = None
    if predictor.bundle.context is not None:
        if neighbours == FROM_SLIDE:
            assert not isinstance(normalizer, str)  # FIT_ON_SLIDE was resolved above
            neighbours = slide_neighbours(predictor, slide, box, normalizer, mask)
        held = held_context(predictor, box, slide.mpp, neighbours, encode, batch_size)
        _, fn = target_function(predictor, genes, target, held.features)
        context_tiles = held.count
    if method == "lime":
        exp = explain_lime(
            tile, labels, fn, targets, num_samples=num_samples, seed=seed,
            batch_size=batch_size, progress=progress, cancel=cancel,
        )  # fmt: skip
    else:
        exp = explain_occlusion(
            tile, labels, fn, targets, batch_size=batch_size, progress=progress, cancel=cancel
        )
    ox, oy = origin
    if (ox, oy, downsample) != (0.0, 0.0, 1.0):
        nuclei = nuclei.to_full_resolution(ox, oy, downsample)
        x, y, w, h = ox + x * downsample, oy + y * downsample, w * downsample, h * downsample
    return TileExplanation((x, y, w, h), nuclei, exp, tile, labels, context_tiles)


def _tile_nuclei(
    predictor: Predictor, slide: Slide, box: tuple[float, float, float, float], segmenter: str
) -> tuple[Nuclei, np.ndarray]:
    """The tile's nuclei (full-resolution outlines) and their label image on the model's grid.

    Nuclei come from the tile's own full-resolution pixels, whatever the source (the CLI and
    the server reading a slide, or the pixels a client sent): every way in finds the same
    nuclei in the same pixels. (The model's tile is cut from the slide as prediction cuts it,
    :func:`_model_tile`, so the explained prediction is the one on the map.)

    Raises:
        NoNucleiError: No nuclei in the tile.
    """
    from stimage.explain import NoNucleiError, segment_nuclei

    x, y, w, _ = box
    px = predictor.tile_px
    pixels, d = _tile_pixels(slide, box)
    nuclei = segment_nuclei(pixels, None, segmenter=segmenter).to_full_resolution(x, y, d)
    labels = nuclei.label_image(x, y, px, px, downsample=w / px)
    if not len(nuclei) or not labels.any():
        raise NoNucleiError(
            "no nuclei were found in this tile, so nothing can be explained; pick a tile with cells"
        )
    logger.info("tile %s: %d nuclei", tuple(round(v) for v in box), len(nuclei))
    return nuclei, labels


def _tile_pixels(slide: Slide, box: tuple[float, float, float, float]) -> tuple[Slide, float]:
    """The tile's pixels at the slide's own resolution as a slide of their own.

    Returns:
        The pixels as a slide, and its downsample (slide pixels per pixel).
    """
    from stimage.data import ArraySlide

    x, y, w, h = box
    out = (max(1, round(w)), max(1, round(h)))
    rgb = slide.read_region(x, y, w, h, out_size=out)
    d = w / out[0]
    return ArraySlide(rgb, slide.mpp * d, name=f"{slide.path.name} tile"), d


def _model_tile(
    predictor: Predictor,
    slide: Slide,
    box: tuple[float, float, float, float],
    normalizer: StainNormalizer | str | None,
) -> np.ndarray:
    """The tile as the model sees it: cut from the slide, resized and stain-normalised.

    Raises:
        NoNucleiError: The tile is blank glass.
    """
    from stimage.explain import NoNucleiError, is_blank
    from stimage.tiles import iter_tiles

    boxes = np.array([box], np.float64)
    ((_, raw),) = list(iter_tiles(slide, boxes, predictor.tile_px, normalizer=None, batch_size=1))
    if is_blank(raw[0]):
        raise NoNucleiError(
            "this tile is blank (glass), so it has no nuclei to explain; pick a tile with cells"
        )
    if normalizer is None or isinstance(normalizer, str):
        return raw[0]
    return normalizer.transform(raw[0])


#: Local R² of LIME's surrogate below which a figure warns that its scores are unreliable.
LOW_R2 = 0.5


def plot_explanation(result: TileExplanation, path: str | Path, *, max_targets: int = 6) -> Path:
    """Overlay PNG: the tile, and per target its nuclei filled by score (blue lowers, red raises).

    Each panel says the prediction the scores change and how large they are beside it, and
    warns (in red) when LIME's local model explains less than :data:`LOW_R2` of the
    perturbations' variance.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import TwoSlopeNorm

    exp = result.explanation
    k = min(len(exp.targets), max_targets)
    x0, y0, w, h = result.box
    sx, sy = result.tile.shape[1] / w, result.tile.shape[0] / h
    polys = []
    for poly in result.nuclei.polygons:
        geoms = getattr(poly, "geoms", [poly])
        biggest = max(geoms, key=lambda g: g.area)
        xy = np.asarray(biggest.exterior.coords)
        polys.append(np.column_stack([(xy[:, 0] - x0) * sx, (xy[:, 1] - y0) * sy]))
    th, tw = result.tile.shape[:2]
    fig, axes = plt.subplots(1, k + 1, figsize=(3.2 * (k + 1), 3.9), squeeze=False)
    ax = axes[0, 0]
    ax.imshow(result.tile)
    ax.add_collection(PolyCollection(polys, facecolor="none", edgecolor="k", linewidth=0.5))
    ax.set_title(f"tile, {len(polys)} nuclei", fontsize=9)
    for j in range(k):
        ax = axes[0, j + 1]
        s = exp.scores[:, j]
        lim = float(np.max(np.abs(s))) or 1.0
        ax.imshow(result.tile, alpha=0.45)
        coll = PolyCollection(
            polys,
            array=s,
            cmap="RdBu_r",
            norm=TwoSlopeNorm(0, -lim, lim),
            edgecolor="k",
            linewidth=0.3,
        )
        ax.add_collection(coll)
        bar = fig.colorbar(coll, ax=ax, fraction=0.046, pad=0.02)
        bar.set_label("change of the prediction", fontsize=7)
        pred = float(exp.prediction[j])
        share = f" ({lim / abs(pred):.0%} of it)" if pred else ""
        title = (
            f"{score_name(exp.method, exp.targets[j])}\n"
            f"prediction {pred:.2f}, scores up to ±{lim:.2g}{share}"
        )
        r2 = float(exp.fit_r2[j])
        if np.isfinite(r2):
            low = r2 < LOW_R2
            title += f"\nlocal R² {r2:.2f}" + (": low, read with caution" if low else "")
            ax.set_title(title, fontsize=8, color="firebrick" if low else "black")
        else:
            ax.set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.set_xlim(0, tw)  # nuclei at the edge are cut at the tile, as the model saw it
        ax.set_ylim(th, 0)
        ax.set_axis_off()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    return path


def score_name(method: str, target: str) -> str:
    """Measurement name of a nucleus's score: ``"LIME: VEGFA"`` or ``"Occlusion: VEGFA"``."""
    from stimage.constants import Measurement

    return Measurement.lime(target) if method == "lime" else Measurement.occlusion(target)


def write_explanation_geojson(results: Sequence[TileExplanation], path: str | Path) -> Path:
    """QuPath GeoJSON of explanations of one tile: the tile, and its nuclei as detections.

    The tile carries the model's predictions ("VEGFA: mean") and, for a model with spatial
    context, the neighbouring tiles held fixed ("Tile: context tiles"); every nucleus carries
    one score per method and target ("LIME: VEGFA", "Occlusion: VEGFA") and its area. All
    results must explain the same tile (e.g. LIME and occlusion).
    """
    import itertools

    import pandas as pd

    from stimage.constants import Measurement
    from stimage.qupath import polygon_features, tile_features, write_geojson

    if not results:
        raise ConfigError("no explanations to write")
    first = results[0]
    if any(r.box != first.box or len(r.nuclei) != len(first.nuclei) for r in results):
        raise ConfigError("explanations of different tiles cannot share one file")
    cols: dict[str, np.ndarray] = {}
    for r in results:
        for j, t in enumerate(r.explanation.targets):
            cols[score_name(r.explanation.method, t)] = r.explanation.scores[:, j]
    if "area_um2" in first.nuclei.features:
        cols[Measurement.NUCLEUS_AREA] = first.nuclei.features["area_um2"].to_numpy()
    pred = {
        Measurement.prediction(t): [v]
        for t, v in zip(first.explanation.targets, first.explanation.prediction, strict=True)
    }
    if first.context_tiles is not None:  # neighbours held fixed while the tile was perturbed
        pred[Measurement.TILE_CONTEXT] = [first.context_tiles]
    tile = tile_features(
        np.array([first.box], dtype=np.float64),
        pd.DataFrame(pred),
        names=["STImage explained tile"],
    )
    nuclei = polygon_features(
        first.nuclei.polygons, pd.DataFrame(cols), names=None, classifications="Nucleus"
    )
    path = Path(path)
    write_geojson(path, itertools.chain(tile, nuclei))
    return path
