"""Pathology foundation models: timm architectures with the publishers' checkpoints, offline.

Each encoder is registered with the architecture, preprocessing and pooling its publisher
documents, and the checkpoint file name as distributed. The weights themselves never come from
the network at run time: get the file once (most are gated on Hugging Face, accept the terms
first) and put it where :func:`stimage.encoders.find_weights` looks. See ``docs/encoders.md``.

Most checkpoints load into timm as they are. Three need converting, done here by converters
named in the spec's ``key_map`` as ``convert:<module>:<function>``:

* ``phikon_v2``: a Hugging Face ``transformers`` DINOv2 file; separate q/k/v are fused into
  timm's ``qkv`` (:func:`phikon_v2_to_timm`).
* ``conch``: the whole CoCa model; only the vision tower is kept (:func:`conch_to_tower`).
* ``ctranspath``: a Swin-T saved by timm 0.5.4 (downsampling at the end of a stage); timm's own
  Swin converter renames it (:func:`ctranspath_to_timm`).

Two encoders need modules timm lacks, built by the factories here: CTransPath's convolutional
stem (:func:`conv_stem`, passed to timm as ``embed_layer``) and CONCH's attentional pooler
(:func:`conch_vision_tower`, named as the spec's ``arch`` in ``module:function`` form). torch and
timm are imported only when a model is built, so looking specs up stays instant.

Sources are cited beside each spec; anything not confirmed from them is marked UNCONFIRMED.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from stimage.encoders._builtin import IMAGENET_MEAN, IMAGENET_STD
from stimage.encoders._registry import EncoderSpec, WeightSource, register_encoder
from stimage.errors import ConfigError, StimageError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "conch_to_tower",
    "conch_vision_tower",
    "conv_stem",
    "ctranspath_to_timm",
    "phikon_v2_to_timm",
    "swiglu_packed",
]

#: OpenAI CLIP's normalisation, which CONCH's open_clip transform uses (not ImageNet's).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: H-optimus-0's own normalisation (model card, bioptimus/releases README).
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)

_MAHMOOD_LICENCE = "CC-BY-NC-ND-4.0 (non-commercial academic research; Mahmood Lab terms of use)"
_UNI_CITATION = (
    "Chen R.J., Ding T., Lu M.Y., Williamson D.F.K. et al. Towards a general-purpose foundation "
    "model for computational pathology. Nature Medicine 30, 850-862 (2024). "
    "doi:10.1038/s41591-024-02857-3"
)
_THIS = "stimage.encoders._foundation"


# --- modules timm lacks, built lazily ---------------------------------------------------------


@functools.cache
def _torch_modules() -> SimpleNamespace:
    """The torch modules of this file, defined on first use (keeps importing stimage light)."""
    import torch
    from torch import nn

    class ConvStem(nn.Module):
        """CTransPath's patch embedding: two stride-2 3x3 conv-BN-ReLU and a 1x1 conv (4x down).

        Replaces Swin's 4x4 patchify (Wang et al. 2022; TransPath ``ctran.py``). Parameter
        names (``proj.0``, ``proj.1``, ``proj.3``, ``proj.4``, ``proj.6``, ``norm``) are those
        of the released checkpoint. Accepts the arguments modern timm Swin passes and returns
        NHWC, as timm >= 0.9 Swin expects.
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
            x = self.proj(x)
            if self.output_nhwc:
                x = x.permute(0, 2, 3, 1)
            elif self.flatten:
                x = x.flatten(2).transpose(1, 2)
            return self.norm(x)

    class AttentionalPooler(nn.Module):
        """CoCa's attentional pooler as in CONCH (``open_clip_custom/transformer.py``).

        Learned queries attend over the layer-normed tokens; parameter names (``query``,
        ``attn``, ``ln_q``, ``ln_k``) are those of the CONCH checkpoint.
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
        (1 query) -> LayerNorm: CONCH's ``encode_image(x, proj_contrast=False,
        normalize=False)``, 512 features. The projection into the joint image-text space and the
        captioning pooler are left out.
        """

        def __init__(self, trunk: nn.Module, embed_dim: int = 512, n_head: int = 8) -> None:
            super().__init__()
            self.trunk = trunk
            width = int(trunk.num_features)  # type: ignore[arg-type]
            self.attn_pool_contrast = AttentionalPooler(embed_dim, width, n_head, n_queries=1)
            self.ln_contrast = nn.LayerNorm(embed_dim)
            self.num_features = embed_dim

        @property
        def patch_embed(self) -> nn.Module:
            """The trunk's patch embedding (marks this as a ViT to :class:`Encoder`)."""
            return self.trunk.patch_embed  # type: ignore[return-value]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = self.trunk.forward_features(x)  # type: ignore[operator]
            return self.ln_contrast(self.attn_pool_contrast(tokens)[:, 0])

    return SimpleNamespace(
        ConvStem=ConvStem, AttentionalPooler=AttentionalPooler, ConchVisionTower=ConchVisionTower
    )


def conv_stem(**kwargs: Any) -> nn.Module:
    """CTransPath's convolutional stem; pass as timm's ``embed_layer`` (see :class:`ConvStem`)."""
    return _torch_modules().ConvStem(**kwargs)


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
    return _torch_modules().ConchVisionTower(trunk)


# --- checkpoint converters: (state dict, model) -> state dict in the model's names -------------


def _resample_grid(pos: torch.Tensor, n_prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """Bicubic resampling of absolute position embeddings to ``grid`` (as HF DINOv2 does)."""
    import torch
    import torch.nn.functional as F

    prefix, patches = pos[:, :n_prefix], pos[:, n_prefix:]
    side = round(patches.shape[1] ** 0.5)
    if side * side != patches.shape[1]:
        raise StimageError(
            f"position embeddings of {patches.shape[1]} patches are not a square grid; wrong file?"
        )
    p = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    p = F.interpolate(p, size=grid, mode="bicubic", align_corners=False)
    p = p.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(pos.dtype)
    return torch.cat([prefix, p], dim=1)


def _fit_pos_embed(pos: torch.Tensor, model: Any) -> torch.Tensor:
    """Position embeddings of a checkpoint, resampled to the model's patch grid if it differs."""
    target = model.pos_embed
    if tuple(pos.shape) == tuple(target.shape):
        return pos
    n_prefix = 0 if getattr(model, "no_embed_class", False) else int(model.num_prefix_tokens)
    return _resample_grid(pos, n_prefix, tuple(model.patch_embed.grid_size))


_PHIKON_LAYER = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def phikon_v2_to_timm(sd: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Hugging Face ``Dinov2Model`` weights (Phikon-v2's ``model.safetensors``) -> timm ViT names.

    ``embeddings.*`` -> ``cls_token``, ``pos_embed``, ``patch_embed.proj``; per layer
    ``attention.attention.{query,key,value}`` are concatenated (in that order) into
    ``attn.qkv``, ``attention.output.dense`` -> ``attn.proj``, ``layer_scale{1,2}.lambda1`` ->
    ``ls{1,2}.gamma``, norms and MLP keep their names; ``layernorm`` -> ``norm``. The unused
    ``mask_token`` is dropped, and position embeddings saved for another image size are resampled
    bicubically to the model's grid, as ``Dinov2Embeddings.interpolate_pos_encoding`` does.

    Raises:
        StimageError: The file is not a DINOv2 ``transformers`` checkpoint.
    """
    import torch

    src = {(k[len("dinov2.") :] if k.startswith("dinov2.") else k): v for k, v in sd.items()}
    if "embeddings.patch_embeddings.projection.weight" not in src:
        raise StimageError(
            "not a Hugging Face DINOv2 checkpoint (no embeddings.patch_embeddings.projection.weight); "
            "phikon_v2 needs model.safetensors from owkin/phikon-v2"
        )
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for k, v in src.items():
        if k == "embeddings.mask_token":
            continue
        if k == "embeddings.cls_token":
            out["cls_token"] = v
        elif k == "embeddings.position_embeddings":
            out["pos_embed"] = _fit_pos_embed(v, model)
        elif k.startswith("embeddings.patch_embeddings.projection."):
            out["patch_embed.proj." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("layernorm."):
            out["norm." + k.rsplit(".", 1)[1]] = v
        elif m := re.fullmatch(
            r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)", k
        ):
            qkv.setdefault((m[1], m[3]), {})[m[2]] = v
        elif m := re.fullmatch(r"encoder\.layer\.(\d+)\.(.+?)(\.weight|\.bias)?", k):
            name = _PHIKON_LAYER.get(m[2])
            out[f"blocks.{m[1]}.{name}{m[3] or ''}" if name else k] = v
        else:
            out[k] = v  # reported as unexpected by the loader
    for (i, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise StimageError(f"layer {i}: {kind} of query, key and value incomplete; wrong file?")
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0
        )
    return out


_CONCH_TOWER = ("visual.trunk.", "visual.attn_pool_contrast.", "visual.ln_contrast.")


def conch_to_tower(sd: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """CONCH's full CoCa checkpoint -> :func:`conch_vision_tower` names.

    Keeps ``visual.trunk.*``, ``visual.attn_pool_contrast.*`` and ``visual.ln_contrast.*``
    without their ``visual.`` prefix; drops the text tower, ``visual.proj_contrast``, the
    captioning pooler and ``logit_scale``. The trunk's position embeddings are resampled if the
    model was built for another image size.

    Raises:
        StimageError: The file holds no CONCH vision tower.
    """
    out = {k[len("visual.") :]: v for k, v in sd.items() if k.startswith(_CONCH_TOWER)}
    if "trunk.patch_embed.proj.weight" not in out:
        raise StimageError(
            "not a CONCH checkpoint (no visual.trunk.* tensors); conch needs pytorch_model.bin "
            "from MahmoodLab/CONCH"
        )
    trunk = model.trunk  # type: ignore[union-attr]
    out["trunk.pos_embed"] = _fit_pos_embed(out["trunk.pos_embed"], trunk)
    return out


def ctranspath_to_timm(sd: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """CTransPath's ``ctranspath.pth`` (timm 0.5.4 Swin-T layout) -> current timm Swin names.

    Delegates to timm's own Swin converter, which moves each ``layers.N.downsample`` to
    ``layers.N+1.downsample`` (old timm downsampled at the end of a stage, new timm at the start)
    and drops the non-persistent ``relative_position_index`` and ``attn_mask`` buffers. The
    ``ConvStem`` keys (``patch_embed.proj.{0,1,3,4,6}``, ``patch_embed.norm``) pass unchanged.

    Raises:
        StimageError: The file is not a Swin checkpoint.
    """
    from timm.models.swin_transformer import checkpoint_filter_fn

    if not any(k.startswith("layers.") for k in sd):
        raise StimageError(
            "not a Swin checkpoint (no layers.* tensors); ctranspath needs ctranspath.pth from "
            "the TransPath README"
        )
    return checkpoint_filter_fn(dict(sd), model)


# --- the encoders -----------------------------------------------------------------------------


@register_encoder
def uni() -> EncoderSpec:
    """UNI (Mahmood Lab): ViT-L/16 DINOv2 on Mass-100K, 224 px, 1024 features (class token).

    Sources: github.com/mahmoodlab/UNI README (``timm.create_model("vit_large_patch16_224",
    img_size=224, patch_size=16, init_values=1e-5, num_classes=0, dynamic_img_size=True)``, then
    ``load_state_dict(torch.load("pytorch_model.bin"), strict=True)``; ImageNet mean/std;
    CC-BY-NC-ND 4.0, gated). 0.5 µm/px (20x), the scale UNI's users and TRIDENT tile at;
    UNCONFIRMED from the paper's text here.
    """
    return EncoderSpec(
        name="uni",
        arch="vit_large_patch16_224",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_dim=1024,
        weights=WeightSource(
            filename="pytorch_model.bin",
            hf_repo="MahmoodLab/UNI",
            format="torch",
            key_map="timm",
            licence=_MAHMOOD_LICENCE,
            gated=True,
        ),
        timm_kwargs={
            "img_size": 224,
            "patch_size": 16,
            "init_values": 1e-5,
            "dynamic_img_size": True,
        },
        pooling="timm",
        mpp=0.5,
        family="pathology",
        citation=_UNI_CITATION,
        description="UNI ViT-L/16 (Mahmood Lab), 1024 features; gated, non-commercial",
    )


@register_encoder
def uni2_h() -> EncoderSpec:
    """UNI2-h (Mahmood Lab): ViT-H/14 with 8 registers and SwiGLU, 224 px, 1536 features.

    Sources: github.com/mahmoodlab/UNI README, local-checkpoint snippet: ``vit_giant_patch14_224``
    with ``img_size=224, patch_size=14, depth=24, num_heads=24, init_values=1e-5,
    embed_dim=1536, mlp_ratio=2.66667*2, no_embed_class=True, mlp_layer=SwiGLUPacked,
    act_layer=SiLU, reg_tokens=8, dynamic_img_size=True``; ``pytorch_model.bin`` loaded strictly;
    ImageNet mean/std; features = ``model(x)``, the class token. UNCONFIRMED: the training scale of
    UNI2 (0.5 µm/px assumed as for UNI).
    """
    return EncoderSpec(
        name="uni2_h",
        arch="vit_giant_patch14_224",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_dim=1536,
        weights=WeightSource(
            filename="pytorch_model.bin",
            hf_repo="MahmoodLab/UNI2-h",
            format="torch",
            key_map="timm",
            licence=_MAHMOOD_LICENCE,
            gated=True,
        ),
        timm_kwargs={
            "img_size": 224,
            "patch_size": 14,
            "depth": 24,
            "num_heads": 24,
            "init_values": 1e-5,
            "embed_dim": 1536,
            "mlp_ratio": 2.66667 * 2,
            "no_embed_class": True,
            "mlp_layer": swiglu_packed,
            "act_layer": "silu",
            "reg_tokens": 8,
            "dynamic_img_size": True,
        },
        pooling="timm",
        mpp=0.5,
        family="pathology",
        citation=_UNI_CITATION + " UNI2-h: huggingface.co/MahmoodLab/UNI2-h (2025).",
        description="UNI2-h ViT-H/14-reg8 (Mahmood Lab), 1536 features; gated, non-commercial",
    )


@register_encoder
def virchow2() -> EncoderSpec:
    """Virchow2 (Paige/Microsoft): ViT-H/14, 4 registers, SwiGLU; class token + mean patch token.

    Sources: huggingface.co/paige-ai/Virchow2 model card (``timm.create_model(
    "hf-hub:paige-ai/Virchow2", mlp_layer=SwiGLUPacked, act_layer=SiLU)``; embedding =
    ``cat(output[:, 0], output[:, 5:].mean(1))``, the 4 register tokens 1-4 excluded -> 2560;
    CC-BY-NC-ND 4.0, gated) and TRIDENT's local loader (``vit_huge_patch14_224`` with
    ``img_size=224, init_values=1e-5, reg_tokens=4, mlp_ratio=5.3375, global_pool="",
    dynamic_img_size=True``, ``pytorch_model.bin`` strict). Trained on 5x-40x mixed
    magnifications; 0.5 µm/px (20x) is used here.
    """
    return EncoderSpec(
        name="virchow2",
        arch="vit_huge_patch14_224",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_dim=2560,
        weights=WeightSource(
            filename="pytorch_model.bin",
            hf_repo="paige-ai/Virchow2",
            format="torch",
            key_map="timm",
            licence="CC-BY-NC-ND-4.0 (non-commercial; Paige terms of use)",
            gated=True,
        ),
        timm_kwargs={
            "img_size": 224,
            "init_values": 1e-5,
            "reg_tokens": 4,
            "mlp_ratio": 5.3375,
            "mlp_layer": swiglu_packed,
            "act_layer": "silu",
            "dynamic_img_size": True,
        },
        pooling="cls+mean",
        mpp=0.5,
        family="pathology",
        citation=(
            "Zimmermann E., Vorontsov E., Viret J. et al. Virchow2: Scaling self-supervised mixed "
            "magnification models in pathology. arXiv:2408.00738 (2024)."
        ),
        description="Virchow2 ViT-H/14-reg4 (Paige), class + mean token, 2560 features; gated, non-commercial",
    )


@register_encoder
def h_optimus_0() -> EncoderSpec:
    """H-optimus-0 (Bioptimus): ViT-g/14 with 4 registers, 224 px at 0.5 µm/px, 1536 features.

    Sources: github.com/bioptimus/releases models/h-optimus/v0 README (ViT with
    ``patch_size=14, embed_dim=1536, depth=40, num_heads=24, init_values=1e-5,
    mlp_ratio=5.33334``, GluMlp(SiLU, gate_last=False) = SwiGLUPacked, ``reg_tokens=4,
    no_embed_class=True``: timm's ``vit_giant_patch14_reg4_dinov2``; tiles 224x224 at 0.5 µm/px;
    its own mean/std) and the HF card/config (``vit_giant_patch14_reg4_dinov2``,
    ``global_pool="token"``, ``pytorch_model.bin``, Apache-2.0). UNCONFIRMED: whether the HF repo
    is gated (assumed so); the same weights are also published without login as
    ``checkpoint.pth`` (README), usable with ``--encoder-weights``.
    """
    return EncoderSpec(
        name="h_optimus_0",
        arch="vit_giant_patch14_reg4_dinov2",
        input_size=224,
        mean=HOPTIMUS_MEAN,
        std=HOPTIMUS_STD,
        feature_dim=1536,
        weights=WeightSource(
            filename="pytorch_model.bin",
            hf_repo="bioptimus/H-optimus-0",
            format="torch",
            key_map="timm",
            licence="Apache-2.0",
            gated=True,
        ),
        timm_kwargs={"img_size": 224, "init_values": 1e-5, "dynamic_img_size": False},
        pooling="timm",
        mpp=0.5,
        family="pathology",
        citation=(
            "Saillard C., Jenatton R., Llinares-López F., Mariet Z., Cahané D., Durand E., Vert J.-P. "
            "H-optimus-0 (software, Bioptimus, 2024). "
            "github.com/bioptimus/releases/tree/main/models/h-optimus/v0"
        ),
        description="H-optimus-0 ViT-g/14-reg4 (Bioptimus), 1536 features; Apache-2.0",
    )


@register_encoder
def phikon_v2() -> EncoderSpec:
    """Phikon-v2 (Owkin): DINOv2 ViT-L/16 in HF ``transformers`` format, 1024 features.

    Sources: huggingface.co/owkin/phikon-v2 model card (``AutoModel``, features =
    ``last_hidden_state[:, 0, :]``, the class token after the final LayerNorm; file
    ``model.safetensors``; Owkin non-commercial licence; not gated), the Phikon-v2 paper
    (ViT-L/16, no registers, 224 px tiles at 20x) and transformers' ``modeling_dinov2.py`` for
    the key names. Loaded into timm ``vit_large_patch16_224`` (qkv bias, GELU MLP ratio 4,
    LayerNorm eps 1e-6, LayerScale) by :func:`phikon_v2_to_timm`. UNCONFIRMED: the
    ``image_size`` in the repo's config.json; position embeddings of another grid are resampled.
    """
    return EncoderSpec(
        name="phikon_v2",
        arch="vit_large_patch16_224",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_dim=1024,
        weights=WeightSource(
            filename="model.safetensors",
            hf_repo="owkin/phikon-v2",
            format="safetensors",
            key_map=f"convert:{_THIS}:phikon_v2_to_timm",
            licence="Owkin non-commercial licence (LICENSE.pdf on the model card)",
            gated=False,
        ),
        timm_kwargs={"img_size": 224, "patch_size": 16, "init_values": 1e-5},
        pooling="timm",
        mpp=0.5,
        family="pathology",
        citation=(
            "Filiot A., Jacob P., Mac Kain A., Saillard C. Phikon-v2, a large and public feature "
            "extractor for biomarker prediction. arXiv:2409.09173 (2024)."
        ),
        description="Phikon-v2 ViT-L/16 (Owkin), 1024 features; non-commercial",
    )


@register_encoder
def conch() -> EncoderSpec:
    """CONCH (Mahmood Lab): vision tower of the CoCa model, 448 px, 512 features.

    Features are CONCH's ``encode_image(x, proj_contrast=False, normalize=False)``: the
    contrastive attentional pooler over all trunk tokens, then LayerNorm, before the projection
    into the joint text space; the README recommends exactly these for linear probes and MIL
    (TRIDENT's ``conch_v1`` uses the same); the trunk's own class token is not an output any
    CONCH objective trains directly.

    Sources: github.com/mahmoodlab/CONCH (``model_configs/conch_ViT-B-16.json``: image_size 448,
    patch 16, embed_dim 512, attn_pooler_heads 8, n_queries_contrast 1; ``coca_model.py``:
    trunk ``VisionTransformer(768, depth 12, heads 12, mlp 4, img 448, patch 16,
    dynamic_img_size=True)``; ``vision_tower.py`` ``forward_no_head``; README: ``pytorch_model.bin``,
    CC-BY-NC-ND 4.0, gated) and OpenAI CLIP mean/std (open_clip's constants). UNCONFIRMED: a
    fixed training scale (image-caption pairs of mixed sources); 0.5 µm/px as in HEST-Benchmark.
    """
    return EncoderSpec(
        name="conch",
        arch=f"{_THIS}:conch_vision_tower",
        input_size=448,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        feature_dim=512,
        weights=WeightSource(
            filename="pytorch_model.bin",
            hf_repo="MahmoodLab/CONCH",
            format="torch",
            key_map=f"convert:{_THIS}:conch_to_tower",
            licence=_MAHMOOD_LICENCE,
            gated=True,
        ),
        timm_kwargs={"img_size": 448},
        pooling="timm",
        mpp=0.5,
        precision="fp32",
        family="pathology",
        citation=(
            "Lu M.Y., Chen B., Williamson D.F.K. et al. A visual-language foundation model for "
            "computational pathology. Nature Medicine 30, 863-874 (2024). "
            "doi:10.1038/s41591-024-02856-4"
        ),
        description="CONCH ViT-B/16 vision tower (Mahmood Lab), 512 features; gated, non-commercial",
    )


@register_encoder
def gigapath() -> EncoderSpec:
    """Prov-GigaPath tile encoder (Providence/Microsoft): ViT-g/16 DINOv2, 1536 features.

    Sources: github.com/prov-gigapath/prov-gigapath README (``timm.create_model(
    "hf_hub:prov-gigapath/prov-gigapath", pretrained=True)``; transform Resize(256, bicubic),
    CenterCrop(224), ImageNet mean/std; gated) and TRIDENT's local loader, which mirrors the hub
    config: ``vit_giant_patch14_dinov2`` (SwiGLUPacked, SiLU, LayerScale 1e-5) with
    ``img_size=224, in_chans=3, patch_size=16, embed_dim=1536, depth=40, num_heads=24,
    mlp_ratio=5.33334``, ``pytorch_model.bin`` strict. Licence Apache-2.0 per the Prov-GigaPath
    model family table (research use only). UNCONFIRMED from sources read here: the tile scale
    (0.5 µm/px, 20x, assumed as in Xu et al. 2024 and TRIDENT). Note: stimage
    resizes the whole tile to 224 instead of the reference 256 -> centre-crop 224.
    """
    return EncoderSpec(
        name="gigapath",
        arch="vit_giant_patch14_dinov2",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_dim=1536,
        weights=WeightSource(
            filename="pytorch_model.bin",
            hf_repo="prov-gigapath/prov-gigapath",
            format="torch",
            key_map="timm",
            licence="Apache-2.0 (research use only, per the model card's conditions)",
            gated=True,
        ),
        timm_kwargs={
            "img_size": 224,
            "in_chans": 3,
            "patch_size": 16,
            "embed_dim": 1536,
            "depth": 40,
            "num_heads": 24,
            "mlp_ratio": 5.33334,
        },
        pooling="timm",
        mpp=0.5,
        family="pathology",
        citation=(
            "Xu H., Usuyama N., Bagga J. et al. A whole-slide foundation model for digital "
            "pathology from real-world data. Nature 630, 181-188 (2024). "
            "doi:10.1038/s41586-024-07441-w"
        ),
        description="Prov-GigaPath tile encoder ViT-g/16, 1536 features; gated",
    )


@register_encoder
def ctranspath() -> EncoderSpec:
    """CTransPath: Swin-T with a convolutional stem, 224 px, 768 features (average pool).

    Sources: github.com/Xiyue-Wang/TransPath (``ctran.py``: ``create_model(
    "swin_tiny_patch4_window7_224", embed_layer=ConvStem)``, ``model.head = nn.Identity()``,
    ``torch.load("ctranspath.pth")["model"]`` strict; ImageNet mean/std) as copied into TRIDENT
    and STAMP; the file's SHA-256 as checked by STAMP (Kather lab). The weights are on Google
    Drive (link in the TransPath README), not on Hugging Face. Licence GPL-3.0 (the TransPath
    repository's; UNCONFIRMED that it covers the weights). UNCONFIRMED: the pretraining scale;
    0.5 µm/px as in HEST-Benchmark. CHIEF's ``CHIEF_CTransPath.pth`` has the same layout but other
    weights (pass it with ``--encoder-weights``; it fails the checksum unless verification is off).
    """
    return EncoderSpec(
        name="ctranspath",
        arch="swin_tiny_patch4_window7_224",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_dim=768,
        weights=WeightSource(
            filename="ctranspath.pth",
            url="https://github.com/Xiyue-Wang/TransPath (the README links the ctranspath.pth download)",
            hf_repo=None,
            sha256="7c998680060c8743551a412583fac689db43cec07053b72dfec6dcd810113539",
            format="torch",
            key_map=f"convert:{_THIS}:ctranspath_to_timm",
            licence="GPL-3.0 (TransPath repository)",
            gated=False,
        ),
        timm_kwargs={"embed_layer": conv_stem},
        pooling="timm",
        mpp=0.5,
        precision="fp32",
        family="pathology",
        citation=(
            "Wang X., Yang S., Zhang J. et al. Transformer-based unsupervised contrastive learning "
            "for histopathological image classification. Medical Image Analysis 81, 102559 (2022). "
            "doi:10.1016/j.media.2022.102559"
        ),
        description=(
            "CTransPath Swin-T + ConvStem, 768 features; ctranspath.pth from the TransPath README "
            "(Google Drive)"
        ),
    )
