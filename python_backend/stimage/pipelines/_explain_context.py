"""What an explanation perturbs for a model with spatial context: the tile, its neighbours fixed.

A context model predicts a tile from its own features joined with the mean features of the
tissue tiles around it (:mod:`stimage.models._context`). An explanation that scored the tile
alone would explain a different number from the one on the map. So the neighbours are read
once, encoded once, and every perturbed copy of the tile is joined with those fixed ring means:
the explained prediction is the tile's prediction with context, and the scores say what the
tile's own nuclei add to it.

Where the neighbours come from:

* a slide (``stimage explain``, the server reading a slide file): the tissue tiles of the
  tile's grid within the context's reach, the rule ``predict-slide --region`` uses for the
  margin around a region (:meth:`~stimage.models.Predictor.margin_boxes`);
* a client (QuPath sends the pixels): the tiles it read around the tile, as for predict's
  ``context_only`` tiles (:class:`NeighbourTiles`).

A tile without neighbouring tissue is explained alone (``context_tiles`` 0), as it is predicted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from stimage.data import Slide
    from stimage.models import Predictor
    from stimage.tiles import StainNormalizer, TissueMask

__all__ = ["HeldContext", "NeighbourTiles", "held_context", "slide_neighbours"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NeighbourTiles:
    """Tiles around an explained tile, as the model sees them.

    Attributes:
        tiles: ``(m, tile_px, tile_px, 3)`` uint8, cut and stain-normalised like the tile.
        centres: ``(m, 2)`` centres in the pixels of the explained tile's box.
    """

    tiles: np.ndarray
    centres: np.ndarray

    @staticmethod
    def none(tile_px: int) -> NeighbourTiles:
        """No neighbours: the tile is explained alone."""
        return NeighbourTiles(np.zeros((0, tile_px, tile_px, 3), np.uint8), np.zeros((0, 2)))


def slide_neighbours(
    predictor: Predictor,
    slide: Slide,
    box: tuple[float, float, float, float],
    normalizer: StainNormalizer | None,
    mask: TissueMask | None = None,
) -> NeighbourTiles:
    """The tissue tiles of the box's grid around it within the model's context, read from the slide.

    Args:
        predictor: A model with spatial context.
        slide: The slide.
        box: The explained tile ``(x, y, w, h)`` in the slide's pixels.
        normalizer: The tile's stain normaliser (the neighbours get the same).
        mask: The slide's tissue mask (detected when not given).
    """
    from stimage.tiles import detect_tissue, iter_tiles

    mask = detect_tissue(slide) if mask is None else mask
    around = predictor.margin_boxes(slide, mask, np.array([box], np.float64))
    if not len(around):
        return NeighbourTiles.none(predictor.tile_px)
    tiles = np.zeros((len(around), predictor.tile_px, predictor.tile_px, 3), np.uint8)
    for idx, batch in iter_tiles(slide, around, predictor.tile_px, normalizer=normalizer):
        tiles[idx] = batch
    return NeighbourTiles(tiles, around[:, :2] + around[:, 2:] / 2)


@dataclass(frozen=True)
class HeldContext:
    """What a context model's heads read of a tile, its neighbours held fixed.

    Attributes:
        features: uint8 tiles ``(n, h, w, 3)`` -> their features per encoder, each joined with
            the same ring means (a ring without neighbours takes the tile's own features).
        count: Neighbouring tiles that gave context (0: the tile alone).
    """

    features: Callable[[np.ndarray], dict[str, np.ndarray]]
    count: int


def held_context(
    predictor: Predictor,
    box: tuple[float, float, float, float],
    mpp: float,
    neighbours: NeighbourTiles | str | None,
    encode: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
    batch_size: int = 64,
) -> HeldContext:
    """The features an explanation of a context model perturbs (see the module).

    Args:
        predictor: A model with spatial context.
        box: The explained tile ``(x, y, w, h)``, in the pixels of ``neighbours.centres``.
        mpp: µm per pixel of those pixels.
        neighbours: The tiles around it; those beyond the context's reach are not encoded
            (anything else: none, the tile alone).
        encode: Tiles -> features per encoder (the server's device; the model by default).
        batch_size: Neighbour tiles per ``encode`` call.
    """
    ctx = predictor.bundle.context
    if ctx is None:
        raise ValueError("held_context needs a model with spatial context")
    if not isinstance(neighbours, NeighbourTiles):
        neighbours = NeighbourTiles.none(predictor.tile_px)
    encode = predictor.features if encode is None else encode
    x, y, w, h = box
    xy = np.vstack([[[x + w / 2, y + h / 2]], np.asarray(neighbours.centres, np.float64)])
    nb = ctx.neighbours(xy * mpp, np.array([0]))
    found = nb.index[0] >= 0
    used, ring = nb.index[0][found] - 1, nb.ring[0][found]
    ring_sums: dict[str, np.ndarray] = {}
    for b0 in range(0, len(used), batch_size):
        feats = encode(neighbours.tiles[used[b0 : b0 + batch_size]])
        r = ring[b0 : b0 + batch_size]
        for name, f in feats.items():
            f = np.asarray(f, np.float64)
            sums = ring_sums.setdefault(name, np.zeros((nb.n_rings, f.shape[1])))
            np.add.at(sums, r, f)
    n_in = np.bincount(ring, minlength=nb.n_rings)
    means = {k: (s / np.maximum(n_in, 1)[:, None]).astype(np.float32) for k, s in ring_sums.items()}
    logger.info("explaining with the tile's %d neighbouring tiles held fixed", len(used))

    def joined(tiles: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name, f in encode(tiles).items():
            f = np.asarray(f, np.float32)
            cols = [f] + [
                np.broadcast_to(means[name][k], f.shape) if n_in[k] else f
                for k in range(nb.n_rings)
            ]
            out[name] = np.concatenate(cols, axis=1)
        return out

    return HeldContext(joined, len(used))
