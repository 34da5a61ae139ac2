from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from scipy import sparse, stats
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from stimage.errors import ConfigError, InvalidSampleError, SpotMismatchError
from stimage.evaluation._metrics import (
    bivariate_morans_i,
    coverage_curve,
    grid_neighbours,
    high_low,
    interval_coverage,
    iou_per_gene,
    morans_i,
    nb_pit,
    nb_quantiles,
    normalise_log1p,
    pearson_per_gene,
    roc_auc_per_gene,
    row_standardise,
    sample_quantiles,
    sparsification_auc,
    sparsification_curves,
    spearman_per_gene,
    uncertainty_error_spearman,
)


def square_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return r.ravel(), c.ravel()


def visium_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Visium layout: row r holds columns of r's parity, 2 apart."""
    rows, cols = [], []
    for r in range(h):
        for c in range(r % 2, 2 * w, 2):
            rows.append(r)
            cols.append(c)
    return np.array(rows), np.array(cols)


# --------------------------------------------------------------------------- agreement


def test_pearson_and_spearman_match_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 6))
    b = 0.5 * a + rng.normal(size=(60, 6))
    b[:, 3] = np.round(b[:, 3])  # ties
    a[:, 4] = np.round(a[:, 4] * 2)
    pr = [stats.pearsonr(a[:, g], b[:, g])[0] for g in range(6)]
    sr = [stats.spearmanr(a[:, g], b[:, g])[0] for g in range(6)]
    np.testing.assert_allclose(pearson_per_gene(a, b), pr, atol=1e-12)
    np.testing.assert_allclose(spearman_per_gene(a, b), sr, atol=1e-12)
    np.testing.assert_allclose(uncertainty_error_spearman(a, b), sr, atol=1e-12)
    assert pearson_per_gene(a[:, 0], b[:, 0]).shape == (1,)


def test_constant_genes_give_nan_quietly() -> None:
    rng = np.random.default_rng(1)
    r, c = square_grid(6, 6)
    a = rng.normal(size=(36, 4))
    b = rng.normal(size=(36, 4))
    a[:, 1] = 0.1  # constant with a value that is not exact in binary
    b[:, 2] = 0.0
    w = grid_neighbours(r, c, "legacy_st")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = [
            pearson_per_gene(a, b),
            spearman_per_gene(a, b),
            bivariate_morans_i(a, b, w),
            iou_per_gene(a, b, r, c),
        ]
        mi = morans_i(a, w)
        auc = roc_auc_per_gene(a, high_low(b))
    for res in results:
        assert np.isnan(res[1]) and np.isnan(res[2])
        assert np.isfinite(res[[0, 3]]).all()
    assert np.isnan(mi[1]) and np.isfinite(mi[[0, 2, 3]]).all()
    assert np.isnan(auc[2])  # one class only


def test_shapes_must_agree() -> None:
    with pytest.raises(SpotMismatchError):
        pearson_per_gene(np.zeros((5, 2)), np.zeros((6, 2)))
    with pytest.raises(InvalidSampleError):
        pearson_per_gene(np.zeros((5, 2)), np.zeros((5, 3)))


def test_normalise_log1p_dense_and_sparse() -> None:
    counts = np.array([[1, 3, 0], [0, 0, 0], [2, 2, 4]])
    expected = np.log1p(np.array([[2.5, 7.5, 0], [0, 0, 0], [2.5, 2.5, 5]]))
    np.testing.assert_allclose(normalise_log1p(counts, target_sum=10), expected)
    out = normalise_log1p(sparse.csr_matrix(counts), target_sum=10)
    assert sparse.issparse(out)
    np.testing.assert_allclose(out.toarray(), expected)
    assert counts[0, 0] == 1  # input untouched
    with pytest.raises(InvalidSampleError):
        normalise_log1p(np.array([[-1, 2]]))
    with pytest.raises(ConfigError):
        normalise_log1p(counts, target_sum=0)


# --------------------------------------------------------------------------- grids


def test_queen_neighbours_on_a_square_grid() -> None:
    r, c = square_grid(4, 5)
    w = grid_neighbours(r, c, "legacy_st")
    deg = np.asarray(w.sum(axis=1)).ravel().reshape(4, 5)
    assert deg[1:-1, 1:-1].tolist() == [[8, 8, 8], [8, 8, 8]]
    assert deg[0, 0] == deg[-1, -1] == 3
    assert deg[0, 2] == deg[2, 0] == 5
    assert (w != w.T).nnz == 0 and w.diagonal().sum() == 0
    # xenium pseudo-spot bins use the same square grid
    assert (grid_neighbours(r, c, "xenium") != w).nnz == 0


def test_hex_neighbours_on_a_visium_grid() -> None:
    r, c = visium_grid(6, 10)
    w = grid_neighbours(r, c, "visium")
    deg = np.asarray(w.sum(axis=1)).ravel()
    interior = (r > 0) & (r < 5) & (c > 1) & (c < 18)
    assert (deg[interior] == 6).all() and deg.max() == 6
    i = np.flatnonzero((r == 2) & (c == 6))[0]
    got = {(int(r[j]), int(c[j])) for j in w[i].indices}
    assert got == {(2, 4), (2, 8), (1, 5), (1, 7), (3, 5), (3, 7)}
    assert (w != w.T).nnz == 0


def test_grid_errors() -> None:
    with pytest.raises(InvalidSampleError, match="share the grid cell"):
        grid_neighbours([0, 0], [1, 1], "legacy_st")
    with pytest.raises(ConfigError, match="platform"):
        grid_neighbours([0], [0], "slide-seq")
    with pytest.raises(InvalidSampleError, match="whole numbers"):
        grid_neighbours([0.5], [0], "legacy_st")


# --------------------------------------------------------------------------- Moran's I


def reference_moran(x: np.ndarray, w: np.ndarray) -> float:
    """Textbook double sum with row-standardised dense weights."""
    n = len(x)
    ws = np.array([row / row.sum() if row.sum() else row for row in w], dtype=float)
    z = x - x.mean()
    num = sum(ws[i, j] * z[i] * z[j] for i in range(n) for j in range(n))
    return n / ws.sum() * num / (z @ z)


def test_morans_i_of_a_2x2_checkerboard_is_minus_a_third() -> None:
    # queen on 2 x 2: every cell neighbours the other three; Wz_i = -z_i / 3, so I = -1/3
    r, c = square_grid(2, 2)
    w = grid_neighbours(r, c, "legacy_st")
    np.testing.assert_allclose(morans_i(np.array([1.0, 0, 0, 1]), w), [-1 / 3])


def test_morans_i_of_3x3_stripes_by_hand() -> None:
    # columns 1, 0, 1 on a 3 x 3 queen grid: mean 2/3, z = 1/3 (ones) or -2/3 (zeros), z'z = 2.
    # z_i * mean(z of neighbours): 4 corners -1/9 each, 2 side cells of the 1-columns -4/45 each,
    # 2 side cells of the 0-column -4/45 each, centre -1/18; sum -77/90; I = -77/90 / 2.
    r, c = square_grid(3, 3)
    x = np.array([1.0, 0, 1] * 3)
    w = grid_neighbours(r, c, "legacy_st")
    np.testing.assert_allclose(morans_i(x, w), [-77 / 180])
    np.testing.assert_allclose(reference_moran(x, w.toarray()), -77 / 180)


def test_morans_i_gradient_noise_and_islands() -> None:
    r, c = square_grid(15, 15)
    w = grid_neighbours(r, c, "legacy_st")
    assert morans_i((r + c).astype(float), w)[0] > 0.85
    rng = np.random.default_rng(3)
    noise = morans_i(rng.normal(size=(225, 400)), w)
    se = noise.std() / np.sqrt(noise.size)
    assert abs(noise.mean() - (-1 / 224)) < 4 * se
    # a spot without neighbours: weights sum to n - 1
    r2, c2 = np.append(r[:20], 40), np.append(c[:20], 40)
    x = rng.normal(size=21)
    w2 = grid_neighbours(r2, c2, "legacy_st")
    np.testing.assert_allclose(morans_i(x, w2), [reference_moran(x, w2.toarray())])


def test_bivariate_morans_i_by_hand() -> None:
    # 3 spots in a row: W rows [0,1,0], [.5,0,.5], [0,1,0]. x=[1,2,4]: deviations [-4,-1,5]/3,
    # sd sqrt(14)/3. y=[1,3,2]: deviations [-1,1,0], sd sqrt(2/3), lag of deviations [1,-.5,1].
    # dx' W dy = -4/3 + 1/6 + 5/3 = 1/2;  I = (1/2) / (sx * sy) / 3 = 0.5 / sqrt(28/3).
    w = grid_neighbours([0, 0, 0], [0, 1, 2], "legacy_st")
    np.testing.assert_allclose(
        bivariate_morans_i([1.0, 2, 4], [1.0, 3, 2], w), [0.5 / np.sqrt(28 / 3)]
    )


def test_bivariate_morans_i_matches_pysal_and_univariate() -> None:
    rng = np.random.default_rng(4)
    r, c = visium_grid(8, 8)
    w = grid_neighbours(r, c, "visium")
    x, y = rng.normal(size=(2, r.size, 3))
    # esda.Moran_BV: z with ddof=1, I = sum(zx * (W zy)) / (n - 1), W row-standardised
    ws = row_standardise(w)
    zx = (x - x.mean(0)) / x.std(0, ddof=1)
    zy = (y - y.mean(0)) / y.std(0, ddof=1)
    pysal = (zx * (ws @ zy)).sum(0) / (r.size - 1)
    np.testing.assert_allclose(bivariate_morans_i(x, y, w), pysal)
    assert not np.allclose(bivariate_morans_i(x, y, w), bivariate_morans_i(y, x, w))
    np.testing.assert_allclose(bivariate_morans_i(x, x, w), morans_i(x, w))


def test_weights_must_match_spots() -> None:
    w = grid_neighbours(*square_grid(2, 2), "legacy_st")
    with pytest.raises(SpotMismatchError):
        morans_i(np.zeros(5), w)


# --------------------------------------------------------------------------- IoU


def test_iou_identical_opposite_and_hand_cases() -> None:
    r, c = square_grid(10, 12)
    truth = np.stack([np.sin(r / 2.0) + np.cos(c / 3.0), r - c * 0.5], axis=1)
    np.testing.assert_allclose(iou_per_gene(truth * 3 + 1, truth, r, c), [1.0, 1.0])
    np.testing.assert_allclose(iou_per_gene(-truth, truth, r, c), [0.0, 0.0])
    # no smoothing: truth high at 3 spots, prediction at 3, 2 shared -> 2 / 4
    rr, cc = [0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2]
    np.testing.assert_allclose(
        iou_per_gene([1.0, 1, 0, 1, 0, 0], [1.0, 1, 1, 0, 0, 0], rr, cc, sigma=0), [0.5]
    )
    with pytest.raises(ConfigError):
        iou_per_gene(truth, truth, r, c, sigma=-1)


def test_iou_matches_a_direct_2d_computation() -> None:
    # a 5 x 6 grid with two empty cells; images built by hand, filtered with scipy directly
    r, c = square_grid(5, 6)
    keep = ~(((r == 0) & (c == 5)) | ((r == 3) & (c == 2)))
    r, c = r[keep], c[keep]
    truth = (c <= 2).astype(float) + 0.1 * r  # high: left half, plus the lower part of the right
    pred = (r <= 2).astype(float)
    img_t = np.zeros((5, 6))
    img_p = np.zeros((5, 6))
    img_t[r, c] = truth > truth.mean()
    img_p[r, c] = pred > pred.mean()
    spots = np.zeros((5, 6), bool)
    spots[r, c] = True
    mt = (gaussian_filter(img_t, 1.0, mode="constant") > 0.5) & spots
    mp = (gaussian_filter(img_p, 1.0, mode="constant") > 0.5) & spots
    expected = (mt & mp).sum() / (mt | mp).sum()
    assert 0 < expected < 1
    np.testing.assert_allclose(iou_per_gene(pred, truth, r, c), [expected])


def test_iou_on_a_visium_grid(caplog: pytest.LogCaptureFixture) -> None:
    r, c = visium_grid(12, 12)
    truth = np.stack([r.astype(float), np.cos(c / 5.0)], axis=1)
    np.testing.assert_allclose(iou_per_gene(truth, truth, r, c, platform="visium"), [1.0, 1.0])
    np.testing.assert_allclose(iou_per_gene(-truth, truth, r, c, platform="visium"), [0.0, 0.0])
    with caplog.at_level(logging.WARNING, logger="stimage.evaluation._spatial"):
        iou_per_gene(truth, truth, r, c)
    assert "visium" in caplog.text
    # normalised convolution keeps a strip one spot wide that the paper's filter loses
    rs, cs = np.zeros(12, int), np.arange(12)
    strip = (cs < 6).astype(float)
    assert np.isnan(iou_per_gene(strip, strip, rs, cs)[0])
    assert iou_per_gene(strip, strip, rs, cs, normalise=True)[0] == 1.0


# --------------------------------------------------------------------------- classifier


def test_auc_matches_sklearn_with_true_labels_first() -> None:
    rng = np.random.default_rng(5)
    truth = rng.normal(size=(80, 4))
    labels = high_low(truth)
    prob = 1 / (1 + np.exp(-(truth + rng.normal(scale=1.5, size=truth.shape))))
    prob[:, 1] = np.round(prob[:, 1], 1)  # ties
    ours = roc_auc_per_gene(prob, labels)
    right = [roc_auc_score(labels[:, g], prob[:, g]) for g in range(4)]
    np.testing.assert_allclose(ours, right, atol=1e-12)
    swapped = [roc_auc_score((prob[:, g] > 0.5).astype(int), labels[:, g]) for g in range(4)]
    assert not np.allclose(ours, swapped, atol=1e-3)
    with pytest.raises(InvalidSampleError):
        roc_auc_per_gene(prob, truth)


# --------------------------------------------------------------------------- calibration


def test_interval_coverage_leaves_out_nan() -> None:
    np.testing.assert_allclose(
        interval_coverage([0, 0, 0, 0], [2, 2, 2, 2], [1, 2, 3, np.nan]), [2 / 3]
    )


def test_nb_coverage_of_the_true_model_is_nominal_and_low_when_overconfident() -> None:
    rng = np.random.default_rng(6)
    n = 8000
    mu = rng.uniform(100, 400, size=(n, 3))
    theta = np.array([5.0, 10.0, 20.0])
    y = rng.negative_binomial(theta, theta / (theta + mu))
    df = coverage_curve(y, nb_quantiles(mu, theta), genes=["a", "b", "c"])
    assert list(df.columns) == ["nominal", "observed", "a", "b", "c"]
    assert df.index.name == "level"
    np.testing.assert_allclose(df["observed"], df["nominal"], atol=0.02)
    over = coverage_curve(y, nb_quantiles(mu, theta * 100))
    assert (over["observed"] < over["nominal"] - 0.25).all()
    with pytest.raises(ConfigError):
        coverage_curve(y, nb_quantiles(mu, theta), levels=[1.0])


def test_sample_quantiles_coverage() -> None:
    rng = np.random.default_rng(7)
    draws = rng.normal(size=(400, 3000, 2))
    y = rng.normal(size=(3000, 2))
    df = coverage_curve(y, sample_quantiles(draws), levels=[0.5, 0.9])
    np.testing.assert_allclose(df["observed"], [0.5, 0.9], atol=0.03)


def test_randomised_pit_is_uniform_for_the_true_model() -> None:
    rng = np.random.default_rng(8)
    mu = rng.uniform(0.2, 8.0, size=(4000, 2))  # small means: discreteness matters
    theta = 2.0
    y = rng.negative_binomial(theta, theta / (theta + mu))
    u = nb_pit(mu, theta, y, seed=1)
    assert u.shape == y.shape and ((u >= 0) & (u <= 1)).all()
    assert stats.kstest(u.ravel(), "uniform").pvalue > 0.01
    over = nb_pit(mu, 200.0, y, seed=1)
    assert stats.kstest(over.ravel(), "uniform").pvalue < 1e-6
    with pytest.raises(InvalidSampleError):
        nb_pit(mu, -1.0, y)


# --------------------------------------------------------------------------- sparsification


def test_ause_is_zero_for_the_oracle_and_larger_for_random() -> None:
    rng = np.random.default_rng(9)
    err = np.abs(rng.normal(size=(500, 4)))
    np.testing.assert_allclose(sparsification_auc(err, err), 0.0, atol=1e-12)
    good = sparsification_auc(err + rng.normal(scale=0.1, size=err.shape), err)
    rand = sparsification_auc(rng.random(err.shape), err)
    assert (good < 0.05).all() and (rand > 0.15).all()
    # a constant uncertainty breaks all ties at random: its curve stays at 1 in expectation
    f, model, oracle = sparsification_curves(np.ones_like(err), err)
    np.testing.assert_allclose(model, 1.0)
    np.testing.assert_allclose(oracle[0], 1.0)
    assert f[0] == 0 and f.size == 500
    np.testing.assert_allclose(
        sparsification_auc(np.ones_like(err), err), (1 - oracle).mean(axis=0)
    )
    # no error at all: nothing to rank
    assert np.isnan(sparsification_auc(err[:, :1], np.zeros((500, 1)))[0])
