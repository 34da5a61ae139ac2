"""Per-gene metrics of predicted spatial expression.

Every function takes arrays of spots x genes (a 1-D array is one gene) and returns one value
per gene, computed for all genes at once. A gene whose values are constant over the spots has
no correlation, z-score or Moran's I: it gets NaN, quietly (no warnings).

Groups, one module each (this module gathers them under one name):

* Agreement (:mod:`._agreement`): :func:`pearson_per_gene`, :func:`spearman_per_gene` (the
  main metric is PCC per gene across the spots of one held-out section, on
  :func:`normalise_log1p` expression), :func:`uncertainty_error_spearman`.
* Spatial (:mod:`._spatial`): :func:`grid_neighbours`, :func:`row_standardise`,
  :func:`morans_i`, :func:`bivariate_morans_i`, :func:`iou_per_gene`.
* Classifier (:mod:`._classification`): :func:`high_low`, :func:`roc_auc_per_gene`.
* Calibration (:mod:`._calibration`): :func:`interval_coverage`, :func:`coverage_curve` (with
  :func:`nb_quantiles` or :func:`sample_quantiles`), :func:`nb_pit`.
* Sparsification (:mod:`._sparsification`): :func:`sparsification_curves`,
  :func:`sparsification_auc`.
"""

from stimage.evaluation._agreement import (
    normalise_log1p,
    pearson_per_gene,
    spearman_per_gene,
    uncertainty_error_spearman,
)
from stimage.evaluation._calibration import (
    DEFAULT_LEVELS,
    QuantileFn,
    coverage_curve,
    interval_coverage,
    nb_pit,
    nb_quantiles,
    sample_quantiles,
)
from stimage.evaluation._classification import high_low, roc_auc_per_gene
from stimage.evaluation._sparsification import sparsification_auc, sparsification_curves
from stimage.evaluation._spatial import (
    bivariate_morans_i,
    grid_neighbours,
    iou_per_gene,
    morans_i,
    row_standardise,
)

__all__ = [
    "DEFAULT_LEVELS",
    "QuantileFn",
    "bivariate_morans_i",
    "coverage_curve",
    "grid_neighbours",
    "high_low",
    "interval_coverage",
    "iou_per_gene",
    "morans_i",
    "nb_pit",
    "nb_quantiles",
    "normalise_log1p",
    "pearson_per_gene",
    "roc_auc_per_gene",
    "row_standardise",
    "sample_quantiles",
    "sparsification_auc",
    "sparsification_curves",
    "spearman_per_gene",
    "uncertainty_error_spearman",
]
