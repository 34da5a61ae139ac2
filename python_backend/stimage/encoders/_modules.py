"""Torch modules timm lacks: CTransPath's convolutional stem and CONCH's vision tower.

This module imports torch at the top, so only the builders of :mod:`._builders` import it, when
a model is built; looking encoder specs up never does.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from stimage.errors import ConfigError

__all__ = ["AttentionalPooler", "ConchVisionTower", "ConvStem"]


class ConvStem(nn.Module):
    """CTransPath's patch embedding: two stride-2 3x3 conv-BN-ReLU and a 1x1 conv (4x down).

    Replaces Swin's 4x4 patchify (Wang et al. 2022; TransPath ``ctran.py``). Parameter names
    (``proj.0``, ``proj.1``, ``proj.3``, ``proj.4``, ``proj.6``, ``norm``) are those of the
    released checkpoint. Accepts the arguments modern timm Swin passes and returns NHWC, as
    timm >= 0.9 Swin expects.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: Any = None,
        flatten: bool = True,
        output_fmt: str | None = None,
        strict_img_size: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        patch = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        if patch != (4, 4) or embed_dim % 8:
            raise ConfigError(
                f"ConvStem needs patch_size 4 and embed_dim divisible by 8, got {patch_size} and "
                f"{embed_dim}; use it only with swin_*_patch4_* architectures"
            )
        dd = {"device": device, "dtype": dtype}
        self.img_size = size
        self.patch_size = patch
        self.grid_size = (size[0] // 4, size[1] // 4)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.output_nhwc = output_fmt == "NHWC"
        self.flatten = flatten and not self.output_nhwc
        self.strict_img_size = strict_img_size
        layers: list[nn.Module] = []
        c_in, c_out = in_chans, embed_dim // 8
        for _ in range(2):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False, **dd),
                nn.BatchNorm2d(c_out, **dd),
                nn.ReLU(inplace=True),
            ]
            c_in, c_out = c_out, c_out * 2
        layers.append(nn.Conv2d(c_in, embed_dim, 1, **dd))
        self.proj = nn.Sequential(*layers)
        self.norm = norm_layer(embed_dim, **dd) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, h, w)`` -> NHWC, or ``(n, tokens, embed_dim)`` when flattening."""
        x = self.proj(x)
        if self.output_nhwc:
            x = x.permute(0, 2, 3, 1)
        elif self.flatten:
            x = x.flatten(2).transpose(1, 2)
        return self.norm(x)


class AttentionalPooler(nn.Module):
    """CoCa's attentional pooler as in CONCH (``open_clip_custom/transformer.py``).

    Learned queries attend over the layer-normed tokens; parameter names (``query``, ``attn``,
    ``ln_q``, ``ln_k``) are those of the CONCH checkpoint.
    """

    def __init__(self, d_model: int, context_dim: int, n_head: int = 8, n_queries: int = 1):
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_queries, d_model))
        self.attn = nn.MultiheadAttention(d_model, n_head, kdim=context_dim, vdim=context_dim)
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_k = nn.LayerNorm(context_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, tokens, context_dim)`` -> ``(n, n_queries, d_model)``."""
        kv = self.ln_k(x).permute(1, 0, 2)
        q = self.ln_q(self.query).unsqueeze(1).expand(-1, kv.shape[1], -1)
        return self.attn(q, kv, kv, need_weights=False)[0].permute(1, 0, 2)


class ConchVisionTower(nn.Module):
    """CONCH's image encoder up to the embedding its authors recommend for linear probes.

    ``trunk`` (timm ViT-B/16 at 448 px) -> all tokens -> contrastive attentional pooler
    (1 query) -> LayerNorm: CONCH's ``encode_image(x, proj_contrast=False, normalize=False)``,
    512 features. The projection into the joint image-text space and the captioning pooler are
    left out.
    """

    def __init__(self, trunk: VisionTransformer, embed_dim: int = 512, n_head: int = 8) -> None:
        super().__init__()
        self.trunk = trunk
        width = int(trunk.num_features)
        self.attn_pool_contrast = AttentionalPooler(embed_dim, width, n_head, n_queries=1)
        self.ln_contrast = nn.LayerNorm(embed_dim)
        self.num_features = embed_dim

    @property
    def patch_embed(self) -> nn.Module:
        """The trunk's patch embedding (marks this as a ViT to :class:`Encoder`)."""
        return self.trunk.patch_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, h, w)`` -> ``(n, embed_dim)`` pooled, layer-normed features."""
        tokens = self.trunk.forward_features(x)
        return self.ln_contrast(self.attn_pool_contrast(tokens)[:, 0])
