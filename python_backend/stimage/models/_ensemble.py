"""Ensembles of NB models and their predictive distributions.

An ensemble has K members that differ by bootstrap resampling of the training spots (the
NB GLM is convex, so seeds alone would give identical members) and, optionally, by encoder
(the paper's FSTImage averages several encoders). For a tile and gene, member ``k`` gives a
negative binomial with rate ``m_k`` per 10k UMIs and dispersion ``theta_k``. Then:

* aleatoric variance = mean over members of the NB variances,
* epistemic variance = variance over members of the NB means,
* total = aleatoric + epistemic (the law of total variance of the mixture).

They are reported on the count scale (at a given library size) and on the log-normalised
scale that users read. An ensemble also predicts each tile's sequencing depth ``s`` (a
:class:`~stimage.models._depth.DepthModel`), and member ``k``'s log-normalised expression is
the distribution of ``log1p(10k * Y / s)`` with ``Y ~ NB(m_k s / 10k, theta_k)``: its mean and
variance are computed per member (:func:`~stimage.models._depth.log1p_moments`); the
aleatoric variance is the mean of the members' variances, the epistemic variance the variance
of their means. (Bundles without a depth model use ``log1p(m_k)`` and the delta method.)
Predictive intervals are quantiles of the mixture of the members' NBs at the predicted depth.
Moments and quantiles come from one exact pass over the NB mass
(:func:`~stimage.models._nbmix.mixture_summary`), bounded in time.

Predictions are bounded by construction: a member's rate per 10k UMIs never exceeds 10k (all
of a spot's UMIs) nor falls below 1e-6, and the predicted depth stays near the range seen in
training, so an out-of-distribution tile (glass, a pen mark, the wrong scale) gets a finite,
bounded prediction instead of a mean of 1e21 counts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from stimage.errors import ConfigError
from stimage.models._depth import DepthModel
from stimage.models._linear import FeaturePipeline
from stimage.models._nb import FULL_BATCH_SPOTS, NBGLM, SCALE, NBGLMConfig
from stimage.models._nb_mlp import NBMLP, NBMLPConfig
from stimage.models._nb_select import HeldOut
from stimage.models._nbmix import MixtureSummary, mixture_quantiles, mixture_summary

__all__ = [
    "ExpressionPrediction",
    "NBEnsemble",
    "NBEnsembleConfig",
    "fit_pipeline",
    "gene_chunk",
    "mixture_pit",
    "mixture_quantiles",
]

logger = logging.getLogger(__name__)

#: Bounds of a member's log rate per 10k UMIs: from 1e-6 up to all of a spot's UMIs.
LOG_RATE_RANGE = (float(np.log(1e-6)), float(np.log(SCALE)))


@dataclass(frozen=True)
class NBEnsembleConfig:
    """Settings of :class:`NBEnsemble`.

    Attributes:
        members: Number of members.
        pca_dim: Principal components of the (standardised) features; None keeps all.
        glm: Settings of each member's NB GLM (the penalty is chosen once, on all data).
        bootstrap: Resample spots with replacement, within each section, per member.
        seed: Base seed.
        depth: Also learn each tile's sequencing depth from its features, so that predicted
            log-normalised expression is the expected ``log1p(counts / depth * 10k)``.
        hidden: Hidden units of a layer shared by all genes (:class:`NBMLP` members); None
            for the linear NB GLM.
        mlp: Other settings of the hidden-layer members.
    """

    members: int = 5
    pca_dim: int | None = 256
    glm: NBGLMConfig = field(default_factory=NBGLMConfig)
    bootstrap: bool = True
    seed: int = 0
    depth: bool = True
    hidden: int | None = None
    mlp: NBMLPConfig = field(default_factory=NBMLPConfig)

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ConfigError(f"an ensemble needs at least one member, got {self.members}")


@dataclass
class ExpressionPrediction:
    """Per-member NB parameters of tiles x genes, and the summaries derived from them.

    Attributes:
        genes: Gene names.
        log_rate: ``(K, n, g)`` log rate per 10k UMIs of each member.
        theta: ``(K, n, g)`` dispersion of each member.
        log_depth: ``(n,)`` predicted log library size of each tile (None: at 10k UMIs).
        novelty: ``(n,)`` how far each tile's features lie from the training tiles (1: the
            training's 99th percentile; see :meth:`FeaturePipeline.novelty`), or None.
        clipped: ``(n,)`` fraction of the members' log rates of each tile that exceeded the
            upper bound of :data:`LOG_RATE_RANGE` and were clipped, or None.
    """

    genes: list[str]
    log_rate: np.ndarray
    theta: np.ndarray
    log_depth: np.ndarray | None = None
    novelty: np.ndarray | None = None
    clipped: np.ndarray | None = None

    @property
    def rate(self) -> np.ndarray:
        """Mixture mean rate per 10k UMIs, ``(n, g)``."""
        return np.exp(self.log_rate).mean(axis=0)

    @property
    def depth(self) -> np.ndarray | None:
        """Predicted library size (UMIs) of each tile, ``(n,)``, or None."""
        return None if self.log_depth is None else np.exp(self.log_depth)

    def __post_init__(self) -> None:
        self._cache: dict[float | None, MixtureSummary] = {}

    def _summary(self, level: float | None) -> MixtureSummary:
        """Member moments (log-normalised) and, for a level, the interval's count quantiles."""
        if level in self._cache:
            return self._cache[level]
        if level is None and self._cache:
            return next(iter(self._cache.values()))
        qs = () if level is None else ((1 - level) / 2, (1 + level) / 2)
        lib = self.library()
        mu = np.exp(self.log_rate) * (lib[None, :, None] / SCALE)
        out = mixture_summary(
            mu, self.theta, (SCALE / lib)[:, None], qs, moments=self.log_depth is not None
        )
        if self.log_depth is None:
            # log1p(rate per 10k), the aleatoric part by the delta method.
            m = np.exp(self.log_rate)
            out.mean, out.var = np.log1p(m), (m + m**2 / self.theta) / (1.0 + m) ** 2
        self._cache[level] = out
        return out

    def library(self) -> np.ndarray:
        """``(n,)`` library size the intervals are at: the predicted depth, else 10k UMIs."""
        n = self.log_rate.shape[1]
        if self.log_depth is None:
            return np.full(n, SCALE)
        return np.exp(np.asarray(self.log_depth, np.float64))

    @property
    def _member_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per member, mean and variance of log-normalised expression, ``(K, n, g)`` each."""
        s = self._summary(None)
        assert s.mean is not None and s.var is not None
        return s.mean, s.var

    @property
    def mean(self) -> np.ndarray:
        """Predicted log-normalised expression, averaged over members, ``(n, g)``.

        With a predicted depth: the expected ``log1p(counts / depth * 10k)`` of each tile, the
        quantity measured in spatial data (see :mod:`stimage.models._depth`). Without one:
        ``log1p(rate per 10k)``.
        """
        return self._member_moments[0].mean(axis=0)

    @property
    def aleatoric_var(self) -> np.ndarray:
        """Aleatoric variance on the log-normalised scale (mean of the members'), ``(n, g)``."""
        return self._member_moments[1].mean(axis=0)

    @property
    def epistemic_var(self) -> np.ndarray:
        """Epistemic variance on the log-normalised scale, ``(n, g)`` (0 for one member)."""
        return self._member_moments[0].var(axis=0)

    def counts_moments(self, library_size: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, aleatoric and epistemic variance of the counts at given library sizes."""
        mu = np.exp(self.log_rate) * (np.asarray(library_size, np.float64)[None, :, None] / SCALE)
        alea = (mu + mu**2 / self.theta).mean(axis=0)
        return mu.mean(axis=0), alea, mu.var(axis=0)

    def count_quantiles(
        self, q: float | np.ndarray, library_size: np.ndarray | float = SCALE
    ) -> np.ndarray:
        """Quantiles ``q`` of the mixture of members' NBs over counts, ``(n, g)`` (or ``(len(q), n, g)``)."""
        lib = np.broadcast_to(np.asarray(library_size, np.float64), (self.log_rate.shape[1],))
        mu = np.exp(self.log_rate) * (lib[None, :, None] / SCALE)
        return mixture_quantiles(mu, self.theta, q)

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central predictive interval on the log-normalised scale.

        Quantiles of the counts at the predicted depth (at 10k UMIs without one), normalised.
        Computed with the member moments in one pass (later reads of ``mean`` reuse it).
        """
        s = self._summary(float(level))
        c = (SCALE / self.library())[:, None]
        return np.log1p(s.quantiles[0] * c), np.log1p(s.quantiles[1] * c)

    def subset(self, genes: list[str]) -> ExpressionPrediction:
        """The prediction for some genes, in the given order."""
        idx = [self.genes.index(g) for g in genes]
        return ExpressionPrediction(
            list(genes),
            self.log_rate[:, :, idx],
            self.theta[:, :, idx],
            self.log_depth,
            self.novelty,
            self.clipped,
        )


def mixture_pit(mu: np.ndarray, theta: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Randomised probability integral transform of counts under NB mixtures.

    ``u = F(y - 1) + v (F(y) - F(y - 1))`` with ``v ~ U(0, 1)`` and ``F`` the CDF of the
    equal-weight mixture of NB(mu_k, theta_k) over the first axis. Under a correct model ``u``
    is exactly uniform even for discrete counts (whose plain interval coverage is biased
    upward: an interval of whole counts holds at least its nominal mass).
    """
    from scipy.special import betainc

    mu = np.asarray(mu, np.float64)
    theta = np.asarray(theta, np.float64)
    y = np.asarray(y, np.float64)
    p = theta / (theta + mu)
    upper = betainc(theta, y[None] + 1.0, p).mean(axis=0)
    lower = np.where(y > 0, betainc(theta, np.maximum(y, 1.0)[None], p).mean(axis=0), 0.0)
    v = np.random.default_rng(seed).random(y.shape)
    return lower + v * (upper - lower)


@dataclass
class NBEnsemble:
    """Bootstrap ensemble of NB models (GLMs, or with a shared hidden layer) on PCA features.

    Attributes:
        config: Settings.
        genes: Gene names, in the order of the model's outputs.
        pipeline: Feature standardisation and PCA, fitted on all training features.
        members: The fitted NB GLMs.
        depth: The sequencing-depth model (None: expression at 10k UMIs).
    """

    config: NBEnsembleConfig = field(default_factory=NBEnsembleConfig)
    genes: list[str] = field(default_factory=list)
    pipeline: FeaturePipeline | None = None
    members: list[NBGLM | NBMLP] = field(default_factory=list)
    depth: DepthModel | None = None
    #: What the leave-one-section-out penalty selection said per gene (fitting only).
    held_out: HeldOut | None = None

    def fit(
        self,
        x: np.ndarray | Sequence[np.ndarray],
        counts: np.ndarray | Any,
        library_size: np.ndarray,
        genes: list[str],
        groups: np.ndarray | None = None,
    ) -> NBEnsemble:
        """Fit all members.

        Args:
            x: ``(n, d)`` encoder features, or a sequence of row blocks of them (e.g. one per
                section, computed on access): the PCA is then fitted on at most
                :data:`PCA_FIT_ROWS` rows drawn across the blocks and the blocks are projected
                one at a time, so the whole feature matrix is never in memory.
            counts: ``(n, g)`` raw counts of ``genes`` (dense, or scipy sparse).
            library_size: ``(n,)`` total UMIs per spot.
            genes: Gene names.
            groups: Section of each spot: the penalty is chosen by leave-one-section-out and
                bootstrap samples are drawn within sections.
        """
        c = self.config
        if counts.shape[1] != len(genes):
            raise ConfigError(f"{counts.shape[1]} count columns for {len(genes)} genes")
        self.pipeline, z = fit_pipeline(x, c.pca_dim, c.seed)
        return self.fit_projected(z, counts, library_size, genes, groups)

    def fit_projected(
        self,
        z: np.ndarray,
        counts: np.ndarray | Any,
        library_size: np.ndarray,
        genes: list[str],
        groups: np.ndarray | None = None,
        cv_groups: np.ndarray | None = None,
    ) -> NBEnsemble:
        """Fit the members on features already projected by :attr:`pipeline`.

        ``groups`` are the spots' sections (bootstrap and depth model within them);
        ``cv_groups`` (default ``groups``) what the penalty search and the interval
        calibration leave out in turn, e.g. spatial blocks of a single section.

        Genes are independent problems, fitted in chunks small enough that the chunk's
        spots-by-genes arrays fit in about :data:`FIT_BYTES` (one chunk for a few thousand
        spots; about 130 genes at a time for 150,000 spots), so memory does not grow with
        the genes. The penalty search uses at most :data:`SELECT_SPOTS` spots (drawn within
        sections) and at most :data:`SELECT_FOLDS` folds (sections grouped), so its cost does
        not grow with the spots or the sections; beyond ``FULL_BATCH_SPOTS`` spots the final
        fits run in minibatches (see :class:`~stimage.models.NBGLM`).
        """
        c = self.config
        self.genes = list(genes)
        self.depth = DepthModel().fit(z, library_size, groups) if c.depth else None
        if c.hidden:
            return self._fit_mlp(z, _dense(counts[:, : len(genes)]), library_size, groups)
        chunk = gene_chunk(len(z), len(genes))
        left_out = groups if cv_groups is None else cv_groups
        folds = None if left_out is None else section_folds(np.asarray(left_out), SELECT_FOLDS)
        sub = select_rows(folds, SELECT_SPOTS, c.seed)
        weights = _bootstrap_weights(len(z), groups, c.members - (0 if c.bootstrap else 1), c.seed)
        per_chunk: list[list[NBGLM]] = []
        held: list[HeldOut] = []
        for g0 in range(0, len(genes), chunk):
            y = _dense(counts[:, g0 : g0 + chunk])
            first = NBGLM(c.glm).fit(z, y, library_size, groups=folds, select_rows=sub)
            fixed = replace(c.glm, l2=first.l2_chosen)
            members = [first] if not c.bootstrap else []
            for w in weights:
                m = NBGLM(fixed).fit(
                    z, y, library_size, sample_weight=w, penalties=first.l2, init=first, fast=True
                )
                m.cv_loss, m.theta_scale = first.cv_loss, first.theta_scale
                members.append(m)
            per_chunk.append(members)
            logger.info(
                "NB ensemble: genes %d-%d of %d fitted (%d spots, %d members)",
                g0 + 1,
                min(g0 + chunk, len(genes)),
                len(genes),
                len(z),
                len(members),
            )
            if first.held_out is not None:
                held.append(first.held_out)
        glms = [NBGLM.concat([ms[k] for ms in per_chunk]) for k in range(len(per_chunk[0]))]
        self.members = list(glms)
        self.held_out = HeldOut.concat(held) if len(held) == len(per_chunk) else None
        lead = glms[0]
        if self.held_out is None:
            logger.warning(
                "NB ensemble: one section, so the penalty cannot be chosen on held-out sections "
                "(%.3g used) and the genes' held-out accuracy is not recorded; train on two or "
                "more sections for both",
                lead.l2_chosen,
            )
        else:
            logger.info(
                "NB ensemble: median penalty %.3g (held-out criterion per penalty %s)",
                lead.l2_chosen,
                lead.cv_loss,
            )
        return self

    def _fit_mlp(
        self,
        z: np.ndarray,
        counts: np.ndarray,
        library_size: np.ndarray,
        groups: np.ndarray | None,
    ) -> NBEnsemble:
        """Members with a shared hidden layer; the first chooses the steps for all."""
        c = self.config
        self.members = []
        steps = None
        weights: list[np.ndarray | None] = (
            list(_bootstrap_weights(len(z), groups, c.members, c.seed))
            if c.bootstrap
            else [None] * c.members
        )
        for k, w in enumerate(weights):
            cfg = replace(c.mlp, hidden=int(c.hidden or 0), seed=c.seed + k)
            m = NBMLP(cfg).fit(z, counts, library_size, groups, sample_weight=w, steps=steps)
            steps = m.steps
            self.members.append(m)
        logger.info(
            "NB ensemble: %d members with %d shared hidden units, %d steps",
            len(self.members),
            c.hidden,
            steps,
        )
        return self

    def predict(self, x: np.ndarray) -> ExpressionPrediction:
        """Per-member NB parameters for ``(n, d)`` features."""
        if self.pipeline is None or not self.members:
            raise ConfigError("the ensemble is not fitted")
        z = self.pipeline.transform(x)
        raw = np.stack([m.log_rate(z) for m in self.members])
        lr = np.clip(raw, *LOG_RATE_RANGE)
        # Rates bounded from above (more than all of a spot's UMIs) mark a tile unlike any the
        # model saw; rates floored near zero are only genes the tile does not express.
        clipped = (raw > LOG_RATE_RANGE[1]).mean(axis=(0, 2))
        th = np.stack([m.theta(z) for m in self.members])
        depth = None if self.depth is None else self.depth.predict(z)
        novelty = self.pipeline.novelty(z)
        return ExpressionPrediction(list(self.genes), lr, th, depth, novelty, clipped)


#: Most rows the feature PCA is fitted on when features come in blocks.
PCA_FIT_ROWS = 10_000
#: Most spots of the penalty search (drawn within sections).
SELECT_SPOTS = 6_000
#: Most folds of the penalty search (sections grouped when there are more).
SELECT_FOLDS = 4
#: Bytes a gene chunk's spots-by-genes arrays may take while fitting (about 12 of them).
FIT_BYTES = 1 << 30


def fit_pipeline(
    x: np.ndarray | Sequence[np.ndarray], pca_dim: int | None, seed: int
) -> tuple[FeaturePipeline, np.ndarray]:
    """The feature pipeline fitted on ``x`` (an array or row blocks), and ``x`` projected."""
    if isinstance(x, np.ndarray):
        pipe = FeaturePipeline(pca_dim).fit(x)
        return pipe, pipe.transform(x)
    sizes = [len(b) for b in x]
    n = sum(sizes)
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(n, min(n, PCA_FIT_ROWS), replace=False))
    starts = np.cumsum([0, *sizes])
    rows = [
        np.asarray(x[i], np.float32)[take[(take >= starts[i]) & (take < starts[i + 1])] - starts[i]]
        for i in range(len(sizes))
    ]
    pipe = FeaturePipeline(pca_dim).fit(np.concatenate(rows).astype(np.float64))
    z = np.concatenate([pipe.transform(x[i]).astype(np.float32) for i in range(len(sizes))])
    return pipe, z


def gene_chunk(n_spots: int, n_genes: int) -> int:
    """Genes fitted at once so that about 12 float64 spots-by-genes arrays fit :data:`FIT_BYTES`.

    Full-batch steps see at most :data:`~stimage.models._nb.FULL_BATCH_SPOTS` spots (more
    are fitted in minibatches), so that bounds the spots counted.
    """
    rows = min(max(n_spots, 1), FULL_BATCH_SPOTS)
    return int(np.clip(FIT_BYTES // (12 * 8 * rows), 16, max(n_genes, 16)))


def section_folds(groups: np.ndarray, most: int) -> np.ndarray:
    """Fold of each spot: its section, or with more sections than ``most``, a group of them.

    Sections are dealt to folds largest first, each to the fold with the fewest spots, so
    folds are of similar size and every section stays whole in one fold.
    """
    names, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if len(names) <= most:
        return np.asarray(groups)
    fold_of = np.zeros(len(names), int)
    load = np.zeros(most)
    for i in np.argsort(-sizes, kind="stable"):
        k = int(np.argmin(load))
        fold_of[i] = k
        load[k] += sizes[i]
    return np.array([f"fold{k}" for k in range(most)], dtype=object)[fold_of[inverse]]


def select_rows(folds: np.ndarray | None, most: int, seed: int) -> np.ndarray | None:
    """Spots of the penalty search: all, or ``most`` drawn in proportion within each fold."""
    if folds is None or len(folds) <= most:
        return None
    rng = np.random.default_rng(seed)
    out = []
    for f in np.unique(folds):
        idx = np.flatnonzero(folds == f)
        k = max(1, round(most * len(idx) / len(folds)))
        out.append(rng.choice(idx, min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(out))


def _dense(counts: Any) -> np.ndarray:
    """Counts as a dense float64 array (scipy sparse densified)."""
    if hasattr(counts, "toarray"):
        counts = counts.toarray()
    return np.asarray(counts, np.float64)


def _bootstrap_weights(
    n: int, groups: np.ndarray | None, count: int, seed: int
) -> list[np.ndarray]:
    """``count`` vectors of bootstrap multiplicities, resampling spots within each section."""
    rng = np.random.default_rng(seed)
    grp = np.zeros(n, int) if groups is None else np.unique(groups, return_inverse=True)[1]
    out = []
    for _ in range(count):
        w = np.zeros(n)
        for gi in np.unique(grp):
            idx = np.flatnonzero(grp == gi)
            np.add.at(w, rng.choice(idx, size=len(idx), replace=True), 1.0)
        out.append(w)
    return out
