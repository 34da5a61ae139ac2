"""Cell typing per nucleus: LLP and label training, mapping, entropy, persistence, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stimage.errors import ConfigError, StimageError
from stimage.evaluation._celltypes import composition_metrics, label_metrics, spot_composition
from stimage.models import (
    DEFAULT_CELL_CLASSES,
    DEFAULT_CELLTYPE_MAPPING,
    CellTypeClassifier,
    UnknownCellTypeError,
    celltype_entropy,
    celltype_features,
    classify_nuclei,
    collect_spot_nuclei,
    labels_from_qupath,
    labels_from_xenium,
    load_celltype_model,
    map_labels,
    map_proportions,
    spot_bags,
    train_celltypes_from_dataset,
)

CLASSES = DEFAULT_CELL_CLASSES
FEATURES = ["area_um2", "eccentricity", "hematoxylin_mean", "eosin_mean", "red_mean", "solidity"]


def _synthetic_bags(
    n_bags: int = 120, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Nuclei whose class is a known function of their features, grouped in mixed bags.

    Returns features, bag index, the bags' class proportions (K columns) and true classes.
    """
    rng = np.random.default_rng(seed)
    k, d = len(CLASSES), len(FEATURES)
    centres = rng.normal(0.0, 1.6, (k, d))
    xs, ys, bags, props = [], [], [], []
    for b in range(n_bags):
        q = rng.dirichlet(np.full(k, 0.6))
        n = int(rng.integers(10, 40))
        c = rng.choice(k, n, p=q)
        xs.append(centres[c] + rng.normal(0.0, 1.0, (n, d)))
        ys.append(c)
        bags.append(np.full(n, b))
        props.append(np.bincount(c, minlength=k) / n)
    x = pd.DataFrame(np.vstack(xs), columns=FEATURES)
    x["centroid_x"] = rng.uniform(0, 5000, len(x))
    x["centroid_y"] = rng.uniform(0, 5000, len(x))
    return x, np.concatenate(bags), np.array(props), np.concatenate(ys)


def fast(**kw: object) -> CellTypeClassifier:
    """A linear model: quick to train, enough for these checks."""
    return CellTypeClassifier(**{"hidden": 0, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bags() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    return _synthetic_bags()


@pytest.fixture(scope="module")
def llp_model(bags: tuple) -> CellTypeClassifier:
    x, bag, q, _ = bags
    return fast().fit_proportions(x, bag, q)


def test_llp_recovers_nucleus_classes(bags: tuple, llp_model: CellTypeClassifier) -> None:
    x, _bag, q, y = bags
    assert sorted(llp_model.feature_names) == sorted(FEATURES)  # centroids are never features
    pred = llp_model.predict_proba(x).argmax(1)
    acc = float((pred == y).mean())
    assert acc > 0.8, acc  # chance is about 0.25-0.35
    # Held-out bags from the same generator: per-nucleus and per-bag agreement.
    x2, bag2, q2, y2 = _synthetic_bags(40, seed=0)[0:4]
    assert float((llp_model.predict_proba(x2).argmax(1) == y2).mean()) > 0.8
    m = composition_metrics(llp_model.predict_proba(x2), bag2, q2, q.mean(0), CLASSES)
    assert (m.loc[list(CLASSES), "pearson_model"] > 0.8).all()
    assert (m["mae_model"] < m["mae_baseline"]).all()
    assert np.isnan(m.loc["immune", "pearson_baseline"])  # a constant does not correlate


def test_llp_with_shuffled_bags_learns_nothing(bags: tuple) -> None:
    x, bag, q, y = bags
    rng = np.random.default_rng(1)
    model = fast().fit_proportions(x, rng.permutation(bag), q)
    acc = float((model.predict_proba(x).argmax(1) == y).mean())
    assert acc < 0.6, acc


def test_llp_maps_source_types(bags: tuple) -> None:
    x, bag, q, y = bags
    # Split immune into two HER2ST source types and stromal into CAFs + PVL: same result.
    src = pd.DataFrame(
        {
            "T-cells": q[:, 0] * 0.3,
            "B-cells": q[:, 0] * 0.7,
            "CAFs": q[:, 1] * 0.5,
            "PVL": q[:, 1] * 0.5,
            "Epithelial": q[:, 2],
            "Endothelial": q[:, 3],
        }
    )
    np.testing.assert_allclose(map_proportions(src), q, atol=1e-12)
    model = fast(max_iter=60).fit_proportions(x, bag, src)
    assert float((model.predict_proba(x).argmax(1) == y).mean()) > 0.75
    assert model.training["method"] == "proportions"
    assert model.training["spots"] == len(q)


def test_labels_path_f1(bags: tuple) -> None:
    x, _, _, y = bags
    names = np.asarray(CLASSES, dtype=object)[y]
    half = len(x) // 2
    model = fast().fit_labels(x.iloc[:half], names[:half])
    pred = model.predict(x.iloc[half:])
    r = label_metrics(names[half:], pred, CLASSES)
    assert r["macro_f1"] > 0.85, r["f1"]
    assert r["confusion"].to_numpy().sum() == len(x) - half
    assert r["confusion"].index.name == "true"
    assert model.training["method"] == "labels"


def test_labels_skip_missing_and_dropped() -> None:
    x, _, _, y = _synthetic_bags(30, seed=3)
    names = np.asarray(CLASSES, dtype=object)[y]
    names[::5] = None
    names[1::7] = "Ignore*"
    model = fast(mapping={"Ignore*": None}, max_iter=50)
    model.fit_labels(x, names)
    kept = sum(1 for v in names if v is not None and v != "Ignore*")
    assert model.training["nuclei"] == kept


def test_unknown_labels_message() -> None:
    with pytest.raises(UnknownCellTypeError) as e:
        map_labels(["T-cells", "Neutrophil", "epithelial"])
    msg = str(e.value)
    assert "'Neutrophil'" in msg and "immune" in msg and "mapping=" in msg
    assert isinstance(e.value, StimageError) and isinstance(e.value, ValueError)
    with pytest.raises(UnknownCellTypeError, match="'Mast cells'"):
        map_proportions(pd.DataFrame({"Mast cells": [1.0], "CAFs": [0.0]}))
    x, _, _, _ = _synthetic_bags(5)
    with pytest.raises(UnknownCellTypeError, match="'Tumour'"):
        fast().fit_labels(x, ["Tumour"] * len(x))
    with pytest.raises(ConfigError, match="not among"):
        CellTypeClassifier(mapping={"X": "neurons"})


def test_mapping_is_case_insensitive_and_configurable() -> None:
    mapping = {**DEFAULT_CELLTYPE_MAPPING, "X": "stromal"}
    got = map_labels(["t-cells", "TUMOR", "Immune", "x", ""], mapping=mapping)
    assert got.tolist() == [0, 2, 0, 1, -1]
    with pytest.raises(UnknownCellTypeError, match="'T-cells'"):
        map_labels(["T-cells"], mapping={"X": "stromal"})  # a mapping given replaces the default
    custom = map_labels(
        ["a", "b"], classes=("tumour", "other"), mapping={"a": "tumour", "b": "other"}
    )
    assert custom.tolist() == [0, 1]


def test_entropy_bounds(llp_model: CellTypeClassifier, bags: tuple) -> None:
    x = bags[0]
    h = llp_model.entropy(x)
    assert h.min() >= 0.0 and h.max() <= 1.0
    raw = llp_model.entropy(x, normalised=False)
    np.testing.assert_allclose(raw / np.log(len(CLASSES)), h, atol=1e-9)
    assert celltype_entropy(np.full((1, 4), 0.25))[0] == pytest.approx(1.0)
    assert celltype_entropy(np.array([[1.0, 0, 0, 0]]))[0] == pytest.approx(0.0, abs=1e-9)
    frame = llp_model.predict_frame(x)
    assert list(frame.columns) == ["class"] + [f"P({c})" for c in CLASSES] + ["entropy"]
    np.testing.assert_allclose(frame.filter(like="P(").sum(axis=1), 1.0, atol=1e-9)


def test_persistence_round_trip(tmp_path: Path, llp_model: CellTypeClassifier, bags: tuple) -> None:
    x = bags[0]
    out = llp_model.save(tmp_path / "m")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["celltype_manifest.json", "celltype_weights.safetensors"]
    assert sum(p.stat().st_size for p in out.iterdir()) < 20_000  # kB, not MB
    manifest = json.loads((out / "celltype_manifest.json").read_text())
    assert manifest["classes"] == list(CLASSES) and manifest["features"] == llp_model.feature_names
    assert (
        manifest["mapping"]["PVL"] == "stromal" and manifest["training"]["method"] == "proportions"
    )
    loaded = load_celltype_model(out)
    np.testing.assert_allclose(loaded.predict_proba(x), llp_model.predict_proba(x), atol=1e-5)
    with pytest.raises(ConfigError, match="already exists"):
        llp_model.save(out)
    manifest["format_version"] = 99
    (out / "celltype_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="update stimage"):
        load_celltype_model(out)
    with pytest.raises(StimageError, match="not a cell-type model"):
        load_celltype_model(tmp_path)


def test_hidden_layer_round_trip(tmp_path: Path, bags: tuple) -> None:
    x, bag, q, y = bags
    model = CellTypeClassifier(hidden=8, max_iter=60).fit_proportions(x, bag, q)
    assert float((model.predict_proba(x).argmax(1) == y).mean()) > 0.7
    folder = model.save(tmp_path / "h")
    assert sum(p.stat().st_size for p in folder.iterdir()) < 20_000
    loaded = load_celltype_model(folder)
    assert loaded.hidden == 8
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-5)


def test_context_features_and_classify() -> None:
    # Three nuclei within 10 µm of each other and one far away, at 0.5 µm/px.
    f = pd.DataFrame(
        {
            "centroid_x": [0.0, 10.0, 20.0, 1000.0],
            "centroid_y": [0.0, 0.0, 0.0, 0.0],
            "area_um2": [10.0, 20.0, 30.0, 40.0],
            "eccentricity": [0.1, 0.2, 0.3, 0.4],
        }
    )
    c = celltype_features(f, mpp=0.5, context_um=6.0)
    assert c["ctx_count"].tolist() == [1, 2, 1, 0]
    assert c["ctx_nn_um"].tolist() == [5.0, 5.0, 5.0, 6.0]
    assert c["ctx_mean_area_um2"].tolist() == [20.0, 20.0, 20.0, 40.0]
    model = CellTypeClassifier(
        context_um=6.0, patch_um=None, hidden=0, max_iter=20, classes=("a", "b"), mapping={}
    )
    model.fit_labels(c, ["a", "a", "b", "b"])
    assert "ctx_count" in model.feature_names and "centroid_x" not in model.feature_names
    out = classify_nuclei(model, f, mpp=0.5)
    assert list(out.columns[:3]) == ["centroid_x", "centroid_y", "class"] and len(out) == 4
    with pytest.raises(ConfigError, match="ctx_"):
        model.predict_proba(f)


def test_spot_bags_and_composition() -> None:
    spots = np.array([[100.0, 100.0], [400.0, 100.0]])
    cent = np.array([[100, 140], [100, 170], [390, 100], [250, 100.0]])
    bag = spot_bags(cent, spots, radius_px=50)
    assert bag.tolist() == [0, -1, 1, -1]
    comp, n = spot_composition(np.array([[1, 0], [0, 1], [0.2, 0.8], [0.5, 0.5]]), bag, 3)
    assert n.tolist() == [1, 1, 0] and comp[0].tolist() == [1, 0] and np.isnan(comp[2]).all()


def test_labels_from_qupath_and_xenium(tmp_path: Path) -> None:
    from shapely.geometry import box

    def feature(geom: object, cls: str | None, kind: str) -> dict:
        props: dict = {"objectType": kind}
        if cls:
            props["classification"] = {"name": cls, "color": [200, 0, 0]}
        return {"type": "Feature", "geometry": geom.__geo_interface__, "properties": props}

    collection = {
        "type": "FeatureCollection",
        "features": [
            feature(box(0, 0, 100, 100), "Stroma", "annotation"),
            feature(box(10, 10, 20, 20), "Tumor", "cell"),
            feature(box(500, 500, 600, 600), None, "annotation"),  # unclassified: ignored
        ],
    }
    path = tmp_path / "labels.geojson"
    path.write_text(json.dumps(collection))
    cent = np.array([[50, 50], [15, 15], [550, 550], [300, 300.0]])
    lab = labels_from_qupath(path, cent)
    assert lab.tolist() == ["Stroma", "Tumor", None, None]
    assert map_labels(lab).tolist() == [1, 2, -1, -1]
    cells_only = labels_from_qupath(collection, cent, object_types=("cell",))
    assert cells_only.tolist() == [None, "Tumor", None, None]

    cells = pd.DataFrame(
        {"x_fullres": [0.0, 100.0, 103.0], "y_fullres": [0.0, 0.0, 0.0]},
        index=pd.Index(["c1", "c2", "c3"], name="cell_id"),
    )
    types = {"c1": "T-cells", "c2": "Epithelial", "c3": "CAFs"}
    nuclei = np.array([[2.0, 0.0], [102.0, 0.0], [500.0, 0.0]])
    lab = labels_from_xenium(cells, types, nuclei, mpp=0.5, max_distance_um=3.0)
    # c3 (1 px) is closer to nucleus 1 than c2 (2 px); nucleus 2 has no cell within 3 µm.
    assert lab.tolist() == ["T-cells", "CAFs", None]


def test_label_metrics_exact() -> None:
    r = label_metrics(["a", "a", "b", "c"], ["a", "b", "b", "b"], ["a", "b", "c"])
    assert r["f1"]["a"] == pytest.approx(2 / 3)
    assert r["f1"]["b"] == pytest.approx(0.5)
    assert r["f1"]["c"] == 0.0
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["confusion"].loc["c", "b"] == 1
    with pytest.raises(ConfigError, match="not among"):
        label_metrics(["a"], ["z"], ["a", "b"])


@pytest.mark.slow
def test_train_from_dataset_end_to_end(tmp_path: Path) -> None:
    from _synth import make_legacy_st
    from stimage.data import load_dataset, open_sample_slide
    from stimage.models._celltype_features import PATCH_COLUMNS

    root = tmp_path / "st"
    make_legacy_st(root, grid=(3, 4), seed=5)
    cache = tmp_path / "cache"
    data = collect_spot_nuclei(load_dataset(root), context_um=25.0, cache_dir=cache)
    assert data.sections == ["S1"] and len(list(cache.glob("S1-classical-*.parquet"))) == 1
    inside = data.bag_index >= 0
    assert inside.sum() > 20 and (data.spots["nuclei"] > 0).mean() > 0.8
    assert {"ctx_count", "ctx_nn_um", "section", "bag"} <= set(data.features.columns)
    assert set(PATCH_COLUMNS) <= set(data.features.columns)
    assert data.features[list(PATCH_COLUMNS)].std().gt(0).all()  # read from the image
    model = train_celltypes_from_dataset(data, max_iter=30)
    assert model.training["sections"] == ["S1"] and model.training["method"] == "proportions"
    assert "Endothelial" in model.training["source_types"]
    assert model.hidden == 16 and model.patch_um == 20.0 and model.context_um == 25.0
    assert set(PATCH_COLUMNS) <= set(model.feature_names)
    again = collect_spot_nuclei(root, context_um=25.0, cache_dir=cache)  # from the cache
    pd.testing.assert_frame_equal(again.features, data.features)
    # Segmenter defaults are part of the cache key: changed settings segment anew.
    import stimage.explain

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            stimage.explain,
            "create_segmenter",
            lambda name: stimage.explain.ClassicalSegmenter(local_fraction=0.3),
        )
        collect_spot_nuclei(root, context_um=25.0, cache_dir=cache)
    assert len(list(cache.glob("S1-classical-*.parquet"))) == 2
    bare = data.features.drop(columns=[c for c in data.features if c.startswith("ctx_")])
    with pytest.raises(ConfigError, match="slide="):
        classify_nuclei(model, bare, mpp=2.0)
    sample = load_dataset(root).samples[0].load()
    with open_sample_slide(sample) as slide:
        out = classify_nuclei(model, bare, slide=slide)
    assert len(out) == len(data.features) and out["entropy"].between(0, 1).all()
    np.testing.assert_allclose(
        out.filter(like="P(").to_numpy(), model.predict_proba(data.features), atol=1e-6
    )
    with pytest.raises(UnknownCellTypeError, match="'T-cells'"):
        train_celltypes_from_dataset(data, mapping={"CAFs": "stromal"})


@pytest.mark.realdata
@pytest.mark.slow
def test_her2st_spots_and_proportions(her2st: Path) -> None:
    from stimage.data import read_her2st
    from stimage.models import spot_nuclei

    sample = read_her2st(her2st, "B4")
    props = sample.obsm["celltype_proportions"]
    q = map_proportions(props)  # the 8 deconvolution types map onto the 4 default classes
    assert q.shape == (len(sample), 4)
    np.testing.assert_allclose(q.sum(1), 1.0)
    sub = sample[:3].copy()
    table = spot_nuclei(sub, margin_um=0.0)
    inside = table[table["spot"] >= 0]
    assert len(inside) > 10
    centre = sub.obsm["spatial"][inside["spot"].to_numpy()]
    mpp = sub.uns["stimage"]["mpp"]
    d_um = np.hypot(*(inside[["centroid_x", "centroid_y"]].to_numpy() - centre).T) * mpp
    assert d_um.max() <= 50.5  # inside the 100 µm spot disc


# -- calls that keep the composition, morphology anchors ----------------------------------


def _ambiguous_proba(n: int = 4000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a weak classifier with one majority class (as LLP gives on HER2ST).

    Every nucleus leans towards class 0 (the training prior), with a small, real signal
    towards its own class: argmax calls almost everything class 0.
    """
    rng = np.random.default_rng(seed)
    truth = rng.choice(4, n, p=[0.5, 0.25, 0.2, 0.05])
    logits = np.log([0.5, 0.25, 0.2, 0.05]) + rng.normal(0, 0.2, (n, 4))
    logits[np.arange(n), truth] += 0.4
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), truth


def test_call_bias_reproduces_expected_composition() -> None:
    from stimage.models._celltype_calls import CALL_BIAS_ROUNDS, fit_call_bias

    p, truth = _ambiguous_proba()
    argmax_share = np.bincount(p.argmax(1), minlength=4) / len(p)
    assert argmax_share[1] < 0.05 < 0.2 < p[:, 1].mean()  # argmax nearly never calls class 1
    b = fit_call_bias(p)
    calls = (np.log(p) + b).argmax(1)
    share = np.bincount(calls, minlength=4) / len(p)
    np.testing.assert_allclose(share, p.mean(0), atol=0.01)
    # The calls still follow the evidence: more correct than by chance for the minor classes.
    assert (calls[truth == 1] == 1).mean() > 2 * (calls[truth != 1] == 1).mean()
    # Bounded, finite, and degenerate inputs end at once.
    assert np.isfinite(b).all() and np.abs(b).max() <= 10
    np.testing.assert_array_equal(fit_call_bias(np.zeros((0, 3))), np.zeros(3))
    one = np.tile([[0.999, 0.001 / 3, 0.001 / 3, 0.001 / 3]], (50, 1))
    assert np.isfinite(fit_call_bias(one, rounds=CALL_BIAS_ROUNDS)).all()


def test_llp_model_calls_keep_composition(bags: tuple) -> None:
    x, bag, q, _ = bags
    # Blur the features: the per-nucleus signal becomes weak, as with real nuclei.
    rng = np.random.default_rng(5)
    xb = x.copy()
    xb[FEATURES] = xb[FEATURES] + rng.normal(0, 3.0, (len(x), len(FEATURES)))
    model = fast().fit_proportions(xb, bag, q)
    assert model.calling == "composition" and model.call_bias is not None
    p = model.predict_proba(xb)
    called = pd.Series(model.predict(xb)).value_counts(normalize=True).reindex(CLASSES).fillna(0)
    arg = pd.Series(np.asarray(CLASSES)[p.argmax(1)]).value_counts(normalize=True)
    arg = arg.reindex(CLASSES).fillna(0)
    expected = pd.Series(p.mean(0), index=CLASSES)
    assert (called - expected).abs().max() < 0.02
    assert (called - expected).abs().sum() < (arg - expected).abs().sum()
    frame = model.predict_frame(xb)
    assert (frame["class"].to_numpy() == model.predict(xb)).all()
    argmax_model = fast(calling="argmax").fit_proportions(xb, bag, q)
    np.testing.assert_array_equal(
        argmax_model.predict(xb), np.asarray(CLASSES)[argmax_model.predict_proba(xb).argmax(1)]
    )


def test_calls_round_trip_and_old_models(
    tmp_path: Path, llp_model: CellTypeClassifier, bags: tuple
) -> None:
    x = bags[0]
    out = llp_model.save(tmp_path / "c")
    manifest = json.loads((out / "celltype_manifest.json").read_text())
    assert manifest["model"]["calling"] == "composition"
    assert len(manifest["model"]["call_bias"]) == len(CLASSES)
    loaded = load_celltype_model(out)
    np.testing.assert_allclose(loaded.call_bias, llp_model.call_bias, atol=1e-12)
    assert (loaded.predict(x) == llp_model.predict(x)).all()
    # A model written before calls had offsets: it loads and calls by argmax.
    for key in ("calling", "call_bias", "anchor_weight"):
        manifest["model"].pop(key)
    (out / "celltype_manifest.json").write_text(json.dumps(manifest))
    old = load_celltype_model(out)
    assert old.call_bias is None
    assert (old.predict(x) == np.asarray(CLASSES)[old.predict_proba(x).argmax(1)]).all()
    manifest["model"]["call_bias"] = ["a", "b"]
    (out / "celltype_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="call_bias"):
        load_celltype_model(out)
    with pytest.raises(ConfigError, match="calling="):
        CellTypeClassifier(calling="vote")


def test_morphology_anchors_rules() -> None:
    from stimage.models import morphology_anchors

    f = pd.DataFrame(
        {
            # spindle, lymphocyte, large round, ordinary, spindle but dark
            "area_um2": [30.0, 18.0, 80.0, 35.0, 30.0],
            "eccentricity": [0.95, 0.5, 0.6, 0.7, 0.95],
            "major_axis_um": [12.0, 5.0, 11.0, 7.5, 12.0],
            "minor_axis_um": [3.5, 4.5, 9.0, 6.0, 3.5],
            "hematoxylin_mean": [0.10, 0.30, 0.15, 0.2, 0.35],
        }
    )
    a = morphology_anchors(f, CLASSES)
    assert [CLASSES[i] if i >= 0 else None for i in a] == [
        "stromal",
        "immune",
        "epithelial",
        None,
        None,
    ]
    # Haematoxylin is ranked within each group: a pale slide's lymphocytes still count.
    two = pd.concat([f, f.assign(hematoxylin_mean=f["hematoxylin_mean"] / 3)], ignore_index=True)
    a2 = morphology_anchors(two, CLASSES, groups=np.repeat([0, 1], len(f)))
    np.testing.assert_array_equal(a2[: len(f)], a2[len(f) :])
    assert (morphology_anchors(f, ("a", "b")) == -1).all()  # no rule for unknown classes
    with pytest.raises(ConfigError, match="hematoxylin_mean"):
        morphology_anchors(f.drop(columns="hematoxylin_mean"), CLASSES)


def test_anchors_steer_llp(bags: tuple) -> None:
    x, bag, q, y = bags
    anchors = np.where(np.random.default_rng(2).random(len(y)) < 0.2, y, -1)
    shuffled = np.random.default_rng(1).permutation(bag)  # proportions teach nothing now
    plain = fast().fit_proportions(x, shuffled, q)
    steered = fast(anchor_weight=1.0).fit_proportions(x, shuffled, q, anchors=anchors)
    acc = lambda m: float((m.predict_proba(x).argmax(1) == y).mean())  # noqa: E731
    assert acc(steered) > acc(plain) + 0.2
    assert "morphology anchors" in steered.training["loss"]
    with pytest.raises(ConfigError, match="anchors"):
        fast(anchor_weight=1.0).fit_proportions(x, bag, q, anchors=np.full(len(x), 9))
