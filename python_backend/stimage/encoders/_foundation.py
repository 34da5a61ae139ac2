"""Pathology foundation models: timm architectures with the publishers' checkpoints, offline.

Each encoder is registered with the architecture, preprocessing and pooling its publisher
documents, and the checkpoint file name as distributed. The weights themselves never come from
the network at run time: get the file once (most are gated on Hugging Face, accept the terms
first) and put it where :func:`stimage.encoders.find_weights` looks. See ``docs/encoders.md``.

Most checkpoints load into timm as they are; three need converting (:mod:`._converters`:
:func:`phikon_v2_to_timm`, :func:`conch_to_tower`, :func:`ctranspath_to_timm`). Two encoders
need modules timm lacks, made by the builders of :mod:`._builders` (:func:`conv_stem`,
:func:`conch_vision_tower`). Specs name converters and builders by this module's path
(``convert:stimage.encoders._foundation:<function>``), which model bundles record, so they stay
importable from here. torch and timm are imported only when a model is built, so looking specs
up stays instant.

Sources are cited beside each spec; anything not confirmed from them is marked UNCONFIRMED.
"""

from __future__ import annotations

from typing import Any

from stimage.encoders._builders import conch_vision_tower, conv_stem, swiglu_packed
from stimage.encoders._builtin import IMAGENET_MEAN, IMAGENET_STD
from stimage.encoders._converters import conch_to_tower, ctranspath_to_timm, phikon_v2_to_timm
from stimage.encoders._registry import EncoderSpec, WeightSource, register_encoder

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


def _convert(function: str) -> str:
    """The ``key_map`` naming one of this module's checkpoint converters."""
    return f"convert:{_THIS}:{function}"


def _hf_weights(
    hf_repo: str,
    licence: str,
    *,
    filename: str = "pytorch_model.bin",
    key_map: str = "timm",
    gated: bool = True,
) -> WeightSource:
    """A checkpoint distributed on Hugging Face (a torch file unless it is ``.safetensors``)."""
    fmt = "safetensors" if filename.endswith(".safetensors") else "torch"
    return WeightSource(
        filename=filename,
        hf_repo=hf_repo,
        format=fmt,
        key_map=key_map,
        licence=licence,
        gated=gated,
    )


def _pathology(
    name: str,
    arch: str,
    weights: WeightSource,
    timm_kwargs: dict[str, Any],
    *,
    feature_dim: int,
    citation: str,
    description: str,
    **overrides: Any,
) -> EncoderSpec:
    """A pathology encoder trained at 0.5 µm/px (20x): 224 px, ImageNet mean/std unless overridden."""
    fields: dict[str, Any] = {
        "input_size": 224,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "pooling": "timm",
        **overrides,
    }
    return EncoderSpec(
        name=name,
        arch=arch,
        feature_dim=feature_dim,
        weights=weights,
        timm_kwargs=timm_kwargs,
        mpp=0.5,
        family="pathology",
        citation=citation,
        description=description,
        **fields,
    )


@register_encoder
def uni() -> EncoderSpec:
    """UNI (Mahmood Lab): ViT-L/16 DINOv2 on Mass-100K, 224 px, 1024 features (class token).

    Sources: github.com/mahmoodlab/UNI README (``timm.create_model("vit_large_patch16_224",
    img_size=224, patch_size=16, init_values=1e-5, num_classes=0, dynamic_img_size=True)``, then
    ``load_state_dict(torch.load("pytorch_model.bin"), strict=True)``; ImageNet mean/std;
    CC-BY-NC-ND 4.0, gated). 0.5 µm/px (20x), the scale UNI's users and TRIDENT tile at;
    UNCONFIRMED from the paper's text here.
    """
    kwargs = {"img_size": 224, "patch_size": 16, "init_values": 1e-5, "dynamic_img_size": True}
    return _pathology(
        "uni",
        "vit_large_patch16_224",
        _hf_weights("MahmoodLab/UNI", _MAHMOOD_LICENCE),
        kwargs,
        feature_dim=1024,
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
    kwargs = {
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
    }
    return _pathology(
        "uni2_h",
        "vit_giant_patch14_224",
        _hf_weights("MahmoodLab/UNI2-h", _MAHMOOD_LICENCE),
        kwargs,
        feature_dim=1536,
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
    weights = _hf_weights(
        "paige-ai/Virchow2", "CC-BY-NC-ND-4.0 (non-commercial; Paige terms of use)"
    )
    kwargs = {
        "img_size": 224,
        "init_values": 1e-5,
        "reg_tokens": 4,
        "mlp_ratio": 5.3375,
        "mlp_layer": swiglu_packed,
        "act_layer": "silu",
        "dynamic_img_size": True,
    }
    return _pathology(
        "virchow2",
        "vit_huge_patch14_224",
        weights,
        kwargs,
        feature_dim=2560,
        pooling="cls+mean",
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
    kwargs = {"img_size": 224, "init_values": 1e-5, "dynamic_img_size": False}
    return _pathology(
        "h_optimus_0",
        "vit_giant_patch14_reg4_dinov2",
        _hf_weights("bioptimus/H-optimus-0", "Apache-2.0"),
        kwargs,
        feature_dim=1536,
        mean=HOPTIMUS_MEAN,
        std=HOPTIMUS_STD,
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
    weights = _hf_weights(
        "owkin/phikon-v2",
        "Owkin non-commercial licence (LICENSE.pdf on the model card)",
        filename="model.safetensors",
        key_map=_convert("phikon_v2_to_timm"),
        gated=False,
    )
    kwargs = {"img_size": 224, "patch_size": 16, "init_values": 1e-5}
    return _pathology(
        "phikon_v2",
        "vit_large_patch16_224",
        weights,
        kwargs,
        feature_dim=1024,
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
    weights = _hf_weights("MahmoodLab/CONCH", _MAHMOOD_LICENCE, key_map=_convert("conch_to_tower"))
    return _pathology(
        "conch",
        f"{_THIS}:conch_vision_tower",
        weights,
        {"img_size": 448},
        feature_dim=512,
        input_size=448,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        precision="fp32",
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
    weights = _hf_weights(
        "prov-gigapath/prov-gigapath",
        "Apache-2.0 (research use only, per the model card's conditions)",
    )
    kwargs = {
        "img_size": 224,
        "in_chans": 3,
        "patch_size": 16,
        "embed_dim": 1536,
        "depth": 40,
        "num_heads": 24,
        "mlp_ratio": 5.33334,
    }
    return _pathology(
        "gigapath",
        "vit_giant_patch14_dinov2",
        weights,
        kwargs,
        feature_dim=1536,
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
    weights = WeightSource(
        filename="ctranspath.pth",
        url="https://github.com/Xiyue-Wang/TransPath (the README links the ctranspath.pth download)",
        hf_repo=None,
        sha256="7c998680060c8743551a412583fac689db43cec07053b72dfec6dcd810113539",
        format="torch",
        key_map=_convert("ctranspath_to_timm"),
        licence="GPL-3.0 (TransPath repository)",
        gated=False,
    )
    return _pathology(
        "ctranspath",
        "swin_tiny_patch4_window7_224",
        weights,
        {"embed_layer": conv_stem},
        feature_dim=768,
        precision="fp32",
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
