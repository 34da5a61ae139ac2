"""Gene sets to train and evaluate on, fixed from the training samples only.

Choosing genes on the test sections (as the paper picked its "top-100 predictable" genes on
test results) leaks the answer; every function here sees only the training samples it is
given.

* :func:`top_hvg`: HEST-Benchmark's rule for its top-50 highly variable genes.
* :func:`top_mean`: HEST's rule for the most expressed genes.
* :data:`PAPER_PANEL` (the code's 14-gene panel) and :data:`PAPER_TEXT_PANEL` (the text's).
* :func:`gene_sets`: all of them, restricted to the genes a model predicts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
from scipy import sparse

from stimage.errors import ConfigError, InvalidSampleError

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["PAPER_PANEL", "PAPER_TEXT_PANEL", "gene_sets", "top_hvg", "top_mean"]

logger = logging.getLogger(__name__)

#: The 14-gene marker panel of the STImage code; use it where a benchmark says "the paper's
#: 14-gene panel" (and say it is the code's).
PAPER_PANEL: Final[tuple[str, ...]] = (
    "COX6C", "TTLL12", "PABPC1", "GNAS", "HSP90AB1", "TFF3", "ATP1A1",
    "B2M", "FASN", "SPARC", "CD74", "CD63", "CD24", "CD81",
)  # fmt: skip

#: The 14-gene panel as the paper's text lists it (immune: CD74, CD63, CD81; cancer: the rest).
PAPER_TEXT_PANEL: Final[tuple[str, ...]] = (
    "CD74", "CD63", "CD81", "COX6C", "TP53", "PABPC1", "GNAS",
    "B2M", "SPARC", "HSP90AB1", "TFF3", "ATP1A1", "FASN", "VEGFA",
)  # fmt: skip

#: Xenium negative-control and blank probes, dropped as HEST does.
_CONTROL_MARKERS = ("BLANK", "Control")


def _counts(sample: ad.AnnData | pd.DataFrame, k: int) -> tuple[Any, pd.Index]:
    """Spots x genes raw counts (dense or sparse) and gene names of one training sample."""
    if isinstance(sample, pd.DataFrame):
        return sample.to_numpy(), pd.Index(sample.columns.astype(str))
    if hasattr(sample, "X") and hasattr(sample, "var_names"):
        return sample.X, pd.Index(sample.var_names.astype(str))
    raise InvalidSampleError(
        f"training sample {k} is a {type(sample).__name__}; give AnnData samples (raw counts in X) "
        "or spots x genes DataFrames of counts"
    )


def _detected(x: Any) -> np.ndarray:
    if sparse.issparse(x):
        return np.asarray((x > 0).sum(axis=0)).ravel()
    return (np.asarray(x) > 0).sum(axis=0)


def _common_genes(
    train: Sequence[ad.AnnData | pd.DataFrame],
    min_detected_frac: float,
    candidates: Iterable[str] | None,
) -> list[str]:
    """Genes detected in >= ``ceil(frac * n_spots)`` spots of every sample, sorted by name."""
    if not 0 <= min_detected_frac <= 1:
        raise ConfigError(f"min_detected_frac must lie in [0, 1], got {min_detected_frac}")
    if len(train) == 0:
        raise InvalidSampleError("no training samples given; gene sets come from training data")
    per_sample = []
    for k, sample in enumerate(train):
        x, genes = _counts(sample, k)
        if x.shape[1] != len(genes):
            raise InvalidSampleError(
                f"training sample {k}: {x.shape[1]} columns but {len(genes)} genes"
            )
        need = math.ceil(min_detected_frac * x.shape[0])
        per_sample.append(set(genes[_detected(x) >= need]))
    common = set.intersection(*per_sample)
    if candidates is not None:
        common &= {str(g) for g in candidates}
    out = sorted(g for g in common if not any(m in g for m in _CONTROL_MARKERS))
    if not out:
        raise InvalidSampleError(
            f"no gene is detected in at least {min_detected_frac:.0%} of the spots of every one of "
            f"the {len(train)} training samples{' among the candidates' if candidates is not None else ''}"
        )
    return out


def _mean_var(
    train: Sequence[ad.AnnData | pd.DataFrame], genes: list[str]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and sample variance (ddof 1) of raw counts over the stacked spots of all samples."""
    s1 = np.zeros(len(genes))
    s2 = np.zeros(len(genes))
    n = 0
    for k, sample in enumerate(train):
        x, names = _counts(sample, k)
        idx = names.get_indexer(genes)
        sub = x[:, idx]
        if sparse.issparse(sub):
            sp = sparse.csr_matrix(sub, dtype=np.float64)
            s1 += np.asarray(sp.sum(axis=0)).ravel()
            s2 += np.asarray(sp.multiply(sp).sum(axis=0)).ravel()
        else:
            d = np.asarray(sub, dtype=np.float64)
            s1 += d.sum(axis=0)
            s2 += (d * d).sum(axis=0)
        n += x.shape[0]
    mean = s1 / n
    var = (s2 - n * mean**2) / (n - 1) if n > 1 else np.full_like(mean, np.nan)
    return mean, np.maximum(var, 0.0), n


def _seurat_dispersion_norm(mean: np.ndarray, var: np.ndarray, n_bins: int) -> np.ndarray:
    """Scanpy's ``flavor="seurat"`` normalised dispersion, from the mean and variance of counts.

    ``expm1`` undoes the ``log1p`` HEST applies first, so the statistics are those of the raw
    counts: log dispersion ``log(var / mean)``, binned by ``log1p(mean)`` into ``n_bins`` equal
    intervals and z-scored within each bin (a bin holding one gene gives it 1).
    """
    mean = np.where(mean == 0, 1e-12, mean)
    with np.errstate(all="ignore"):
        disp = var / mean
        disp[disp == 0] = np.nan
        disp = np.log(disp)
    df = pd.DataFrame({"means": np.log1p(mean), "dispersions": disp})
    df["mean_bin"] = pd.cut(df["means"], bins=n_bins)
    grouped = df.groupby("mean_bin", observed=True)["dispersions"]
    st = grouped.agg(avg="mean", dev="std")
    one = st["dev"].isna()
    st.loc[one, "dev"] = st.loc[one, "avg"]
    st.loc[one, "avg"] = 0.0
    per_gene = st.loc[df["mean_bin"]].to_numpy(dtype=np.float64)
    with np.errstate(all="ignore"):
        return (df["dispersions"].to_numpy() - per_gene[:, 0]) / per_gene[:, 1]


def top_hvg(
    train: Sequence[ad.AnnData | pd.DataFrame],
    n: int = 50,
    *,
    min_detected_frac: float = 0.1,
    candidates: Iterable[str] | None = None,
    n_bins: int = 20,
) -> list[str]:
    """The ``n`` most highly variable genes of the training samples, as HEST-Benchmark picks them.

    HEST's ``get_k_genes(adata_list, k, criteria="var", min_cells_pct=0.10)``
    (mahmoodlab/HEST, ``src/hest/utils.py``; it wrote the benchmark's ``var_50genes.json``):

    1. per sample, keep genes detected (count > 0) in at least ``ceil(0.10 * n_spots)``
       spots; keep genes that pass in every sample; drop names containing ``BLANK`` or
       ``Control`` (Xenium controls);
    2. stack the raw counts of all samples (no library-size normalisation), ``log1p``;
    3. scanpy ``highly_variable_genes(n_top_genes=n)``, default ``flavor="seurat"``: since that
       flavour ``expm1``'s the data, it ranks genes by the log dispersion ``log(var / mean)`` of
       the raw counts, z-scored within 20 bins of ``log1p(mean)``;
    4. keep genes at or above the ``n``-th highest normalised dispersion, the first ``n`` of
       them in name order.

    Differences: only training samples are passed in (HEST used every sample of a task), the
    statistics are float64 (HEST cast to float32), and ``candidates`` may restrict step 1 to the
    genes a model predicts. The 10% filter is also the paper's ("after dropping genes detected
    in under 10% of spots").

    Args:
        train: Training samples: AnnData with raw counts in ``X`` or spots x genes DataFrames.
        n: How many genes.
        min_detected_frac: Fraction of a sample's spots a gene must be detected in.
        candidates: Only consider these genes.
        n_bins: Mean bins of the dispersion normalisation.

    Returns:
        Up to ``n`` gene names, sorted by name (HEST's order); fewer if fewer genes qualify.

    Raises:
        InvalidSampleError: No samples, or no gene passes the filter.
        ConfigError: ``n`` or ``min_detected_frac`` out of range.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> flat = rng.poisson(np.linspace(2, 20, 1000), (300, 1000))  # Poisson: dispersion 1
        >>> bursty = rng.negative_binomial(1, 1 / np.array([6, 11, 16]), (300, 3))
        >>> df = pd.DataFrame(np.hstack([flat, bursty])).add_prefix("g")
        >>> top_hvg([df], n=3)
        ['g1000', 'g1001', 'g1002']
    """
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    genes = _common_genes(train, min_detected_frac, candidates)
    mean, var, _ = _mean_var(train, genes)
    norm = _seurat_dispersion_norm(mean, var, n_bins)
    finite = norm[~np.isnan(norm)]
    if finite.size == 0:
        logger.warning("no gene varies across the training spots; no highly variable genes")
        return []
    k = min(n, finite.size)
    if k < n:
        logger.info("only %d genes qualify for the top %d highly variable genes", k, n)
    cutoff = np.sort(finite)[::-1][k - 1]
    chosen = np.nan_to_num(norm, nan=-np.inf) >= cutoff
    return [g for g, c in zip(genes, chosen, strict=True) if c][:n]


def top_mean(
    train: Sequence[ad.AnnData | pd.DataFrame],
    n: int = 250,
    *,
    min_detected_frac: float = 0.1,
    candidates: Iterable[str] | None = None,
) -> list[str]:
    """The ``n`` genes of largest mean raw count over the stacked training spots (HEST's rule).

    HEST's ``get_k_genes(..., criteria="mean")``: the same per-sample 10% detection filter and
    common genes as :func:`top_hvg`, then the largest ``sum / n_spots`` of raw counts.

    Args:
        train: Training samples (AnnData or DataFrames of counts).
        n: How many genes.
        min_detected_frac: Fraction of a sample's spots a gene must be detected in.
        candidates: Only consider these genes.

    Returns:
        Up to ``n`` gene names, most expressed first.

    Example:
        >>> df = pd.DataFrame({"a": [1, 2], "b": [9, 8], "c": [4, 4]})
        >>> top_mean([df], n=2)
        ['b', 'c']
    """
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    genes = _common_genes(train, min_detected_frac, candidates)
    mean, _, _ = _mean_var(train, genes)
    return pd.Series(mean, index=genes).nlargest(n).index.tolist()


def _panel(name: str, panel: Sequence[str], available: set[str]) -> list[str]:
    missing = [g for g in panel if g not in available]
    if missing:
        logger.info(
            "gene set %s: %d of %d genes not available: %s",
            name,
            len(missing),
            len(panel),
            ", ".join(missing),
        )
    return [g for g in panel if g in available]


def gene_sets(
    train: Sequence[ad.AnnData | pd.DataFrame],
    genes_available: Iterable[str],
    *,
    n_hvg: Sequence[int] = (50, 1000),
    n_mean: int = 250,
    min_detected_frac: float = 0.1,
) -> dict[str, list[str]]:
    """The gene sets of an evaluation, chosen on the training samples.

    Args:
        train: Training samples (AnnData with raw counts or DataFrames of counts), never test.
        genes_available: Genes the model predicts (and the test samples hold); every set is
            restricted to them.
        n_hvg: Sizes of highly variable gene sets: 50 (HEST-Benchmark), 1000 (the paper).
        n_mean: Size of the most-expressed set.
        min_detected_frac: Detection filter of :func:`top_hvg` and :func:`top_mean`.

    Returns:
        ``{"hvg50": [...], "hvg1000": [...], "mean250": [...], "paper_panel": [...],
        "paper_text_panel": [...]}``; missing panel genes are left out and logged.

    Example:
        >>> df = pd.DataFrame({"CD74": [1, 3, 0, 5], "B2M": [9, 8, 9, 7], "X": [2, 2, 1, 2]})
        >>> sets = gene_sets([df], ["CD74", "B2M", "X"], n_hvg=[], n_mean=2)
        >>> sets
        {'mean2': ['B2M', 'CD74'], 'paper_panel': ['B2M', 'CD74'], 'paper_text_panel': ['CD74', 'B2M']}
    """
    available = {str(g) for g in genes_available}
    out: dict[str, list[str]] = {}
    for k in n_hvg:
        out[f"hvg{k}"] = top_hvg(
            train, k, min_detected_frac=min_detected_frac, candidates=available
        )
    out[f"mean{n_mean}"] = top_mean(
        train, n_mean, min_detected_frac=min_detected_frac, candidates=available
    )
    out["paper_panel"] = _panel("paper_panel", PAPER_PANEL, available)
    out["paper_text_panel"] = _panel("paper_text_panel", PAPER_TEXT_PANEL, available)
    return out
