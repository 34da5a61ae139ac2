"""A loaded encoder that carries its own preprocessing and precision.

:func:`create_encoder` builds the timm architecture of a registered spec, loads its weights
offline and returns an :class:`Encoder`: give it uint8 RGB tiles, get feature vectors. No
caller re-derives normalisation, input size, pooling or precision (compare TRIDENT).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.encoders._device import pick_device, resolve_precision
from stimage.encoders._registry import EncoderSpec, get_encoder_spec
from stimage.encoders._weights import find_weights, load_state_dict, sha256_of
from stimage.errors import ConfigError, StimageError

if TYPE_CHECKING:
    import torch

__all__ = ["Encoder", "create_encoder", "pick_device", "resolve_precision"]

logger = logging.getLogger(__name__)

#: The views of each test-time augmentation: ``k % 4`` quarter turns, mirrored for k >= 4.
_VIEWS: dict[int, tuple[int, ...]] = {1: (0,), 2: (0, 4), 4: (0, 1, 2, 3), 8: tuple(range(8))}


def _resolve(ref: str, what: str) -> Any:
    """``package.module:name`` -> that object (a spec's key converter or model builder)."""
    module, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{what} {ref!r} cannot be imported ({e}); reinstall stimage") from e


def _map_keys(
    sd: dict[str, Any], model: torch.nn.Module, key_map: str, where: str
) -> dict[str, Any]:
    target = model.state_dict()
    if key_map == "timm":
        return sd
    if key_map.startswith("strip:"):
        prefix = key_map[len("strip:") :]
        return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in sd.items()}
    if key_map.startswith("convert:"):
        return _resolve(key_map[len("convert:") :], "key converter")(sd, model)
    if key_map == "ordered":
        src = [
            (k, v)
            for k, v in sd.items()
            if not re.search(r"(^|\.)_?fc\.|classifier\.|head\.fc\.", k)
        ]
        dst = list(target.items())
        if len(src) != len(dst):
            raise StimageError(
                f"{where}: {len(src)} tensors in the file, {len(dst)} in the model; wrong file?"
            )
        out = {}
        for (ks, vs), (kd, vd) in zip(src, dst, strict=True):
            if tuple(vs.shape) != tuple(vd.shape):
                raise StimageError(
                    f"{where}: tensor {ks} {tuple(vs.shape)} does not fit {kd} {tuple(vd.shape)}"
                )
            out[kd] = vs
        return out
    raise ConfigError(f"unknown key map {key_map!r}")


def _reset_parameters(module: torch.nn.Module) -> None:
    """Re-initialise a module's own parameters, where it knows how (random test weights)."""
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()


class Encoder:
    """An image encoder with its preprocessing: uint8 RGB tiles in, features out.

    Attributes:
        spec: What the encoder is.
        model: The torch module (eval mode).
        device: Where it runs.
        weights_path: The weights file loaded (None for random test weights).
        weights_sha256: Its checksum.
    """

    def __init__(
        self,
        spec: EncoderSpec,
        model: torch.nn.Module,
        device: str,
        weights_path: str | None,
        weights_sha256: str | None,
    ) -> None:
        import torch

        self.spec = spec
        self.model = model.eval().to(device)
        self.device = device
        self.weights_path = weights_path
        self.weights_sha256 = weights_sha256
        self.precision = resolve_precision(spec.precision, device)
        self._cnn = not hasattr(model, "patch_embed")
        if self._cnn:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1) * 255.0

    @property
    def feature_dim(self) -> int:
        """Length of a feature vector."""
        return self.spec.feature_dim

    def preprocess(self, tiles: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``(n, h, w, 3)`` uint8 RGB -> normalised ``(n, 3, s, s)`` float tensor on the device."""
        import torch
        import torch.nn.functional as F

        t = torch.as_tensor(np.ascontiguousarray(tiles)) if isinstance(tiles, np.ndarray) else tiles
        if t.ndim != 4 or t.shape[-1] != 3 or t.dtype != torch.uint8:
            raise ConfigError(
                f"expected (n, h, w, 3) uint8 RGB tiles, got {tuple(t.shape)} {t.dtype}"
            )
        x = t.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        s = self.spec.input_size
        if x.shape[-1] != s or x.shape[-2] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        x = (x - self._mean) / self._std
        return x.contiguous(memory_format=torch.channels_last) if self._cnn else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features of preprocessed input, pooled as the spec says."""
        m: Any = self.model
        if self.spec.pooling == "timm":
            return m(x)
        if self.spec.pooling == "timm+stages":
            import torch

            final, inter = m.forward_intermediates(x, indices=list(self.spec.stages))
            pooled = [t.float().mean(dim=(2, 3)) for t in inter]
            return torch.cat([m.forward_head(final).float(), *pooled], dim=-1)
        tokens = m.forward_features(x)
        n_prefix = int(getattr(m, "num_prefix_tokens", 1))
        cls = tokens[:, 0]
        if self.spec.pooling == "cls":
            return cls
        patches = tokens[:, n_prefix:].mean(dim=1)
        if self.spec.pooling == "mean":
            return patches
        import torch

        return torch.cat([cls, patches], dim=-1)

    def _views(self, x: torch.Tensor) -> torch.Tensor:
        """Features of the input, averaged over the spec's test-time views (dihedral group).

        View ``k`` is ``k % 4`` quarter turns, mirrored left-right for ``k >= 4``; with
        ``tta=2`` the tile and its mirror image, with 4 the four rotations.
        """
        import torch

        n = self.spec.tta
        if n == 1:
            return self.forward_features(x)
        total: torch.Tensor | None = None
        for k in _VIEWS[n]:
            v = torch.rot90(x, k % 4, dims=(2, 3))
            if k >= 4:
                v = torch.flip(v, dims=(3,))
            v = v.contiguous(memory_format=torch.channels_last) if self._cnn else v.contiguous()
            f = self.forward_features(v).float()
            total = f if total is None else total + f
        assert total is not None
        return total / n

    def encode(
        self, tiles: np.ndarray, batch_size: int = 32, precision: str | None = None
    ) -> np.ndarray:
        """Features of uint8 tiles as an ``(n, feature_dim)`` float32 array.

        Args:
            tiles: ``(n, h, w, 3)`` uint8 RGB (any size; resized to the encoder's input).
            batch_size: Tiles per forward pass.
            precision: ``bf16`` or ``fp32``; by default bf16 where the hardware runs it natively.
        """
        out = [
            f
            for f in self.encode_batches(
                (tiles[i : i + batch_size] for i in range(0, len(tiles), batch_size)), precision
            )
        ]
        return np.concatenate(out) if out else np.zeros((0, self.feature_dim), np.float32)

    def encode_batches(
        self, batches: Iterable[np.ndarray], precision: str | None = None
    ) -> Iterable[np.ndarray]:
        """Features of each batch of tiles, in order."""
        import torch

        prec = precision or self.precision
        dev_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with (
            torch.inference_mode(),
            torch.autocast(dev_type, dtype=torch.bfloat16, enabled=prec == "bf16"),
        ):
            for b in batches:
                f = self._views(self.preprocess(b))
                if f.shape[-1] != self.feature_dim:
                    raise StimageError(
                        f"encoder {self.spec.name} gave {f.shape[-1]} features, its spec says {self.feature_dim}"
                    )
                arr = f.float().cpu().numpy()
                if not np.isfinite(arr).all():
                    raise StimageError(
                        f"encoder {self.spec.name} produced NaN or infinite features"
                    )
                yield arr

    def __repr__(self) -> str:
        return f"Encoder({self.spec.name}, {self.spec.arch}, {self.spec.input_size}px -> {self.feature_dim}, {self.device})"


def create_encoder(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    device: str | None = None,
    random_init: bool = False,
    verify: bool = True,
) -> Encoder:
    """Build a registered encoder with its pretrained weights, offline.

    Args:
        name: Registered encoder name (see :func:`list_encoders`).
        weights: Explicit weights file (otherwise looked up; see :func:`find_weights`).
        device: ``cpu``, ``cuda``, ``cuda:1``...; the GPU when there is one by default.
        random_init: Random weights (tests, or test encoders without pretrained weights).
        verify: Check the file's SHA-256 when the spec gives one.

    Raises:
        MissingWeightsError: The weights are not on this machine (the message says what
            file to get and where to put it).

    Example:
        >>> enc = create_encoder("efficientnet_lite0")  # doctest: +SKIP
        >>> feats = enc.encode(tiles)  # (n, 1280) float32  # doctest: +SKIP
    """
    import timm
    import torch

    spec = get_encoder_spec(name)
    dev = pick_device(device)
    use_random = random_init or spec.weights is None
    if spec.weights is None and not random_init and spec.family != "test":
        raise ConfigError(
            f"encoder {name!r} has no pretrained weights; it is for tests (random_init=True)"
        )
    # Find (and check) the weights before building what may be a billion-parameter model.
    p = None if use_random else find_weights(spec, weights)
    sha = None
    if p is not None and verify and spec.weights is not None and spec.weights.sha256:
        sha = sha256_of(p)
        if sha != spec.weights.sha256:
            raise StimageError(
                f"{p}: SHA-256 {sha[:12]}... differs from the published {spec.weights.sha256[:12]}... of "
                f"{spec.weights.filename}; the file is corrupt or a different version - download it again"
            )
    kwargs = {"pretrained": False, "num_classes": 0, **dict(spec.timm_kwargs)}
    if spec.pooling not in ("timm", "timm+stages"):
        kwargs.setdefault("global_pool", "")
    build = (
        _resolve(spec.arch, "model builder")
        if ":" in spec.arch
        else functools.partial(timm.create_model, spec.arch)
    )
    try:
        model = build(**kwargs)
    except (RuntimeError, TypeError, ValueError) as e:
        raise StimageError(
            f"timm cannot build {spec.arch} for encoder {name!r} ({e}); update timm"
        ) from e
    path = None
    if p is None:
        torch.manual_seed(0)
        model.apply(_reset_parameters)
    else:
        assert spec.weights is not None
        fmt = "safetensors" if p.suffix == ".safetensors" else spec.weights.format
        sd = _map_keys(load_state_dict(p, fmt), model, spec.weights.key_map, str(p))
        try:
            missing, unexpected = model.load_state_dict(sd, strict=False)
        except RuntimeError as e:  # shape mismatches
            raise StimageError(
                f"{p}: weights do not fit encoder {name!r} ({str(e).splitlines()[1].strip()}); is it the right file?"
            ) from e
        unexpected = [k for k in unexpected if not re.search(r"(^|\.)(fc|classifier|head)\.", k)]
        if missing or unexpected:
            raise StimageError(
                f"{p}: weights do not fit encoder {name!r} ({len(missing)} missing, e.g. {missing[:2]}; "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); is it the right file?"
            )
        path = str(p)
        sha = sha or spec.weights.sha256
    return Encoder(spec, model, dev, path, sha)
