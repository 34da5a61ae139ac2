"""Datasets: many spatial samples with section and patient ids.

A dataset comes from a folder or from a small manifest file.

Folder layouts recognised:

* a HER2ST-layout folder (``ST-cnts/``, ``ST-spotfiles/``, ``ST-imgs/``): every section;
* a Space Ranger output folder or a Xenium output folder: one sample;
* a folder of such folders and/or ``.h5ad`` files: one sample each, named after them.

A manifest (``.csv``, ``.tsv``, ``.yaml``/``.yml`` or ``.json``) lists samples, one per row
(CSV/TSV) or as a list under ``samples:`` (YAML/JSON)::

    sample_id,patient_id,format,path,image,mpp
    A1,P1,visium,visium/A1,images/A1.tif,
    B4,B,her2st,her2st,,
    X1,P2,xenium,xenium/X1,,

``format`` is one of ``her2st`` (``path`` is the HER2ST folder and ``sample_id`` the
section), ``legacy_st`` (give ``counts``, ``spots`` and ``image`` columns), ``visium``,
``xenium`` (optional ``alignment`` and ``spot_um``) or ``h5ad``; left empty it is detected
from ``path``. Relative paths are relative to the manifest's folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from stimage.errors import ConfigError, InputFileNotFoundError, UnsupportedFormatError

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["Dataset", "SampleSpec", "detect_format", "load_dataset", "read_sample"]

FORMATS = ("her2st", "legacy_st", "visium", "xenium", "h5ad")
_OPTION_KEYS = {"counts", "spots", "proportions", "alignment", "spot_um", "pitch_um", "min_cells"}
_MANIFEST_SUFFIXES = {".csv", ".tsv", ".yaml", ".yml", ".json"}


class _XeniumOptions(TypedDict, total=False):
    """Pseudo-spot settings of a Xenium sample given in a manifest."""

    spot_um: float
    pitch_um: float
    min_cells: int


def _is_visium(p: Path) -> bool:
    from stimage.data._visium import is_visium_folder

    return is_visium_folder(p)


def _is_xenium(p: Path) -> bool:
    from stimage.data._xenium import is_xenium_folder

    return is_xenium_folder(p)


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of one sample's path: ``visium``, ``xenium``, ``h5ad`` or ``her2st`` (a folder).

    Raises:
        UnsupportedFormatError: Nothing recognisable at ``path``.
    """
    from stimage.data._legacy_st import is_her2st_root

    p = Path(path)
    if not p.exists():
        raise InputFileNotFoundError(f"{p}: no such file or folder")
    if p.is_file() and p.suffix.lower() == ".h5ad":
        return "h5ad"
    if _is_visium(p):
        return "visium"
    if _is_xenium(p):
        return "xenium"
    if is_her2st_root(p):
        return "her2st"
    raise UnsupportedFormatError(
        f"{p}: not a recognised spatial sample: expected a Space Ranger folder (spatial/ and "
        "*filtered_feature_bc_matrix.h5), a Xenium folder (experiment.xenium), a HER2ST-layout "
        "folder (ST-cnts/, ST-spotfiles/) or an .h5ad file"
    )


@dataclass(frozen=True)
class SampleSpec:
    """Where one sample is and how to read it.

    Attributes:
        sample_id: Unique id of the sample (the section id).
        patient_id: Patient id; the sample id when unknown.
        format: One of ``her2st``, ``legacy_st``, ``visium``, ``xenium``, ``h5ad``.
        path: The sample's folder or file (for ``her2st``, the HER2ST folder).
        image: The full-resolution H&E image, where the format needs or allows one.
        mpp: µm per pixel, overriding metadata and the spot grid.
        options: Format-specific settings (``counts``, ``spots``, ``proportions``,
            ``alignment``, ``spot_um``, ``pitch_um``, ``min_cells``).
    """

    sample_id: str
    patient_id: str | None
    format: str
    path: Path
    image: Path | None = None
    mpp: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(
                f"sample {self.sample_id!r}: unknown format {self.format!r}; use one of {FORMATS}"
            )
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.sample_id):
            raise ConfigError(
                f"sample id {self.sample_id!r} must start with a letter or digit and hold only "
                "letters, digits, '.', '_' and '-' (it names files)"
            )

    def load(self) -> ad.AnnData:
        """Read the sample."""
        from stimage.data._legacy_st import read_her2st, read_legacy_st

        o = dict(self.options)
        if self.format == "her2st":
            return read_her2st(self.path, self.sample_id, mpp=self.mpp, patient_id=self.patient_id)
        if self.format == "legacy_st":
            missing = [k for k in ("counts", "spots") if not o.get(k)]
            if missing:
                raise ConfigError(
                    f"sample {self.sample_id!r}: format legacy_st needs {missing} in the manifest"
                )
            return read_legacy_st(
                o["counts"],
                o["spots"],
                self.image,
                section_id=self.sample_id,
                patient_id=self.patient_id,
                mpp=self.mpp,
                proportions=o.get("proportions"),
            )
        if self.format == "visium":
            from stimage.data._visium import read_visium

            return read_visium(
                self.path,
                self.image,
                section_id=self.sample_id,
                patient_id=self.patient_id,
                mpp=self.mpp,
            )
        if self.format == "xenium":
            from stimage.data._xenium import read_xenium

            # Only the settings the manifest gives; read_xenium's defaults stand for the rest.
            kw: _XeniumOptions = {}
            if o.get("spot_um") not in (None, ""):
                kw["spot_um"] = float(o["spot_um"])
            if o.get("pitch_um") not in (None, ""):
                kw["pitch_um"] = float(o["pitch_um"])
            if o.get("min_cells") not in (None, ""):
                kw["min_cells"] = int(o["min_cells"])
            return read_xenium(
                self.path,
                self.image,
                o.get("alignment") or None,
                section_id=self.sample_id,
                patient_id=self.patient_id,
                mpp=self.mpp,
                **kw,
            )
        from stimage.data._h5ad import read_h5ad_sample

        return read_h5ad_sample(
            self.path,
            image=self.image,
            section_id=self.sample_id,
            patient_id=self.patient_id,
            mpp=self.mpp,
        )


@dataclass
class Dataset:
    """An ordered collection of :class:`SampleSpec` with unique sample ids.

    Example:
        >>> ds = load_dataset("../shared/data/her2st")  # doctest: +SKIP
        >>> ds.ids, ds.patients  # doctest: +SKIP
        (['B4', 'C2', 'C3', 'C4'], {'B4': 'B', 'C2': 'C', 'C3': 'C', 'C4': 'C'})
    """

    samples: list[SampleSpec]
    source: Path | None = None

    def __post_init__(self) -> None:
        ids = [s.sample_id for s in self.samples]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ConfigError(
                f"{self.source or 'dataset'}: sample ids repeat: {dup}; give each sample a unique id"
            )

    @property
    def ids(self) -> list[str]:
        """Sample ids in order."""
        return [s.sample_id for s in self.samples]

    @property
    def patients(self) -> dict[str, str]:
        """Patient id of each sample."""
        return {s.sample_id: s.patient_id or s.sample_id for s in self.samples}

    def select(self, ids: list[str]) -> Dataset:
        """The samples with these ids, in the given order.

        Raises:
            ConfigError: An id is not in the dataset.
        """
        by_id = {s.sample_id: s for s in self.samples}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise ConfigError(f"unknown sample id(s) {unknown}; the dataset has {self.ids}")
        return Dataset([by_id[i] for i in ids], self.source)

    def __iter__(self) -> Iterator[SampleSpec]:
        return iter(self.samples)

    def __len__(self) -> int:
        return len(self.samples)


def _opt_float(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = v.strip()
        if not v:
            return None
    try:
        f = float(v)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"expected a number, got {v!r}") from e
    return None if np.isnan(f) else f


def _resolve(base: Path, v: Any) -> Path | None:
    if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "":
        return None
    p = Path(str(v).strip()).expanduser()
    return p if p.is_absolute() else (base / p)


def _rows_from_manifest(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            import pandas as pd

            df = pd.read_csv(
                path, sep="," if suffix == ".csv" else "\t", dtype=str, keep_default_na=False
            )
            return [{k.strip(): v for k, v in r.items()} for r in df.to_dict(orient="records")]
        text = path.read_text()
        if suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the manifest ({e})") from e
    except Exception as e:  # yaml.YAMLError and pandas parser errors have no common base
        raise ConfigError(f"{path}: cannot parse the manifest ({e})") from e
    rows = data.get("samples") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(
            f"{path}: expected a list of samples (under 'samples:' or at the top level)"
        )
    return rows


def _spec_from_row(row: Mapping[str, Any], base: Path, where: str) -> list[SampleSpec]:
    from stimage.data._legacy_st import her2st_sections

    path = _resolve(base, row.get("path"))
    sid = str(row.get("sample_id") or "").strip()
    fmt = str(row.get("format") or "").strip().lower()
    if path is None:
        if fmt != "legacy_st":
            raise ConfigError(f"{where}: sample {sid or '?'} has no 'path'")
    elif not fmt:
        fmt = detect_format(path)
    pid = str(row.get("patient_id") or "").strip() or None
    image = _resolve(base, row.get("image"))
    mpp = _opt_float(row.get("mpp"))
    options: dict[str, Any] = {}
    for k in _OPTION_KEYS:
        v = row.get(k)
        if v not in (None, ""):
            options[k] = (
                str(_resolve(base, v))
                if k in ("counts", "spots", "proportions", "alignment")
                else v
            )
    if fmt == "her2st" and not sid and path is not None:
        # A row naming only the folder stands for all its sections.
        return [SampleSpec(s, pid, "her2st", path, mpp=mpp) for s in her2st_sections(path)]
    if not sid:
        sid = (path or Path(options.get("counts", "sample"))).stem
    return [SampleSpec(sid, pid, fmt, path or base, image, mpp, options)]


def load_dataset(path: str | os.PathLike[str], *, mpp: float | None = None) -> Dataset:
    """A dataset from a folder or a manifest file.

    Args:
        path: Folder (see the module docs for layouts) or manifest file.
        mpp: µm per pixel for every sample (overrides metadata and spot grids).

    Raises:
        InputFileNotFoundError: ``path`` does not exist.
        UnsupportedFormatError: No sample is recognised in the folder.
        ConfigError: The manifest is malformed.
    """
    from stimage.data._legacy_st import her2st_sections, is_her2st_root

    p = Path(path).expanduser()
    if not p.exists():
        raise InputFileNotFoundError(f"{p}: no such dataset folder or manifest file")
    specs: list[SampleSpec] = []
    if p.is_file():
        if p.suffix.lower() in _MANIFEST_SUFFIXES:
            for i, row in enumerate(_rows_from_manifest(p)):
                specs.extend(_spec_from_row(row, p.parent, f"{p} row {i + 1}"))
        elif p.suffix.lower() == ".h5ad":
            specs.append(SampleSpec(p.stem, None, "h5ad", p))
        else:
            raise UnsupportedFormatError(
                f"{p}: not a dataset; give a folder, an .h5ad file or a manifest (.csv, .tsv, .yaml, .json)"
            )
    elif is_her2st_root(p):
        patients = {}
        for folder in (p / "ST-imgs").glob("*/*"):
            patients[folder.name] = folder.parent.name
        specs = [SampleSpec(s, patients.get(s), "her2st", p) for s in her2st_sections(p)]
    elif _is_visium(p):
        specs.append(SampleSpec(p.name, None, "visium", p))
    elif _is_xenium(p):
        specs.append(SampleSpec(p.name, None, "xenium", p))
    else:
        for child in sorted(p.iterdir()):
            if child.suffix.lower() == ".h5ad":
                specs.append(SampleSpec(child.stem, None, "h5ad", child))
            elif _is_visium(child):
                specs.append(SampleSpec(child.name, None, "visium", child))
            elif _is_xenium(child):
                specs.append(SampleSpec(child.name, None, "xenium", child))
        if not specs:
            raise UnsupportedFormatError(
                f"{p}: no spatial samples found; expected a HER2ST-layout folder, Space Ranger or "
                "Xenium output folders, .h5ad files, or a manifest file (see `stimage prepare --help`)"
            )
    if mpp is not None:
        specs = [
            SampleSpec(s.sample_id, s.patient_id, s.format, s.path, s.image, mpp, s.options)
            for s in specs
        ]
    return Dataset(specs, p)


def read_sample(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    sample_id: str | None = None,
    **kwargs: Any,
) -> ad.AnnData:
    """Read one sample, detecting its format.

    Args:
        path: A Space Ranger folder, a Xenium folder, an ``.h5ad`` file, or a HER2ST folder
            (then ``sample_id`` names the section).
        format: Force a format instead of detecting it.
        sample_id: Sample (section) id.
        **kwargs: ``image``, ``mpp``, ``patient_id`` and format-specific options.
    """
    p = Path(path)
    fmt = format or detect_format(p)
    if fmt == "her2st" and not sample_id:
        from stimage.data._legacy_st import her2st_sections

        raise ConfigError(
            f"{p}: a HER2ST folder holds several sections {her2st_sections(p)}; name one"
        )
    image = kwargs.pop("image", None)
    spec = SampleSpec(
        sample_id or (p.stem if p.is_file() else p.name),
        kwargs.pop("patient_id", None),
        fmt,
        p,
        Path(image) if image else None,
        kwargs.pop("mpp", None),
        kwargs,
    )
    return spec.load()
