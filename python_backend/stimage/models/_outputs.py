"""The one declared schema of what a prediction gives, and its container.

Every per-gene output of an expression prediction is one :class:`GeneOutput` in
:data:`GENE_OUTPUTS`: its key (the attribute of :class:`TilePredictions`, the array name in
a slide job's chunk files), its AnnData layer, its measurement name (the GeoJSON measurement,
the CSV column and the server's table column, all spelled by :class:`~stimage.constants.Measurement`)
and how it is computed from the ensemble's distribution. Everything that moves predictions
around (joining batches, slicing rows, chunk stores, AnnData, CSV, QuPath measurements, the
protocol's table) loops over this tuple, so a new output is one entry here and its test.

Per-tile outputs (how unlike the training tiles a tile is, and the flag it raises) are
:class:`TileOutput` entries of :data:`TILE_OUTPUTS`, kept the same way (as AnnData ``obs``
columns).

Example:
    >>> [o.key for o in GENE_OUTPUTS]
    ['mean', 'aleatoric_sd', 'epistemic_sd', 'lower', 'upper', 'rate', 'p_high']
    >>> [o.key for o in TILE_OUTPUTS]
    ['novelty', 'outside_training', 'context_tiles']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.constants import Key, Measurement
from stimage.errors import ConfigError

if TYPE_CHECKING:
    import anndata as ad

    from stimage.models._ensemble import ExpressionPrediction

__all__ = [
    "GENE_OUTPUTS",
    "NOVELTY_FLAG",
    "TILE_OUTPUTS",
    "GeneOutput",
    "OutputContext",
    "TileOutput",
    "TilePredictions",
    "anndata_values",
    "measurement_columns",
    "to_anndata",
]


@dataclass
class OutputContext:
    """What outputs are computed from, besides the ensemble's distribution.

    Attributes:
        prediction: The ensemble's prediction for the tiles and genes asked for.
        level: Level of the central predictive interval.
        p_high: ``(n, g)`` P(high) per tile and gene (NaN for genes without a classifier).
        context_tiles: ``(n,)`` neighbouring tiles that gave each tile its spatial context
            (0: the tile alone); None for a model without context.
    """

    prediction: ExpressionPrediction
    level: float
    p_high: np.ndarray
    context_tiles: np.ndarray | None = None

    @cached_property
    def interval(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper ends of the predictive interval (computed once, with the moments)."""
        return self.prediction.interval(self.level)


def _sd(var: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(var, 0.0))


@dataclass(frozen=True)
class GeneOutput:
    """One per-gene output of a prediction.

    Attributes:
        key: Attribute of :class:`TilePredictions` and array name in chunk stores.
        layer: AnnData layer (None: the main matrix ``X``).
        column: Measurement name for a gene at an interval level (QuPath, CSV, protocol
            tables); None for outputs kept in AnnData and stores only.
        compute: ``(n, g)`` values from an :class:`OutputContext`, in the order computed.
        description: What it is, for people (docs/geojson.md, ``stimage models show``).
        optional: Undefined (NaN) for some genes; such a gene's column is left out.
    """

    key: str
    layer: str | None
    column: Callable[[str, float], str] | None
    compute: Callable[[OutputContext], np.ndarray]
    description: str
    optional: bool = False


#: Every per-gene output, in the order of measurement columns within a gene.
GENE_OUTPUTS: tuple[GeneOutput, ...] = (
    GeneOutput(
        "mean",
        None,
        lambda g, lvl: Measurement.of(g, Measurement.MEAN),
        lambda c: c.prediction.mean,
        "predicted log-normalised expression, log1p(counts per 10k), at the predicted depth",
    ),
    GeneOutput(
        "aleatoric_sd",
        "aleatoric_sd",
        lambda g, lvl: Measurement.of(g, Measurement.ALEATORIC_SD),
        lambda c: _sd(c.prediction.aleatoric_var),
        "aleatoric standard deviation: the noise of counts around the mean (mean of members')",
    ),
    GeneOutput(
        "epistemic_sd",
        "epistemic_sd",
        lambda g, lvl: Measurement.of(g, Measurement.EPISTEMIC_SD),
        lambda c: _sd(c.prediction.epistemic_var),
        "epistemic standard deviation: disagreement of the ensemble's members",
    ),
    GeneOutput(
        "lower",
        "lower",
        Measurement.lower,
        lambda c: c.interval[0],
        "lower end of the central predictive interval (log-normalised)",
    ),
    GeneOutput(
        "upper",
        "upper",
        Measurement.upper,
        lambda c: c.interval[1],
        "upper end of the central predictive interval (log-normalised)",
    ),
    GeneOutput(
        "rate",
        "rate_per_10k",
        None,
        lambda c: c.prediction.rate,
        "predicted rate per 10k UMIs, independent of depth (the NB mixture's mean rate)",
    ),
    GeneOutput(
        "p_high",
        "p_high",
        lambda g, lvl: Measurement.of(g, Measurement.P_HIGH),
        lambda c: c.p_high,
        "probability that the gene is above its mean (the elastic-net high/low classifier)",
        optional=True,
    ),
)


@dataclass(frozen=True)
class TileOutput:
    """One per-tile output of a prediction.

    Attributes:
        key: Key in :class:`TilePredictions` and chunk stores; the AnnData ``obs`` column.
        column: Measurement name (QuPath, CSV, protocol tables).
        compute: ``(n,)`` values from an :class:`OutputContext`.
        description: What it is, for people.
        optional: Undefined (NaN) for some models; the column is then left out.
    """

    key: str
    column: str
    compute: Callable[[OutputContext], np.ndarray]
    description: str
    optional: bool = False


#: Novelty above which a tile is flagged as outside what the model was trained on.
NOVELTY_FLAG = 3.0


def _novelty(c: OutputContext) -> np.ndarray:
    n = c.prediction.log_rate.shape[1]
    v = c.prediction.novelty
    return np.full(n, np.nan) if v is None else np.asarray(v, np.float64)


def _outside(c: OutputContext) -> np.ndarray:
    n = c.prediction.log_rate.shape[1]
    clipped = c.prediction.clipped
    out = np.zeros(n) if clipped is None else (np.asarray(clipped) > 0).astype(np.float64)
    with np.errstate(invalid="ignore"):
        out[_novelty(c) > NOVELTY_FLAG] = 1.0
    return out


def _context_tiles(c: OutputContext) -> np.ndarray:
    n = c.prediction.log_rate.shape[1]
    v = c.context_tiles
    return np.full(n, np.nan) if v is None else np.asarray(v, np.float64)


#: Every per-tile output, in the order of measurement columns (before the genes').
TILE_OUTPUTS: tuple[TileOutput, ...] = (
    TileOutput(
        "novelty",
        Measurement.TILE_NOVELTY,
        _novelty,
        "how far the tile's features lie from the training tiles: 1 is the training's 99th "
        "percentile (NaN for models saved without the statistics)",
    ),
    TileOutput(
        "outside_training",
        Measurement.TILE_OUTSIDE_TRAINING,
        _outside,
        f"1 when the tile is unlike the training tiles (novelty over {NOVELTY_FLAG:g}, or a "
        "prediction had to be bounded): read its predictions with caution",
    ),
    TileOutput(
        "context_tiles",
        Measurement.TILE_CONTEXT,
        _context_tiles,
        "neighbouring tiles whose features gave the tile its spatial context; 0 when it was "
        "predicted from itself alone (no tissue tile around it was predicted with it); only for "
        "models with spatial context",
        optional=True,
    ),
)
_GENE_KEYS = tuple(o.key for o in GENE_OUTPUTS)
_TILE_KEYS = tuple(o.key for o in TILE_OUTPUTS)
_KEYS = _GENE_KEYS + _TILE_KEYS


def _output(key: str, doc: str) -> property:
    """A read-only attribute of :class:`TilePredictions` for one output of the schema."""

    def get(self: TilePredictions) -> np.ndarray:
        return self.values[key]

    get.__doc__ = doc
    return property(get)


@dataclass
class TilePredictions:
    """Predictions for ``n`` tiles and ``g`` genes, one ``(n, g)`` array per :data:`GENE_OUTPUTS`.

    Attributes:
        genes: Gene names.
        level: Interval level.
        values: Output key -> ``(n, g)`` array.
    """

    genes: list[str]
    level: float
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [k for k in _GENE_KEYS if k not in self.values]
        if missing:
            raise ConfigError(f"predictions lack the outputs {missing}")
        shapes = {np.shape(self.values[k]) for k in _GENE_KEYS}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ConfigError(f"prediction arrays must share one (n, g) shape; got {shapes}")
        n = next(iter(shapes))[0]
        for k in _TILE_KEYS:  # predictions stored before an output existed: NaN
            v = self.values.setdefault(k, np.full(n, np.nan))
            if np.shape(v) != (n,):
                raise ConfigError(
                    f"the per-tile output {k} must have shape ({n},), got {np.shape(v)}"
                )

    @classmethod
    def compute(cls, genes: list[str], context: OutputContext) -> TilePredictions:
        """Every output from the ensemble's prediction, as the schema says."""
        context.interval  # noqa: B018 - one pass gives the interval and the members' moments
        values = {o.key: o.compute(context) for o in GENE_OUTPUTS}
        values.update({o.key: o.compute(context) for o in TILE_OUTPUTS})
        return cls(list(genes), context.level, values)

    def __len__(self) -> int:
        return int(self.values["mean"].shape[0])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.values[key]

    # The outputs everyone reads, by name (any output is also ``pred[key]``).
    mean = _output("mean", "``(n, g)`` predicted log-normalised expression.")
    aleatoric_sd = _output("aleatoric_sd", "``(n, g)`` aleatoric standard deviation.")
    epistemic_sd = _output("epistemic_sd", "``(n, g)`` epistemic standard deviation.")
    lower = _output("lower", "``(n, g)`` lower end of the central interval.")
    upper = _output("upper", "``(n, g)`` upper end of the central interval.")
    rate = _output("rate", "``(n, g)`` predicted counts per 10k UMIs.")
    p_high = _output("p_high", "``(n, g)`` P(high); NaN for genes without a classifier.")

    @property
    def total_sd(self) -> np.ndarray:
        """Total standard deviation."""
        return np.sqrt(self.aleatoric_sd**2 + self.epistemic_sd**2)

    def defined(self, key: str) -> list[bool]:
        """Per gene, whether an output has any value (False: all NaN, e.g. no classifier)."""
        v = self.values[key]
        return [bool(len(v)) and not np.isnan(v[:, j]).all() for j in range(v.shape[1])]

    def measurements(self) -> pd.DataFrame:
        """One column per measurement (``"COX6C: mean"``, ...), one row per tile."""
        return pd.DataFrame(measurement_columns(self.genes, self.level, self.values))

    def rows(self, sl: slice | np.ndarray) -> TilePredictions:
        """Some tiles (a slice or index array)."""
        return TilePredictions(self.genes, self.level, {k: v[sl] for k, v in self.values.items()})

    def subset(self, genes: list[str]) -> TilePredictions:
        """Some genes, in the given order (per-tile outputs unchanged)."""
        idx = [self.genes.index(g) for g in genes]
        return TilePredictions(
            list(genes),
            self.level,
            {k: v[:, idx] if k in _GENE_KEYS else v for k, v in self.values.items()},
        )

    @staticmethod
    def concat(parts: list[TilePredictions]) -> TilePredictions:
        """Join batches."""
        if not parts:
            raise ConfigError("no predictions to join")
        p0 = parts[0]
        return TilePredictions(
            p0.genes, p0.level, {k: np.concatenate([p.values[k] for p in parts]) for k in _KEYS}
        )

    def arrays(self, dtype: Any = np.float32) -> dict[str, np.ndarray]:
        """Every output as an array of ``dtype`` (for chunk stores)."""
        return {k: np.asarray(self.values[k], dtype) for k in _KEYS}

    @classmethod
    def from_arrays(
        cls, genes: list[str], level: float, arrays: Mapping[str, np.ndarray]
    ) -> TilePredictions:
        """Back from :meth:`arrays` (columns already selected; outputs a store lacks are NaN)."""
        return cls(
            list(genes), float(level), {k: np.asarray(arrays[k]) for k in _KEYS if k in arrays}
        )

    @staticmethod
    def is_gene_output(key: str) -> bool:
        """Whether an output has one column per gene (else one value per tile)."""
        return key in _GENE_KEYS


def measurement_columns(
    genes: list[str], level: float, values: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Measurement name -> per-tile values: per-tile outputs, then gene by gene.

    Genes' columns follow :data:`GENE_OUTPUTS` order. Outputs without a column are left
    out, and so are optional outputs a gene lacks.
    """
    cols: dict[str, np.ndarray] = {}
    for t in TILE_OUTPUTS:
        tv = np.asarray(values[t.key]) if t.key in values else None
        if tv is not None and not (t.optional and (not len(tv) or np.isnan(tv).all())):
            cols[t.column] = tv
    shown = [o for o in GENE_OUTPUTS if o.column is not None]
    for j, g in enumerate(genes):
        for o in shown:
            v = np.asarray(values[o.key])[:, j]
            if o.optional and (not len(v) or np.isnan(v).all()):
                continue
            assert o.column is not None
            cols[o.column(g, level)] = v
    return cols


def anndata_values(a: ad.AnnData) -> dict[str, np.ndarray]:
    """The outputs stored in an AnnData written by :func:`to_anndata` (absent ones as NaN)."""
    out = {o.key: a.obs[o.key].to_numpy(np.float64) for o in TILE_OUTPUTS if o.key in a.obs}
    for o in GENE_OUTPUTS:
        if o.layer is None:
            out[o.key] = np.asarray(a.X)
        elif o.layer in a.layers:
            out[o.key] = np.asarray(a.layers[o.layer])
        else:
            out[o.key] = np.full(a.shape, np.nan, np.float32)
    return out


def to_anndata(
    pred: TilePredictions, obs: pd.DataFrame, spatial: np.ndarray, uns: dict[str, Any]
) -> ad.AnnData:
    """Predictions as AnnData: ``X`` the mean, one layer per other output, float32.

    Optional outputs no gene has (P(high) of a model without a classifier) get no layer.
    """
    import anndata as ad

    x = None
    layers: dict[str, np.ndarray] = {}
    for o in GENE_OUTPUTS:
        v = pred.values[o.key].astype(np.float32)
        if o.layer is None:
            x = v
        elif not o.optional or any(pred.defined(o.key)):
            layers[o.layer] = v
    obs = obs.copy()
    for t in TILE_OUTPUTS:
        tv = np.asarray(pred.values[t.key], np.float32)
        if not (t.optional and (not len(tv) or np.isnan(tv).all())):
            obs[t.key] = tv
    a = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=pred.genes))
    for name, v in layers.items():
        a.layers[name] = v
    a.obsm[Key.SPATIAL] = np.asarray(spatial, np.float64)
    a.uns[Key.UNS] = uns
    return a
