"""Image encoders: a registry of architectures with their weights, preprocessing and precision.

Example:
    >>> from stimage.encoders import create_encoder, list_encoders
    >>> "efficientnet_lite0" in list_encoders()
    True
    >>> enc = create_encoder("efficientnet_lite0")  # doctest: +SKIP
    >>> enc.encode(tiles).shape  # doctest: +SKIP
    (n, 1280)
"""

from stimage.encoders import _builtin, _foundation  # noqa: F401  (register the encoders)
from stimage.encoders._device import cpu_flags, pick_device
from stimage.encoders._encoder import Encoder, create_encoder
from stimage.encoders._registry import (
    EncoderSpec,
    WeightSource,
    get_encoder_spec,
    list_encoders,
    register_encoder,
)
from stimage.encoders._weights import (
    MissingWeightsError,
    find_weights,
    load_state_dict,
    sha256_of,
    stimage_home,
)

DEFAULT_ENCODER = "efficientnet_lite0"

__all__ = [
    "DEFAULT_ENCODER",
    "Encoder",
    "EncoderSpec",
    "MissingWeightsError",
    "WeightSource",
    "cpu_flags",
    "create_encoder",
    "find_weights",
    "get_encoder_spec",
    "list_encoders",
    "load_state_dict",
    "pick_device",
    "register_encoder",
    "sha256_of",
    "stimage_home",
]
