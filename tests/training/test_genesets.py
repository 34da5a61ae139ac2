from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from stimage.errors import ConfigError, InvalidSampleError
from stimage.training._genesets import (
    PAPER_PANEL,
    PAPER_TEXT_PANEL,
    gene_sets,
    top_hvg,
    top_mean,
)


def nb_samples(
    seed: int = 7, sizes: tuple[int, ...] = (180, 240), n_genes: int = 300
) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    names = [f"G{i:03d}" for i in range(n_genes)]
    out = []
    for n in sizes:
        mu = np.exp(rng.normal(0.5, 1.2, n_genes))
        theta = np.exp(rng.normal(1.0, 1.5, n_genes))
        x = rng.negative_binomial(theta, theta / (theta + mu), size=(n, n_genes))
        out.append(pd.DataFrame(x, columns=names))
    return out


def poisson_sample(
    rng: np.random.Generator, n: int, genes: dict[str, np.ndarray | float]
) -> pd.DataFrame:
    """Spots x genes counts: a float is a Poisson mean, an array is the column itself."""
    cols = {g: (v if isinstance(v, np.ndarray) else rng.poisson(v, n)) for g, v in genes.items()}
    return pd.DataFrame(cols)


# Computed once with HEST's get_k_genes (mahmoodlab/HEST, src/hest/utils.py) and scanpy 1.12 on
# nb_samples(): ``get_k_genes(adatas, 20, "var")`` and ``get_k_genes(adatas, 10, "mean")``.
HEST_VAR_20 = [
    "G022", "G031", "G042", "G049", "G052", "G066", "G067", "G092", "G093", "G135",
    "G186", "G195", "G198", "G201", "G207", "G219", "G220", "G270", "G273", "G289",
]  # fmt: skip
HEST_MEAN_10 = ["G208", "G037", "G132", "G117", "G260", "G076", "G249", "G272", "G015", "G077"]


def test_same_genes_as_hest_with_scanpy() -> None:
    train = nb_samples()
    assert top_hvg(train, 20) == HEST_VAR_20
    assert top_mean(train, 10) == HEST_MEAN_10


def test_anndata_sparse_and_dataframe_inputs_agree() -> None:
    train = nb_samples()
    adatas = []
    for df in train:
        a = ad.AnnData(sparse.csr_matrix(df.to_numpy(np.int32)))
        a.var_names = list(df.columns)
        adatas.append(a)
    assert top_hvg(adatas, 20) == HEST_VAR_20
    assert top_mean(adatas, 10) == HEST_MEAN_10
    with pytest.raises(InvalidSampleError, match="AnnData"):
        top_hvg([np.zeros((3, 3))])


def test_only_training_samples_decide() -> None:
    rng = np.random.default_rng(0)
    # enough flat genes that each mean bin of the dispersion z-score holds dozens
    base = {f"F{i:04d}": float(m) for i, m in enumerate(np.linspace(2, 20, 1000))}
    base["BURSTY"] = rng.negative_binomial(1, 1 / 11, 300).astype(float)
    train = [poisson_sample(rng, 300, {**base, "TESTVAR": 10.0}) for _ in range(2)]
    base["BURSTY"] = rng.negative_binomial(1, 1 / 11, 300).astype(float)
    test = poisson_sample(
        rng, 300, {**base, "TESTVAR": rng.negative_binomial(1, 1 / 11, 300).astype(float)}
    )
    genes = list(test.columns)
    hvg = gene_sets(train, genes, n_hvg=[3])["hvg3"]
    assert "BURSTY" in hvg and "TESTVAR" not in hvg
    assert "TESTVAR" in top_hvg(
        [*train, test], 3
    )  # it would be picked if the test sample were seen


def test_detection_filter_common_genes_and_controls() -> None:
    rng = np.random.default_rng(1)
    n = 200
    rare = np.zeros(n)
    rare[:19] = rng.integers(50, 100, 19)  # detected in 9.5% of spots: dropped, however variable
    common = {f"F{i:03d}": float(m) for i, m in enumerate(np.linspace(2, 20, 100))}
    bursty = {
        k: rng.negative_binomial(1, 1 / 11, n).astype(float)
        for k in ("BURSTY", "BLANK_0001", "NegControlProbe_7")
    }
    s1 = poisson_sample(
        rng,
        n,
        {
            **common,
            **bursty,
            "RARE": rare,
            "ONLY_S1": rng.negative_binomial(1, 0.1, n).astype(float),
        },
    )
    s2 = poisson_sample(rng, n, {**common, **bursty, "RARE": rng.poisson(5.0, n).astype(float)})
    assert top_hvg([s1, s2], 1) == ["BURSTY"]
    assert set(top_mean([s1, s2], 500)) == set(common) | {"BURSTY"}
    rare[19] = 60  # now in 10% of the spots
    s1["RARE"] = rare
    assert "RARE" in top_mean([s1, s2], 500)
    assert "RARE" not in top_mean([s1, s2], 500, min_detected_frac=0.2)


def test_top_mean_is_ranked_and_arguments_are_checked() -> None:
    df = pd.DataFrame({"a": [1, 2], "b": [9, 8], "c": [4, 5]})
    assert top_mean([df], 3) == ["b", "c", "a"]
    assert top_mean([df], 2, candidates=["a", "c"]) == ["c", "a"]
    with pytest.raises(ConfigError):
        top_hvg([df], 0)
    with pytest.raises(ConfigError):
        top_mean([df], 2, min_detected_frac=1.5)
    with pytest.raises(InvalidSampleError, match="no training samples"):
        top_hvg([], 5)
    with pytest.raises(InvalidSampleError, match="no gene"):
        top_mean([df], 2, candidates=["zzz"])


def test_panels_are_the_codes_and_the_texts() -> None:
    assert PAPER_PANEL == (
        "COX6C", "TTLL12", "PABPC1", "GNAS", "HSP90AB1", "TFF3", "ATP1A1",
        "B2M", "FASN", "SPARC", "CD74", "CD63", "CD24", "CD81",
    )  # fmt: skip
    assert len(PAPER_TEXT_PANEL) == len(set(PAPER_TEXT_PANEL)) == 14
    assert set(PAPER_PANEL) - set(PAPER_TEXT_PANEL) == {"TTLL12", "CD24"}
    assert set(PAPER_TEXT_PANEL) - set(PAPER_PANEL) == {"TP53", "VEGFA"}


def test_gene_sets_restrict_to_available_genes(caplog: pytest.LogCaptureFixture) -> None:
    train = nb_samples()
    renamed = [df.rename(columns={"G022": "CD74", "G031": "B2M", "G208": "VEGFA"}) for df in train]
    available = [g for g in renamed[0].columns if g != "G042"]
    with caplog.at_level(logging.INFO, logger="stimage.training._genesets"):
        sets = gene_sets(renamed, available, n_hvg=(20, 1000), n_mean=10)
    assert set(sets) == {"hvg20", "hvg1000", "mean10", "paper_panel", "paper_text_panel"}
    assert sets["paper_panel"] == ["B2M", "CD74"]
    assert sets["paper_text_panel"] == ["CD74", "B2M", "VEGFA"]
    assert "G042" not in sets["hvg20"] and len(sets["hvg20"]) == 20
    assert set(sets["hvg1000"]) <= set(available) and len(sets["hvg1000"]) < 300
    assert sets["mean10"][0] == "VEGFA"
    assert "TTLL12" in caplog.text and "not available" in caplog.text
