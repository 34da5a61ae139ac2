"""Prediction with a model bundle: tiles in, expression with uncertainty out.

:class:`Predictor` loads a bundle's encoders once and turns stain-normalised uint8 tiles
into per-gene mean, aleatoric and epistemic standard deviations, predictive intervals (all on
the log-normalised scale ``log1p(counts per 10k)``) and P(high). :func:`predict_spots` and
:func:`predict_slide` cut tiles exactly as training did (the bundle's µm, px and stain
target) from spatial samples or from any slide, in bounded batches.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.constants import Key, Measurement
from stimage.errors import ConfigError, StimageError
from stimage.models._bundle import ModelBundle

if TYPE_CHECKING:
    import anndata as ad

    from stimage.data import Slide
    from stimage.encoders import Encoder
    from stimage.tiles import StainNormalizer, TissueMask

__all__ = ["GridTiles", "Predictor", "TilePredictions", "predict_slide", "predict_spots"]

logger = logging.getLogger(__name__)


@dataclass
class TilePredictions:
    """Predictions for ``n`` tiles and ``g`` genes (log-normalised scale).

    Attributes:
        genes: Gene names.
        mean: ``(n, g)`` predicted log-normalised expression.
        aleatoric_sd: ``(n, g)`` aleatoric standard deviation.
        epistemic_sd: ``(n, g)`` epistemic standard deviation.
        lower: ``(n, g)`` lower end of the central interval.
        upper: ``(n, g)`` upper end.
        level: Interval level.
        rate: ``(n, g)`` predicted counts per 10k UMIs.
        p_high: Gene -> ``(n,)`` P(high) for genes with a classifier.
    """

    genes: list[str]
    mean: np.ndarray
    aleatoric_sd: np.ndarray
    epistemic_sd: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    rate: np.ndarray
    p_high: dict[str, np.ndarray]

    @property
    def total_sd(self) -> np.ndarray:
        """Total standard deviation."""
        return np.sqrt(self.aleatoric_sd**2 + self.epistemic_sd**2)

    def measurements(self) -> pd.DataFrame:
        """One column per measurement (``"COX6C: mean"``, ...), one row per tile."""
        cols: dict[str, np.ndarray] = {}
        for j, g in enumerate(self.genes):
            cols[Measurement.of(g, Measurement.MEAN)] = self.mean[:, j]
            cols[Measurement.of(g, Measurement.ALEATORIC_SD)] = self.aleatoric_sd[:, j]
            cols[Measurement.of(g, Measurement.EPISTEMIC_SD)] = self.epistemic_sd[:, j]
            cols[Measurement.lower(g, self.level)] = self.lower[:, j]
            cols[Measurement.upper(g, self.level)] = self.upper[:, j]
            if g in self.p_high:
                cols[Measurement.of(g, Measurement.P_HIGH)] = self.p_high[g]
        return pd.DataFrame(cols)

    @staticmethod
    def concat(parts: list[TilePredictions]) -> TilePredictions:
        """Join batches."""
        if not parts:
            raise ConfigError("no predictions to join")
        p0 = parts[0]
        return TilePredictions(
            p0.genes,
            *(
                np.concatenate([getattr(p, k) for p in parts])
                for k in ("mean", "aleatoric_sd", "epistemic_sd", "lower", "upper")
            ),
            level=p0.level,
            rate=np.concatenate([p.rate for p in parts]),
            p_high={g: np.concatenate([p.p_high[g] for p in parts]) for g in p0.p_high},
        )


@dataclass
class GridTiles:
    """Grid tiles of a slide (or region) with enough tissue for a model.

    Attributes:
        boxes: ``(n, 4)`` level-0 boxes ``x, y, w, h``.
        rows: Grid row of each tile.
        cols: Grid column of each tile.
        coverage: Tissue fraction of each tile.
        mask: The slide's tissue mask (the stain normaliser is fitted on it).
    """

    boxes: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    coverage: np.ndarray
    mask: TissueMask


class Predictor:
    """A model bundle with its encoders loaded, ready to predict.

    Args:
        bundle: The model (a :class:`ModelBundle` or its folder).
        device: Encoder device (GPU when available by default).
        encoder_weights: Explicit weights files by encoder name.

    Raises:
        StimageError: An encoder's weights differ from those the model was trained with.
    """

    def __init__(
        self,
        bundle: ModelBundle | str | os.PathLike[str],
        *,
        device: str | None = None,
        encoder_weights: dict[str, str] | None = None,
    ) -> None:
        from stimage.encoders import create_encoder
        from stimage.models._bundle import load_bundle

        self.bundle = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
        self.encoders: dict[str, Encoder] = {}
        for i, comp in enumerate(self.bundle.components):
            name = comp.encoder["name"]
            if comp.encoder.get("finetuned"):
                import torch

                enc = create_encoder(name, device=device, random_init=True)
                state = self.bundle.encoder_states.get(i)
                if not state:
                    raise StimageError(
                        f"model {self.bundle.name!r}: fine-tuned encoder weights are missing"
                    )
                enc.model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
                enc.model.eval()
                enc.weights_path = str(self.bundle.path or "bundle")
            else:
                random = (
                    comp.encoder.get("weights_sha256") is None
                    and comp.encoder.get("weights_file") is None
                )
                enc = create_encoder(
                    name, (encoder_weights or {}).get(name), device=device, random_init=random
                )
                self._check_weights(comp.encoder, enc)
            self.encoders[name] = enc

    @staticmethod
    def _check_weights(recorded: dict[str, Any], enc: Encoder) -> None:
        from stimage.encoders._weights import sha256_of

        want = recorded.get("weights_sha256")
        if not want or not enc.weights_path:
            return
        have = enc.weights_sha256 or sha256_of(Path(enc.weights_path))
        if have != want:
            raise StimageError(
                f"encoder {enc.spec.name!r}: the weights found ({enc.weights_path}, SHA-256 {have[:12]}...) are not "
                f"those the model was trained with ({want[:12]}...); give the right file with --encoder-weights"
            )

    @property
    def tile_um(self) -> float:
        """Tile side in µm."""
        return float(self.bundle.tiles["tile_um"])

    @property
    def tile_px(self) -> int:
        """Tile side in pixels."""
        return int(self.bundle.tiles["tile_px"])

    def normalizer_for(self, slide: Slide, mask: TissueMask) -> StainNormalizer | None:
        """The bundle's stain normaliser fitted to a slide (None when the model uses none)."""
        from stimage.tiles import StainNormalizer, TileSettings, fit_slide_normalizer

        method = self.bundle.tiles.get("stain")
        if not method:
            return None
        if not self.bundle.stain_target:
            raise ConfigError(
                f"model {self.bundle.name!r} uses {method} normalisation but records no stain target"
            )
        target = StainNormalizer.from_dict(self.bundle.stain_target)
        return fit_slide_normalizer(
            slide,
            mask,
            TileSettings(tile_um=self.tile_um, tile_px=self.tile_px, stain=method),
            target,
        )

    def grid_tiles(self, slide: Slide, region: Any | None = None) -> GridTiles:
        """Tiles of the model's µm size on a grid over the slide's tissue (or a region).

        Tiles with less tissue than the model's minimum coverage are left out.

        Raises:
            NoTissueError: No tile has enough tissue.
        """
        from stimage.errors import NoTissueError
        from stimage.tiles import detect_tissue, grid_tile_qc

        mask = detect_tissue(slide)
        grid, qc = grid_tile_qc(
            slide,
            mask,
            self.tile_um,
            float(self.bundle.tiles.get("min_coverage", 0.7)),
            region=region,
        )
        keep = np.flatnonzero(qc.kept)
        if not len(keep):
            raise NoTissueError(
                f"{slide.path}: no tile of the region has enough tissue; check the region"
            )
        return GridTiles(
            grid.boxes[keep], grid.rows[keep], grid.cols[keep], qc.coverage[keep], mask
        )

    def features(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """Features of normalised uint8 tiles for every encoder of the model."""
        return {name: enc.encode(tiles) for name, enc in self.encoders.items()}

    def predict_tiles(
        self, tiles: np.ndarray, genes: list[str] | None = None, level: float = 0.9
    ) -> TilePredictions:
        """Predict from ``(n, h, w, 3)`` uint8 tiles, already cut and stain-normalised.

        Raises:
            UnknownGeneError: A gene the model does not predict.
        """
        genes = self.bundle.check_genes(genes)
        if not 0 < level < 1:
            raise ConfigError(f"interval level must be between 0 and 1, got {level}")
        feats = self.features(tiles)
        pred = self.bundle.predict_features(feats).subset(genes)
        lo, hi = pred.interval(level)
        p_high: dict[str, np.ndarray] = {}
        probs = self.bundle.predict_high(feats)
        if probs is not None and self.bundle.classifier is not None:
            for j, g in enumerate(self.bundle.classifier.genes):
                if g in genes:
                    p_high[g] = probs[:, j]
        return TilePredictions(
            genes,
            pred.mean,
            np.sqrt(pred.aleatoric_var),
            np.sqrt(pred.epistemic_var),
            lo,
            hi,
            level,
            pred.rate,
            p_high,
        )

    def predict_boxes(
        self,
        slide: Slide,
        boxes: np.ndarray,
        normalizer: StainNormalizer | None,
        *,
        genes: list[str] | None = None,
        batch_size: int = 64,
        level: float = 0.9,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[np.ndarray, TilePredictions]]:
        """Predict tiles cut from a slide, batch by batch (memory bounded by the batch)."""
        from stimage.tiles import iter_tiles

        for idx, tiles in iter_tiles(
            slide, boxes, self.tile_px, normalizer=normalizer, batch_size=batch_size
        ):
            if cancel is not None and cancel.is_set():
                raise StimageError("prediction cancelled")
            yield idx, self.predict_tiles(tiles, genes, level)
            if progress:
                progress(int(idx[-1] + 1), len(boxes))


def _to_anndata(
    pred: TilePredictions, obs: pd.DataFrame, spatial: np.ndarray, uns: dict[str, Any]
) -> ad.AnnData:
    import anndata as ad

    a = ad.AnnData(X=pred.mean.astype(np.float32), obs=obs, var=pd.DataFrame(index=pred.genes))
    a.layers["aleatoric_sd"] = pred.aleatoric_sd.astype(np.float32)
    a.layers["epistemic_sd"] = pred.epistemic_sd.astype(np.float32)
    a.layers["lower"] = pred.lower.astype(np.float32)
    a.layers["upper"] = pred.upper.astype(np.float32)
    a.layers["rate_per_10k"] = pred.rate.astype(np.float32)
    if pred.p_high:
        ph = np.full(pred.mean.shape, np.nan, np.float32)
        for j, g in enumerate(pred.genes):
            if g in pred.p_high:
                ph[:, j] = pred.p_high[g]
        a.layers["p_high"] = ph
    a.obsm[Key.SPATIAL] = np.asarray(spatial, np.float64)
    a.uns[Key.UNS] = uns
    return a


def predict_spots(
    predictor: Predictor,
    sample: ad.AnnData,
    *,
    genes: list[str] | None = None,
    level: float = 0.9,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ad.AnnData:
    """Predict every spot of a spatial sample; the result keeps the observed counts beside.

    Spots whose tile holds less tissue than the model's minimum are predicted too and
    flagged in ``obs["kept"]`` (False) with their coverage.
    """
    from stimage.data import check_spots_inside, open_sample_slide, sample_info
    from stimage.tiles import detect_tissue, spot_tile_qc

    meta = dict(sample_info(sample))
    with open_sample_slide(sample) as slide:
        check_spots_inside(sample, *slide.dimensions, where=str(slide.path))
        mask = detect_tissue(slide)
        qc = spot_tile_qc(
            sample.obsm[Key.SPATIAL],
            predictor.tile_um,
            slide.mpp,
            *slide.dimensions,
            mask,
            float(predictor.bundle.tiles.get("min_coverage", 0.7)),
        )
        normalizer = predictor.normalizer_for(slide, mask)
        parts = [
            p
            for _, p in predictor.predict_boxes(
                slide,
                qc.boxes,
                normalizer,
                genes=genes,
                batch_size=batch_size,
                level=level,
                progress=progress,
                cancel=cancel,
            )
        ]
    pred = TilePredictions.concat(parts)
    obs = sample.obs.copy()
    obs[Key.TISSUE_COVERAGE] = qc.coverage
    obs[Key.KEPT] = qc.kept
    meta.update(
        {
            "model": predictor.bundle.name,
            "genes": pred.genes,
            "interval_level": level,
            "tile_um": predictor.tile_um,
            "scale": "log1p(counts per 10k)",
        }
    )
    a = _to_anndata(pred, obs, sample.obsm[Key.SPATIAL], meta)
    common = [g for g in pred.genes if g in sample.var_names]
    counts = np.zeros(pred.mean.shape, np.float32)
    if common:
        idx = [pred.genes.index(g) for g in common]
        counts[:, idx] = sample[:, common].X.toarray()
    a.layers["observed_counts"] = counts
    a.obs["total_counts"] = np.asarray(sample.X.sum(axis=1)).ravel()
    return a


def predict_slide(
    predictor: Predictor,
    slide_path: str | os.PathLike[str],
    *,
    region: Any | None = None,
    mpp: float | None = None,
    genes: list[str] | None = None,
    level: float = 0.9,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ad.AnnData:
    """Predict every grid tile of a slide's tissue, or of a region (a shapely geometry in pixels).

    Tiles are the model's µm size on a grid; tiles with less tissue than the model's minimum
    are left out.
    """
    from stimage.data import open_slide

    with open_slide(slide_path, mpp=mpp) as slide:
        tiles = predictor.grid_tiles(slide, region)
        boxes = tiles.boxes
        normalizer = predictor.normalizer_for(slide, tiles.mask)
        parts = [
            p
            for _, p in predictor.predict_boxes(
                slide,
                boxes,
                normalizer,
                genes=genes,
                batch_size=batch_size,
                level=level,
                progress=progress,
                cancel=cancel,
            )
        ]
        uns = {
            "slide_path": str(slide.path.resolve()),
            Key.MPP: slide.mpp,
            Key.MPP_SOURCE: slide.mpp_source,
            "model": predictor.bundle.name,
            "tile_um": predictor.tile_um,
            "interval_level": level,
            "scale": "log1p(counts per 10k)",
        }
    pred = TilePredictions.concat(parts)
    obs = pd.DataFrame(
        {
            "x": boxes[:, 0],
            "y": boxes[:, 1],
            "width": boxes[:, 2],
            "height": boxes[:, 3],
            "grid_row": tiles.rows,
            "grid_col": tiles.cols,
            Key.TISSUE_COVERAGE: tiles.coverage,
        },
        index=[f"tile_{r}_{c}" for r, c in zip(tiles.rows, tiles.cols, strict=True)],
    )
    return _to_anndata(pred, obs, boxes[:, :2] + boxes[:, 2:] / 2, uns)
