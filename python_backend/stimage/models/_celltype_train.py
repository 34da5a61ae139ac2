"""Cell-type models from spatial datasets: nuclei in spots, bags, training and classifying.

:func:`spot_nuclei` segments the nuclei around every spot of a sample (a square of the spot
diameter plus ``margin_um`` on each side, so that nuclei at the disc's edge have their
neighbourhood) and marks the spot whose disc holds each centroid. :func:`collect_spot_nuclei`
does so for every sample of a dataset that has cell-type proportions
(``obsm["celltype_proportions"]``), adds the context features per section (patch colour read
from the slide, neighbourhood statistics when asked), and returns
a :class:`SpotNuclei` ready for :meth:`CellTypeClassifier.fit_proportions`.
:func:`train_celltypes_from_dataset` is the one-call way (what ``stimage train-cells``
runs); :func:`classify_nuclei` applies a model to segmented nuclei.

Segmenting is the slow part (about a second per spot on one CPU core); with ``cache_dir``
the nuclei tables of each section are kept as Parquet files and reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stimage.constants import Key
from stimage.errors import ConfigError, InvalidSampleError
from stimage.models._celltype import CellTypeClassifier
from stimage.models._celltype_features import (
    celltype_features,
    morphology_anchors,
    patch_features,
    spot_bags,
)
from stimage.models._celltype_mapping import DEFAULT_CELL_CLASSES, map_proportions

if TYPE_CHECKING:
    import anndata as ad

    from stimage.data import Dataset, Slide
    from stimage.explain import Nuclei

__all__ = [
    "SpotNuclei",
    "classify_nuclei",
    "collect_spot_nuclei",
    "spot_nuclei",
    "train_celltypes_from_dataset",
]

logger = logging.getLogger(__name__)

#: Bump when the cached nuclei tables change meaning.
_CACHE_VERSION = 1


def _meta(sample: ad.AnnData) -> Mapping[str, Any]:
    from stimage.data import sample_info

    return sample_info(sample)


def _cache_path(
    cache_dir: Path, sample: ad.AnnData, segmenter: str, target_mpp: float, margin_um: float
) -> Path:
    meta = _meta(sample)
    spots = np.asarray(sample.obsm[Key.SPATIAL], np.float64)
    key = json.dumps(
        {
            "v": _CACHE_VERSION,
            "slide": str(meta.get(Key.SLIDE_PATH, "")),
            "mpp": round(float(meta.get(Key.MPP, 0.0)), 6),
            "spots": hashlib.sha256(np.round(spots, 2).tobytes()).hexdigest()[:16],
            "diameter": float(meta.get(Key.SPOT_DIAMETER_UM, 0.0)),
            "segmenter": segmenter,
            "settings": _segmenter_settings(segmenter),
            "target_mpp": float(target_mpp),
            "margin_um": float(margin_um),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir / f"{meta.get(Key.SECTION, 'sample')}-{segmenter}-{digest}.parquet"


def _segmenter_settings(name: str) -> str:
    """The named segmenter's settings, so that changed defaults do not reuse old caches."""
    import dataclasses

    from stimage.errors import StimageError
    from stimage.explain import create_segmenter

    try:
        seg = create_segmenter(name)
    except (StimageError, ImportError, ValueError):  # fails later, where it is used
        return ""
    if dataclasses.is_dataclass(seg):
        return repr(sorted((f.name, repr(getattr(seg, f.name))) for f in dataclasses.fields(seg)))
    return type(seg).__name__


def spot_nuclei(
    sample: ad.AnnData,
    *,
    slide: Slide | None = None,
    segmenter: str = "classical",
    target_mpp: float = 0.5,
    margin_um: float = 25.0,
    cache_dir: str | os.PathLike[str] | None = None,
    verbose: bool = False,
) -> pd.DataFrame:
    """Nuclei around every spot of a sample, with the spot whose disc holds them.

    Args:
        sample: A spatial sample (spot centres in ``obsm["spatial"]``, full-resolution px).
        slide: Its slide, open; opened from the sample when None.
        segmenter: Name of a :mod:`stimage.explain` segmenter.
        target_mpp: Resolution to segment at.
        margin_um: Extra width around each spot disc whose nuclei are kept (for context).
        cache_dir: Folder for a Parquet cache of the result.
        verbose: Show a progress bar.

    Returns:
        The nuclei features (:data:`stimage.explain.NUCLEUS_COLUMNS`) plus ``spot``: the row
        of the sample holding the nucleus, -1 for nuclei in the margin only.
    """
    from tqdm.auto import tqdm

    from stimage.data import open_sample_slide
    from stimage.explain import NUCLEUS_COLUMNS, Nuclei, create_segmenter, segment_nuclei

    if margin_um < 0:
        raise ConfigError(f"margin_um={margin_um} must be >= 0")
    meta = _meta(sample)
    diameter = float(meta.get(Key.SPOT_DIAMETER_UM, float("nan")))
    if not (np.isfinite(diameter) and diameter > 0):
        raise InvalidSampleError(
            f"sample {meta.get(Key.SECTION)!r} has no spot diameter (uns['stimage']"
            "['spot_diameter_um']); nuclei cannot be assigned to spots"
        )
    path = None
    if cache_dir is not None:
        path = _cache_path(Path(cache_dir), sample, segmenter, target_mpp, margin_um)
        if path.is_file():
            logger.info("%s: nuclei from the cache %s", meta.get(Key.SECTION), path)
            return pd.read_parquet(path)
    owned = slide is None
    sl = open_sample_slide(sample) if slide is None else slide
    try:
        seg = create_segmenter(segmenter)
        spots = np.asarray(sample.obsm[Key.SPATIAL], np.float64)
        half = (diameter / 2 + margin_um) / sl.mpp
        parts: list[Nuclei] = []
        for cx, cy in tqdm(spots, disable=not verbose, desc=f"nuclei {meta.get(Key.SECTION)}"):
            parts.append(
                segment_nuclei(
                    sl,
                    (cx - half, cy - half, 2 * half, 2 * half),
                    segmenter=seg,
                    target_mpp=target_mpp,
                )
            )
        nuclei = Nuclei.concat(parts)
        radius_px = diameter / 2 / sl.mpp
    finally:
        if owned:
            sl.close()
    table = nuclei.features[list(NUCLEUS_COLUMNS)].copy()
    table["spot"] = spot_bags(nuclei.centroids, spots, radius_px)
    # Squares of neighbouring spots may overlap (margins wider than the gap): keep one copy.
    table = table.drop_duplicates(subset=["centroid_x", "centroid_y"]).reset_index(drop=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        table.to_parquet(tmp)
        os.replace(tmp, path)
    logger.info(
        "%s: %d nuclei, %d inside %d spots",
        meta.get(Key.SECTION),
        len(table),
        int((table["spot"] >= 0).sum()),
        len(spots),
    )
    return table


@dataclass
class SpotNuclei:
    """Nuclei of many sections grouped into spot bags, with the spots' proportions.

    Attributes:
        features: One row per nucleus: features (with ``ctx_*`` when computed), ``section``
            and ``bag`` (row of ``proportions``, -1 outside every spot).
        proportions: Spots x source types (as given, before mapping onto classes).
        spots: One row per spot: ``section``, ``spot_id``, ``nuclei``.
        mpp: µm per pixel of each section.
        context_um: Radius of the neighbourhood features, or None.
        patch_um: Side of the patch features, or None.
    """

    features: pd.DataFrame
    proportions: pd.DataFrame
    spots: pd.DataFrame
    mpp: dict[str, float]
    context_um: float | None
    patch_um: float | None = None

    @property
    def sections(self) -> list[str]:
        """Section ids, in order."""
        return list(dict.fromkeys(self.spots["section"]))

    @property
    def bag_index(self) -> np.ndarray:
        """Bag (row of :attr:`proportions`) of each nucleus."""
        return self.features["bag"].to_numpy(np.int64)

    def select(self, sections: Iterable[str]) -> SpotNuclei:
        """The nuclei and spots of some sections (bags renumbered)."""
        keep = set(sections)
        unknown = keep - set(self.sections)
        if unknown:
            raise ConfigError(f"sections {sorted(unknown)} are not among {self.sections}")
        sp = self.spots["section"].isin(keep).to_numpy()
        new = np.full(len(self.spots), -1, np.int64)
        new[sp] = np.arange(int(sp.sum()))
        f = self.features[self.features["section"].isin(keep)].copy()
        b = f["bag"].to_numpy(np.int64)
        f["bag"] = np.where(b >= 0, new[np.maximum(b, 0)], -1)
        return SpotNuclei(
            f.reset_index(drop=True),
            self.proportions.iloc[np.flatnonzero(sp)].reset_index(drop=True),
            self.spots.iloc[np.flatnonzero(sp)].reset_index(drop=True),
            {s: m for s, m in self.mpp.items() if s in keep},
            self.context_um,
            self.patch_um,
        )


def _samples(dataset: Dataset | str | os.PathLike[str] | Sequence[ad.AnnData]) -> Iterable[Any]:
    if isinstance(dataset, str | os.PathLike):
        from stimage.data import load_dataset

        dataset = load_dataset(dataset)
    for item in dataset:
        yield item.load() if hasattr(item, "load") else item


def collect_spot_nuclei(
    dataset: Dataset | str | os.PathLike[str] | Sequence[ad.AnnData],
    *,
    sections: Sequence[str] | None = None,
    context_um: float | None = None,
    patch_um: float | None = 20.0,
    segmenter: str = "classical",
    target_mpp: float = 0.5,
    margin_um: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    verbose: bool = False,
) -> SpotNuclei:
    """Nuclei in the spots of every sample with cell-type proportions, as bags.

    Args:
        dataset: A :class:`~stimage.data.Dataset`, its folder or manifest, or samples.
        sections: Only these sections (all by default).
        context_um: Radius of the neighbourhood features (None: none).
        patch_um: Side of the patch around each nucleus for colour features (None: none).
        segmenter: Nucleus segmenter name.
        target_mpp: Resolution to segment at.
        margin_um: Margin around each spot disc; ``context_um`` (or 0) by default.
        cache_dir: Folder for cached nuclei tables.
        verbose: Progress bars.

    Raises:
        InvalidSampleError: No sample has cell-type proportions.
    """
    margin = float(margin_um if margin_um is not None else (context_um or 0.0))
    feats, props, spots, mpps = [], [], [], {}
    offset = 0
    skipped = []
    for sample in _samples(dataset):
        meta = _meta(sample)
        sid = str(meta.get(Key.SECTION))
        if sections is not None and sid not in sections:
            continue
        if Key.CELLTYPE_PROPORTIONS not in sample.obsm:
            skipped.append(sid)
            continue
        prop = sample.obsm[Key.CELLTYPE_PROPORTIONS]
        if not isinstance(prop, pd.DataFrame):
            raise InvalidSampleError(
                f"sample {sid!r}: obsm[{Key.CELLTYPE_PROPORTIONS!r}] must be a DataFrame with one "
                "named column per cell type"
            )
        table = spot_nuclei(
            sample,
            segmenter=segmenter,
            target_mpp=target_mpp,
            margin_um=margin,
            cache_dir=cache_dir,
            verbose=verbose,
        )
        mpp = float(meta[Key.MPP])
        table = celltype_features(table, mpp, context_um)
        if patch_um is not None:
            from stimage.data import open_sample_slide

            with open_sample_slide(sample) as slide:
                table = patch_features(slide, table, patch_um)
        b = table.pop("spot").to_numpy(np.int64)
        table["section"] = sid
        table["bag"] = np.where(b >= 0, b + offset, -1)
        feats.append(table)
        props.append(prop.reset_index(drop=True))
        counts = np.bincount(b[b >= 0], minlength=len(prop))
        spots.append(
            pd.DataFrame({"section": sid, "spot_id": prop.index.astype(str), "nuclei": counts})
        )
        mpps[sid] = mpp
        offset += len(prop)
    if skipped:
        logger.warning("samples without cell-type proportions are left out: %s", skipped)
    if not feats:
        raise InvalidSampleError(
            "no sample has cell-type proportions (obsm['celltype_proportions']); for HER2ST put "
            "ST-deconv-major/<section>-proportion.tsv beside the counts"
            + (f" (samples without: {skipped})" if skipped else "")
        )
    proportions = pd.concat(props, ignore_index=True).fillna(0.0)
    return SpotNuclei(
        pd.concat(feats, ignore_index=True),
        proportions,
        pd.concat(spots, ignore_index=True),
        mpps,
        context_um,
        patch_um,
    )


def train_celltypes_from_dataset(
    dataset: Dataset | str | os.PathLike[str] | Sequence[ad.AnnData] | SpotNuclei,
    *,
    classes: Sequence[str] = DEFAULT_CELL_CLASSES,
    mapping: Mapping[str, str | None] | None = None,
    sections: Sequence[str] | None = None,
    context_um: float | None = None,
    patch_um: float | None = 20.0,
    hidden: int = 16,
    segmenter: str = "classical",
    target_mpp: float = 0.5,
    margin_um: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    verbose: bool = False,
    **options: Any,
) -> CellTypeClassifier:
    """Train a cell-type model from the spot proportions of a dataset (learning from proportions).

    Args:
        dataset: A dataset (folder, manifest, :class:`~stimage.data.Dataset`, samples), or
            a :class:`SpotNuclei` already collected.
        classes: Classes to predict.
        mapping: Source type -> class; :data:`DEFAULT_CELLTYPE_MAPPING` by default.
        sections: Train on these sections only.
        context_um: Neighbourhood radius of the features (None: none).
        patch_um: Side of the patch colour features (None: none).
        hidden: Hidden layer width (0: linear).
        segmenter: Nucleus segmenter.
        target_mpp: Segmentation resolution.
        margin_um: Segment this far beyond each spot disc (``context_um`` or 0 by default).
        cache_dir: Cache of the nuclei tables.
        verbose: Progress bars.
        **options: Further :class:`CellTypeClassifier` settings (``weight_decay``,
            ``entropy_weight``, ``prior_weight``, ``max_iter``, ``seed``).

    Example:
        >>> model = train_celltypes_from_dataset("../shared/data/her2st")  # doctest: +SKIP
        >>> model.save("celltypes-her2st")  # doctest: +SKIP
    """
    from stimage.models._celltype_mapping import DEFAULT_CELLTYPE_MAPPING

    if isinstance(dataset, SpotNuclei):
        data = dataset.select(sections) if sections is not None else dataset
        context_um, patch_um = data.context_um, data.patch_um
    else:
        data = collect_spot_nuclei(
            dataset,
            sections=sections,
            context_um=context_um,
            patch_um=patch_um,
            segmenter=segmenter,
            target_mpp=target_mpp,
            margin_um=margin_um,
            cache_dir=cache_dir,
            verbose=verbose,
        )
    model = CellTypeClassifier(
        classes=tuple(classes),
        mapping=dict(DEFAULT_CELLTYPE_MAPPING if mapping is None else mapping),
        hidden=hidden,
        context_um=context_um,
        patch_um=patch_um,
        **options,
    )
    # Fail early, naming unknown proportion columns, before any fitting.
    map_proportions(data.proportions, model.classes, model.mapping)
    f = data.features
    anchors = None
    if model.anchor_weight > 0:
        groups = f["section"].to_numpy() if "section" in f.columns else None
        anchors = morphology_anchors(f, model.classes, groups)
    model.fit_proportions(f, data.bag_index, data.proportions, anchors=anchors)
    model.training.update(
        {
            "sections": data.sections,
            "source_types": [str(c) for c in data.proportions.columns],
            "segmenter": segmenter if not isinstance(dataset, SpotNuclei) else "given",
            "target_mpp": target_mpp,
            "spot_nuclei_median": float(np.median(data.spots["nuclei"])),
        }
    )
    return model


def classify_nuclei(
    model: CellTypeClassifier,
    nuclei: Nuclei | pd.DataFrame,
    mpp: float | None = None,
    *,
    slide: Slide | None = None,
) -> pd.DataFrame:
    """Cell type, class probabilities and normalised entropy of segmented nuclei.

    Context features the model needs and the table lacks are computed here: neighbourhood
    statistics from the centroids, patch colour from ``slide``.

    Args:
        model: A trained model.
        nuclei: :class:`stimage.explain.Nuclei` or its features table.
        mpp: µm per full-resolution pixel (taken from ``nuclei`` or ``slide`` otherwise).
        slide: The slide of the nuclei; needed when the model uses patch features and the
            table has no ``ctx_patch_*`` columns.

    Returns:
        ``centroid_x``, ``centroid_y``, ``class``, ``P(<class>)`` per class and ``entropy``
        (0 = certain, 1 = uniform), one row per nucleus in the input order.

    Raises:
        ConfigError: The scale or the slide needed for the context features is missing.
    """
    if isinstance(nuclei, pd.DataFrame):
        table = nuclei
    else:
        table, mpp = nuclei.features, nuclei.mpp if mpp is None else mpp
    if mpp is None and slide is not None:
        mpp = slide.mpp
    names = set(model.feature_names)
    need_ctx = any(c.startswith("ctx_") and not c.startswith("ctx_patch_") for c in names)
    if need_ctx and not names <= set(table.columns):
        if mpp is None or model.context_um is None:
            raise ConfigError("give mpp (µm per pixel of the centroids) for the context features")
        table = celltype_features(table, float(mpp), model.context_um)
    if any(c.startswith("ctx_patch_") for c in names - set(table.columns)):
        if slide is None or model.patch_um is None:
            raise ConfigError(
                "this model reads the colour of the tissue around each nucleus: give slide= "
                "(the image the nuclei were segmented from)"
            )
        table = patch_features(slide, table, model.patch_um)
    out = model.predict_frame(table)
    for c in ("centroid_y", "centroid_x"):
        if c in table.columns:
            out.insert(0, c, table[c].to_numpy())
    return out
