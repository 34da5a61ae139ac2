"""Saving and loading cell-type models: a JSON manifest and safetensors weights, no pickle.

Layout::

    MODEL/celltype_manifest.json        classes, mapping, feature names and context settings,
                                        model options, uncertainty definition, training
                                        provenance, metrics, format version, weights sha256
    MODEL/celltype_weights.safetensors  layer weights, feature means and scales (float32)

A model of a newer format version than this stimage reads is refused with a message.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from stimage._version import __version__
from stimage.errors import ConfigError, InputFileNotFoundError, StimageError
from stimage.models._bundle import _json_default, _sha256
from stimage.models._celltype import CellTypeClassifier

__all__ = [
    "CELLTYPE_FORMAT",
    "CELLTYPE_FORMAT_VERSION",
    "load_celltype_model",
    "save_celltype_model",
]

CELLTYPE_FORMAT = "stimage-celltype-model"
CELLTYPE_FORMAT_VERSION = 1
MANIFEST = "celltype_manifest.json"
WEIGHTS = "celltype_weights.safetensors"


def save_celltype_model(
    model: CellTypeClassifier, folder: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write ``celltype_manifest.json`` and ``celltype_weights.safetensors`` into a folder.

    Raises:
        ConfigError: Not fitted, or the folder holds a model and ``overwrite`` is False.
    """
    from safetensors.numpy import save_file

    if not model.fitted or model.scale is None or model.mean is None:
        raise ConfigError("the cell-type model is not fitted; nothing to save")
    out = Path(folder)
    if (out / MANIFEST).exists() and not overwrite:
        raise ConfigError(
            f"{out}: a cell-type model already exists there; use --overwrite or another folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v, np.float32) for k, v in model.weights.items()}
    tensors["mean"] = np.asarray(model.mean, np.float32)
    tensors["scale"] = np.asarray(model.scale, np.float32)
    tmp = out / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, out / WEIGHTS)
    manifest = {
        "format": CELLTYPE_FORMAT,
        "format_version": CELLTYPE_FORMAT_VERSION,
        "stimage_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "classes": list(model.classes),
        "mapping": model.mapping,
        "features": list(model.feature_names),
        "context_um": model.context_um,
        "patch_um": model.patch_um,
        "model": {
            "hidden": model.hidden,
            "max_iter": model.max_iter,
            "weight_decay": model.weight_decay,
            "prior_weight": model.prior_weight,
            "entropy_weight": model.entropy_weight,
            "anchor_weight": model.anchor_weight,
            "calling": model.calling,
            "call_bias": None if model.call_bias is None else model.call_bias.tolist(),
            "seed": model.seed,
        },
        "uncertainty": "entropy of the class probabilities divided by log(K)",
        "training": model.training,
        "metrics": model.metrics,
        "weights": {"file": WEIGHTS, "sha256": _sha256(out / WEIGHTS)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_default))
    return out


def load_celltype_model(folder: str | os.PathLike[str]) -> CellTypeClassifier:
    """Load a cell-type model folder written by :meth:`CellTypeClassifier.save` (no pickle).

    Raises:
        InputFileNotFoundError: No model there, or its weights file is missing.
        ConfigError: The manifest is invalid or of a newer format version.
        StimageError: The weights file is damaged.
    """
    from safetensors.numpy import load_file

    root = Path(folder).expanduser()
    mp = root / MANIFEST
    if not mp.is_file():
        raise InputFileNotFoundError(
            f"{root}: not a cell-type model (no {MANIFEST}); train one with "
            "`stimage train-cells` or give the folder of one"
        )
    try:
        m = json.loads(mp.read_text())
    except ValueError as e:
        raise ConfigError(f"{mp}: not valid JSON ({e})") from e
    if m.get("format") != CELLTYPE_FORMAT:
        raise ConfigError(f"{mp}: not a stimage cell-type model (format {m.get('format')!r})")
    version = m.get("format_version")
    if not isinstance(version, int) or version > CELLTYPE_FORMAT_VERSION:
        raise ConfigError(
            f"{mp}: cell-type model format version {version!r} is not one this stimage "
            f"({__version__}) reads (up to {CELLTYPE_FORMAT_VERSION}); update stimage"
        )
    try:
        wp = root / m["weights"]["file"]
        sha = m["weights"]["sha256"]
        classes, features, opts = m["classes"], m["features"], m["model"]
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{mp}: manifest lacks {e}") from e
    if not wp.is_file():
        raise InputFileNotFoundError(f"{wp}: the weights file is missing; copy the whole folder")
    if _sha256(wp) != sha:
        raise StimageError(f"{wp}: checksum differs from the manifest; the file is damaged")
    try:
        t = load_file(str(wp))
    except Exception as e:
        raise StimageError(f"{wp}: cannot read the weights ({e})") from e
    mean = t.pop("mean", np.zeros(0)).astype(np.float64)
    scale = t.pop("scale", np.zeros(0)).astype(np.float64)
    d = len(features)
    if t.get("l0.weight", np.zeros((0, 0))).shape[1:] != (d,) or mean.shape != (d,):
        raise ConfigError(f"{wp}: weights do not match the {d} features of the manifest")
    model = CellTypeClassifier(
        classes=tuple(classes),
        mapping=dict(m.get("mapping") or {}),
        context_um=m.get("context_um"),
        patch_um=m.get("patch_um"),
        feature_names=list(features),
        mean=mean,
        scale=scale,
        weights=dict(t),
        training=m.get("training", {}),
        metrics=m.get("metrics", {}),
        **{k: opts[k] for k in opts if k in _OPTIONS},
    )
    return model


_OPTIONS = {
    "hidden",
    "max_iter",
    "weight_decay",
    "prior_weight",
    "entropy_weight",
    "anchor_weight",
    "calling",
    "call_bias",
    "seed",
}
