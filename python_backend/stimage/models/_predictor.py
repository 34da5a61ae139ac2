"""Prediction with a model bundle: tiles in, expression with uncertainty out.

:class:`Predictor` loads a bundle's encoders once and turns stain-normalised uint8 tiles
into per-gene mean, aleatoric and epistemic standard deviations, predictive intervals (all on
the log-normalised scale ``log1p(counts per 10k)``) and P(high) (the outputs of
:data:`~stimage.models.GENE_OUTPUTS`). It cuts tiles exactly as training did (the bundle's
µm, px and stain target) from any slide, in bounded batches; the pipelines
(:mod:`stimage.pipelines`) use it for spots, regions and whole slides.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.errors import ConfigError, StimageError
from stimage.models._bundle import ModelBundle
from stimage.models._context import ContextNeighbours, SpatialContext
from stimage.models._outputs import OutputContext, TilePredictions

if TYPE_CHECKING:
    from stimage.data import Slide
    from stimage.encoders import Encoder
    from stimage.tiles import StainNormalizer, TissueMask

__all__ = ["GridTiles", "Predictor", "TilePredictions"]

logger = logging.getLogger(__name__)


@dataclass
class GridTiles:
    """Grid tiles of a slide (or region) with enough tissue for a model.

    Attributes:
        boxes: ``(n, 4)`` level-0 boxes ``x, y, w, h``.
        rows: Grid row of each tile.
        cols: Grid column of each tile.
        coverage: Tissue fraction of each tile.
        mask: The slide's tissue mask (the stain normaliser is fitted on it).
        context_boxes: ``(m, 4)`` tissue tiles of the same grid around a region, within the
            model's context reach: read for the spatial context of the region's tiles at its
            edge, never predicted themselves (empty for a whole slide or a model without
            context).
    """

    boxes: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    coverage: np.ndarray
    mask: TissueMask
    context_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


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
        from stimage.encoders import sha256_of

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
    def context(self) -> SpatialContext | None:
        """The model's spatial context (None: each tile is predicted alone)."""
        return self.bundle.context

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

        Tiles with less tissue than the model's minimum coverage are left out. On an image
        of a few tiles (a crop a client sent), tissue pieces smaller than the usual minimum
        area are kept, so one tile of tissue is one tile.

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
        out = GridTiles(grid.boxes[keep], grid.rows[keep], grid.cols[keep], qc.coverage[keep], mask)
        if region is not None and self.bundle.context is not None:
            out.context_boxes = self.margin_boxes(slide, mask, out.boxes)
        return out

    def margin_boxes(self, slide: Slide, mask: TissueMask, boxes: np.ndarray) -> np.ndarray:
        """Tissue tiles of the boxes' grid around them, as far as the model's context reaches.

        ``boxes`` are tiles of one grid (the model's tile size, origins whole tiles apart), e.g.
        a region's or one explained tile; the margin (:func:`stimage.tiles.grid_margin`) keeps
        the cells with the model's minimum tissue.
        """
        from stimage.tiles import grid_margin

        assert self.bundle.context is not None
        w, h = slide.dimensions
        reach = self.bundle.context.reach_um
        around = grid_margin(boxes, self.tile_um, slide.mpp, reach, w, h)
        if not len(around):
            return around
        keep = mask.coverage(around) >= float(self.bundle.tiles.get("min_coverage", 0.7))
        return around[keep]

    def features(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """Features of normalised uint8 tiles for every encoder of the model."""
        return {name: enc.encode(tiles) for name, enc in self.encoders.items()}

    def predict_tiles(
        self,
        tiles: np.ndarray,
        genes: list[str] | None = None,
        level: float = 0.9,
        *,
        xy_um: np.ndarray | None = None,
    ) -> TilePredictions:
        """Predict from ``(n, h, w, 3)`` uint8 tiles, already cut and stain-normalised.

        Args:
            tiles: The tiles.
            genes: Genes to predict (all by default).
            level: Level of the predictive interval.
            xy_um: ``(n, 2)`` tile centres in µm, for a model with spatial context: the
                tiles give each other context. Without them each tile is predicted alone.

        Raises:
            UnknownGeneError: A gene the model does not predict.
        """
        return self.predict_encoded(self.features(tiles), genes, level, xy_um=xy_um)

    def predict_encoded(
        self,
        features: Mapping[str, Any],
        genes: list[str] | None = None,
        level: float = 0.9,
        *,
        xy_um: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        among: np.ndarray | None = None,
    ) -> TilePredictions:
        """Predict from encoder features (``(n, d)`` per encoder, e.g. a slide's memory map).

        With the model's spatial context, ``xy_um`` gives the centres of all ``n`` tiles
        (µm); ``rows`` picks the tiles predicted (all by default), the others giving context
        only. Without ``xy_um`` each tile is predicted alone (``Tile: context tiles`` 0).

        Raises:
            UnknownGeneError: A gene the model does not predict.
        """
        genes = self.bundle.check_genes(genes)
        if not 0 < level < 1:
            raise ConfigError(f"interval level must be between 0 and 1, got {level}")
        feats, n_context = self.joined_features(features, xy_um=xy_um, rows=rows, among=among)
        pred = self.bundle.predict_features(feats).subset(genes)
        n = pred.log_rate.shape[1]
        p_high = np.full((n, len(genes)), np.nan)
        probs = self.bundle.predict_high(feats)
        if probs is not None and self.bundle.classifier is not None:
            where = {g: j for j, g in enumerate(genes)}
            for k, g in enumerate(self.bundle.classifier.genes):
                if g in where:
                    p_high[:, where[g]] = probs[:, k]
        return TilePredictions.compute(genes, OutputContext(pred, level, p_high, n_context))

    def joined_features(
        self,
        features: Mapping[str, Any],
        *,
        xy_um: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        among: np.ndarray | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """The features the model's heads read: with its spatial context joined.

        Returns the features of ``rows`` (all by default) and, for a model with context, the
        number of neighbouring tiles each was joined with (None without context). Without
        ``xy_um`` each tile is alone (its own features in every ring). ``among`` (boolean per
        tile) limits which tiles give context (e.g. spots with enough tissue).

        Raises:
            ConfigError: Positions that do not match the features.
        """
        ctx = self.bundle.context
        if ctx is None:
            return {
                k: np.asarray(v if rows is None else v[rows]) for k, v in features.items()
            }, None
        n_all = len(next(iter(features.values())))
        if xy_um is None:  # each tile alone
            r = np.arange(n_all) if rows is None else np.asarray(rows, np.int64)
            none = np.full((len(r), 0), -1, np.int64)
            nb = ContextNeighbours(r, none, none, len(ctx.rings_um))
        else:
            xy = np.asarray(xy_um, np.float64)
            if len(xy) != n_all:
                raise ConfigError(f"{len(xy)} tile positions for {n_all} tiles")
            nb = ctx.neighbours(xy, rows, among)
        return {k: ctx.join(v, nb) for k, v in features.items()}, nb.count

    def encode_boxes(
        self,
        slide: Slide,
        boxes: np.ndarray,
        normalizer: StainNormalizer | None,
        *,
        batch_size: int = 64,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Encoder features of tiles cut from a slide, batch by batch: ``(indices, features)``."""
        from stimage.tiles import iter_tiles

        for idx, tiles in iter_tiles(
            slide, boxes, self.tile_px, normalizer=normalizer, batch_size=batch_size
        ):
            if cancel is not None and cancel.is_set():
                raise StimageError("prediction cancelled")
            yield idx, self.features(tiles)

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
        context_boxes: np.ndarray | None = None,
        context_from: np.ndarray | None = None,
    ) -> Iterator[tuple[np.ndarray, TilePredictions]]:
        """Predict tiles cut from a slide, batch by batch.

        Without spatial context memory is bounded by the batch. With it, every tile's
        features are read first (``n x d`` float32: 7 kB a tile for a 1776-feature encoder),
        then the tiles are predicted batch by batch with their neighbours' features;
        ``context_boxes`` (tiles around a region) give context and are not predicted;
        ``context_from`` (boolean per box) limits which of ``boxes`` give context (the spots
        with enough tissue, as in training). Progress counts the tiles encoded.
        """
        if self.bundle.context is None:
            for idx, feats in self.encode_boxes(
                slide, boxes, normalizer, batch_size=batch_size, cancel=cancel
            ):
                yield idx, self.predict_encoded(feats, genes, level)
                if progress:
                    progress(int(idx[-1] + 1), len(boxes))
            return
        extra = np.zeros((0, 4)) if context_boxes is None else np.asarray(context_boxes, float)
        every = np.concatenate([np.asarray(boxes, float).reshape(-1, 4), extra])
        parts: dict[str, list[np.ndarray]] = {}
        for idx, feats in self.encode_boxes(
            slide, every, normalizer, batch_size=batch_size, cancel=cancel
        ):
            for k, v in feats.items():
                parts.setdefault(k, []).append(np.asarray(v, np.float32))
            if progress:
                progress(min(int(idx[-1] + 1), len(boxes)), len(boxes))
        feats_all = {k: np.concatenate(v) for k, v in parts.items()}
        xy = (every[:, :2] + every[:, 2:] / 2) * slide.mpp
        among = None
        if context_from is not None:
            among = np.concatenate([np.asarray(context_from, bool), np.ones(len(extra), bool)])
        for b0 in range(0, len(boxes), batch_size):
            rows = np.arange(b0, min(b0 + batch_size, len(boxes)))
            yield (
                rows,
                self.predict_encoded(feats_all, genes, level, xy_um=xy, rows=rows, among=among),
            )
