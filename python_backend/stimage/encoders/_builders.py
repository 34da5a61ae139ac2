"""Builders that encoder specs name: modules timm lacks, built only when a model is built.

CTransPath's convolutional stem (:func:`conv_stem`, passed to timm as ``embed_layer``), timm's
SwiGLU MLP (:func:`swiglu_packed`, passed as ``mlp_layer``) and CONCH's vision tower
(:func:`conch_vision_tower`, named as the spec's ``arch`` in ``module:function`` form). torch
and timm are imported inside the builders, so looking specs up stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stimage.errors import ConfigError, StimageError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["conch_vision_tower", "conv_stem", "swiglu_packed"]


def conv_stem(**kwargs: Any) -> nn.Module:
    """CTransPath's convolutional stem; pass as timm's ``embed_layer`` (see ``ConvStem``)."""
    from stimage.encoders._modules import ConvStem

    return ConvStem(**kwargs)


def swiglu_packed(**kwargs: Any) -> nn.Module:
    """The ``SwiGLUPacked`` MLP of timm, imported only when a model is built (for ``mlp_layer``)."""
    from timm.layers import SwiGLUPacked

    return SwiGLUPacked(**kwargs)


def conch_vision_tower(
    *, pretrained: bool = False, num_classes: int = 0, img_size: int = 448, **kwargs: Any
) -> nn.Module:
    """CONCH's vision tower: timm ViT-B/16 trunk plus the contrastive attentional pooler.

    The trunk is ``VisionTransformer(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4,
    patch_size=16, img_size=448, dynamic_img_size=True)`` as CONCH's ``_build_vision_tower``
    builds it, i.e. timm's ``vit_base_patch16_224`` at 448 px.

    Args:
        pretrained: Must be False; weights are loaded from a local file afterwards.
        num_classes: Ignored (the tower has no classifier).
        img_size: Input side in pixels.
        **kwargs: Passed to the timm trunk.
    """
    import timm
    from timm.models.vision_transformer import VisionTransformer

    from stimage.encoders._modules import ConchVisionTower

    if pretrained:
        raise ConfigError("conch_vision_tower builds an empty model; load weights from a file")
    kwargs.pop("global_pool", None)
    trunk = timm.create_model(
        "vit_base_patch16_224",
        pretrained=False,
        num_classes=0,
        img_size=img_size,
        dynamic_img_size=True,
        **kwargs,
    )
    if not isinstance(trunk, VisionTransformer):
        raise StimageError(
            f"timm built a {type(trunk).__name__} for CONCH's trunk, not a ViT; update timm"
        )
    return ConchVisionTower(trunk)
