"""Stain normalisation of H&E tiles: Vahadane (the default), Macenko and Reinhard.

The semantics are those of staintools 2.1.2, the library the STImage code uses, so that a
model trained on staintools-normalised tiles sees the same colours here:

* optical density ``OD = -log(I / 255)``, with 0 read as 1 and OD floored at 1e-6;
* tissue = pixels whose LAB lightness (OpenCV, 0-255) over 255 is below 0.8;
* Vahadane: a 2-atom non-negative sparse dictionary (lambda 0.1) learnt on tissue OD, the
  atom with the larger red OD first (haematoxylin), rows scaled to unit length;
  Macenko: the 1st and 99th angular percentiles in the plane of the two main eigenvectors;
* concentrations by non-negative lasso, ``min 0.5 ||x - S^T a||^2 + 0.01 ||a||_1, a >= 0``,
  over every pixel; ``maxC`` their 99th percentile per stain;
* output ``255 exp(-(C maxC_target / maxC_source) S_target)``, truncated to uint8;
* Reinhard: mean and standard deviation matching per channel of OpenCV's 8-bit LAB.

What differs is speed. The 2-atom lasso is solved exactly in closed form for all pixels at
once (each pixel's optimum is the feasible one of the active sets {H, E}, {H}, {E}, {}), the
dictionary is learnt by exact alternating minimisation, with extrapolation, on the tissue
colours binned by RGB and weighted by count (no spams at run time), and the source is fitted
once per slide, so a tile costs a few table look-ups, one exponential and a cast. Staintools
refits the source on every tile; ``transform(tile, refit=True)`` does the same, for
comparisons. See ``benchmarks/results/stain.md`` for agreement with staintools and speed.

This module holds the normaliser and the bundled templates; the pieces live beside it:
``_stain_base`` (settings, input checks, tissue pixels), ``_stain_unmix`` (the closed-form
lasso, per-pixel tables, rendering), ``_stain_matrix`` (Macenko and the fast Vahadane
dictionary learning) and ``_stain_fit`` (:class:`StainFit` and fitting a method on images).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stimage.errors import ConfigError, NoTissueError
from stimage.tiles._stain_base import (
    _TINY,
    STAIN_METHODS,
    StainParams,
    _as_image_list,
    _check_method,
    _check_rgb,
    _planes,
    _tissue_planes,
)
from stimage.tiles._stain_fit import StainFit, _fit, _lab_fit, _matrix_parts, _reinhard_table
from stimage.tiles._stain_matrix import _stain_matrix, estimate_stain_matrix
from stimage.tiles._stain_unmix import _render, _scale, _Unmixer, stain_concentrations

__all__ = [
    "STAIN_METHODS",
    "StainFit",
    "StainNormalizer",
    "StainParams",
    "build_stain_template",
    "estimate_stain_matrix",
    "list_stain_templates",
    "stain_concentrations",
]

_SCHEMA = "stimage.stain_normalizer/1"
_TEMPLATE_SCHEMA = "stimage.stain_template/1"
_TEMPLATE_DIR = Path(__file__).with_name("templates")


# ------------------------------------------------------------------------- the normaliser


class StainNormalizer:
    """Stain normaliser fitted once per slide and applied per tile.

    Fit a target (:meth:`fit_target`, or a bundled one with :meth:`from_template`), fit the
    source on tissue of the slide (:meth:`fit_source`: a thumbnail or sampled patches), then
    :meth:`transform` each tile. ``transform(tile, refit=True)`` refits the source on the
    tile instead, as staintools does.

    Args:
        method: ``"vahadane"`` (default), ``"macenko"`` or ``"reinhard"``.
        params: Settings; staintools' defaults when omitted.

    Example:
        >>> norm = StainNormalizer.from_template("default", method="vahadane")
        >>> norm = norm.fit_source(slide_patches)  # doctest: +SKIP
        >>> out = norm.transform(tile)  # doctest: +SKIP

    """

    def __init__(self, method: str = "vahadane", params: StainParams | None = None) -> None:
        self.method = _check_method(method)
        self.params = params or StainParams()
        self.target: StainFit | None = None
        self.source: StainFit | None = None
        self._slide_map: Any = None

    def __repr__(self) -> str:
        state = [n for n in ("target", "source") if getattr(self, n) is not None]
        return f"StainNormalizer(method={self.method!r}, fitted={state})"

    @property
    def is_fitted(self) -> bool:
        """Whether both target and source are fitted (per-slide transforms can run)."""
        return self.target is not None and self.source is not None

    def fit_target(self, images: np.ndarray | Sequence[np.ndarray]) -> StainNormalizer:
        """Fit the target appearance on a reference image, or pooled over several.

        Args:
            images: RGB uint8 ``(h, w, 3)`` array, tissue-rich with both stains, or a list
                of them (sizes may differ).

        Returns:
            ``self``.

        Raises:
            NoTissueError: Too little tissue, or (almost) none of one stain.

        """
        images = _as_image_list(images)
        self.target = self._checked_fit(
            _fit(images, self.method, self.params, self.params.fit_bits)
        )
        self._slide_map = None
        return self

    def fit_source(self, images: np.ndarray | Sequence[np.ndarray]) -> StainNormalizer:
        """Fit the source (per slide) on one image or pooled over a list of images.

        Pass tissue of the slide: patches sampled from it, or a downscaled image (as the
        STImage code does). The concentration percentile counts every pixel given,
        background included (as staintools does per image), so mostly-background inputs
        lower the source ``maxC`` and darken the output: prefer tissue patches.

        Args:
            images: RGB uint8 ``(h, w, 3)`` array, or a list of them (sizes may differ).

        Returns:
            ``self``.

        """
        self.source = _fit(_as_image_list(images), self.method, self.params, self.params.fit_bits)
        self._slide_map = None
        return self

    def copy(self) -> StainNormalizer:
        """Return a new normaliser with the same method, settings and (immutable) fits.

        Use it to fit one source per slide against a common target.
        """
        new = StainNormalizer(self.method, self.params)
        new.target, new.source = self.target, self.source
        return new

    def set_fits(self, target: StainFit | None = None, source: StainFit | None = None) -> None:
        """Set fits computed elsewhere (e.g. one source fit shared by several normalisers)."""
        for fit in (target, source):
            if fit is not None and fit.method != self.method:
                raise ConfigError(f"a {fit.method} fit cannot serve a {self.method} normaliser")
        if target is not None:
            self.target = self._checked_fit(target)
        if source is not None:
            self.source = source
        self._slide_map = None

    def transform(self, tile: np.ndarray, *, refit: bool = False) -> np.ndarray:
        """Normalise one tile.

        Args:
            tile: RGB uint8 ``(h, w, 3)``.
            refit: Refit the source on this tile (staintools' behaviour, slower). A tile
                with fewer than ``params.min_tissue_pixels`` tissue pixels then uses the
                slide fit if there is one, else comes back unchanged.

        Returns:
            A new RGB uint8 array of the tile's shape.

        Raises:
            ConfigError: The target (or, without ``refit``, the source) is not fitted.

        """
        tile = _check_rgb(tile, "tile")
        target = self._require("target")
        if not refit:
            self._require("source")
        if self.method == "reinhard":
            return self._transform_reinhard(tile, target, refit)
        planes = _planes(tile)
        matrix_t, max_t = _matrix_parts(target)
        if refit:
            rgb = _tissue_planes(tile, planes, self.params)
            if rgb.shape[1] >= self.params.min_tissue_pixels:
                matrix = _stain_matrix(rgb, self.method, self.params, self.params.tile_bits)
                h, e = _Unmixer(matrix, self.params.lasso_lambda)(planes)
                q = self.params.percentile
                scale = _scale(max_t, np.array([np.percentile(h, q), np.percentile(e, q)]))
                return _render(h, e, matrix_t, scale).reshape(tile.shape)
            if self.source is None:
                return tile.copy()
        if self._slide_map is None:
            matrix_s, max_s = _matrix_parts(self._require("source"))
            self._slide_map = (_Unmixer(matrix_s, self.params.lasso_lambda), _scale(max_t, max_s))
        unmix, scale = self._slide_map
        h, e = unmix(planes)
        return _render(h, e, matrix_t, scale).reshape(tile.shape)

    __call__ = transform

    def _require(self, which: str) -> StainFit:
        fit: StainFit | None = getattr(self, which)
        if fit is None:
            if which == "target":
                raise ConfigError(
                    "fit a target first: StainNormalizer.fit_target(image) or "
                    "StainNormalizer.from_template('default', method=...)"
                )
            raise ConfigError(
                "fit the source first with fit_source(images of this slide), or call "
                "transform(tile, refit=True) to fit each tile on its own"
            )
        return fit

    def _transform_reinhard(self, tile: np.ndarray, target: StainFit, refit: bool) -> np.ndarray:
        lab = cv2.cvtColor(tile, cv2.COLOR_RGB2LAB)
        table = None
        if refit:
            try:
                table = _reinhard_table(_lab_fit([lab], self.params), target)
            except NoTissueError:
                if self.source is None:
                    return tile.copy()
        if table is None:
            if self._slide_map is None:
                self._slide_map = _reinhard_table(self._require("source"), target)
            table = self._slide_map
        return cv2.cvtColor(cv2.LUT(lab, table), cv2.COLOR_LAB2RGB)

    def _checked_fit(self, fit: StainFit) -> StainFit:
        if fit.max_concentrations is not None and np.any(fit.max_concentrations <= _TINY):
            stain = "haematoxylin" if fit.max_concentrations[0] <= _TINY else "eosin"
            raise NoTissueError(
                f"the target has (almost) no {stain} at the concentration percentile "
                f"(maxC = {fit.max_concentrations.tolist()}); choose a target with both stains"
            )
        return fit

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description (method, settings and fits)."""
        return {
            "schema": _SCHEMA,
            "method": self.method,
            "params": asdict(self.params),
            "target": None if self.target is None else self.target.to_dict(),
            "source": None if self.source is None else self.source.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StainNormalizer:
        """Rebuild a normaliser from :meth:`to_dict` output."""
        if isinstance(data, dict) and data.get("schema") == _TEMPLATE_SCHEMA:
            raise ConfigError(
                "this is a stain template, not a normaliser; load it with "
                "StainNormalizer.from_template(path, method=...)"
            )
        if not isinstance(data, dict) or data.get("schema") != _SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(
                f"expected a stain normaliser dict with schema {_SCHEMA!r}; got {found!r}"
            )
        norm = cls(data.get("method", ""), StainParams.from_dict(data.get("params", {})))
        fits = {k: StainFit.from_dict(data[k]) for k in ("target", "source") if data.get(k)}
        norm.set_fits(**fits)
        return norm

    @classmethod
    def from_template(
        cls, name: str = "default", method: str = "vahadane", params: StainParams | None = None
    ) -> StainNormalizer:
        """Make a normaliser whose target is a bundled template (or a template JSON file).

        Args:
            name: A name from :func:`list_stain_templates`, or the path of a template JSON.
            method: Which of the template's fits to use.
            params: Settings; the template's own when omitted.

        Returns:
            A normaliser with the target set; call :meth:`fit_source` next.

        """
        template = _load_template(name)
        _check_method(method)
        if method not in template["fits"]:
            raise ConfigError(
                f"template {name!r} has no {method} fit; it has {sorted(template['fits'])}"
            )
        norm = cls(method, params or StainParams.from_dict(template["params"]))
        norm.set_fits(target=StainFit.from_dict(template["fits"][method]))
        return norm


# ---------------------------------------------------------------------------- templates


def list_stain_templates() -> list[str]:
    """Names of the bundled stain templates."""
    return sorted(p.stem for p in _TEMPLATE_DIR.glob("*.json"))


def _load_template(name: str) -> dict[str, Any]:
    if name.endswith(".json") or "/" in name or "\\" in name:
        path = Path(name)
    else:
        path = _TEMPLATE_DIR / f"{name}.json"
        if not path.is_file():
            raise ConfigError(
                f"no bundled stain template {name!r}; bundled: {list_stain_templates()}, or "
                "pass the path of a template JSON file"
            )
    if not path.is_file():
        raise ConfigError(f"stain template file {str(path)!r} does not exist")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != _TEMPLATE_SCHEMA or not isinstance(data.get("fits"), dict):
        raise ConfigError(
            f"{path} is not a stain template (expected schema {_TEMPLATE_SCHEMA!r} and 'fits')"
        )
    return data


def build_stain_template(
    image: np.ndarray,
    *,
    name: str,
    description: str,
    source: dict[str, Any],
    params: StainParams | None = None,
) -> dict[str, Any]:
    """Fit all three methods on a reference image and return a template dict.

    Args:
        image: RGB uint8 ``(h, w, 3)`` reference region, tissue-rich, with both stains.
        name: Template name (the JSON file's stem).
        description: One line on what the template is.
        source: Provenance: dataset, file, crop, citation, the command that made it.
        params: Settings; staintools' defaults when omitted.

    Returns:
        A JSON-serialisable dict; write it with ``json.dump`` to ``templates/<name>.json``.

    """
    from stimage._version import __version__

    params = params or StainParams()
    fits = {m: StainNormalizer(m, params).fit_target(image).target for m in STAIN_METHODS}
    return {
        "schema": _TEMPLATE_SCHEMA,
        "name": name,
        "description": description,
        "source": source,
        "params": asdict(params),
        "stimage_version": __version__,
        "fits": {m: fit.to_dict() for m, fit in fits.items() if fit is not None},
    }
