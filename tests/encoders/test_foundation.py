"""Pathology foundation encoders: complete specs, offline errors, the publishers' key layouts.

No network and no real weights: checkpoints are fabricated from randomly initialised reference
modules laid out as each publisher documents (timm 0.5.4 Swin for CTransPath, open_clip CoCa
for CONCH, transformers DINOv2 for Phikon-v2). The giant ViTs are built on the meta device.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import stimage.encoders._foundation as fm  # registers the pathology encoders
from stimage.encoders import (
    EncoderSpec,
    MissingWeightsError,
    create_encoder,
    get_encoder_spec,
    list_encoders,
)
from stimage.errors import StimageError

FOUNDATION = {
    "uni",
    "uni2_h",
    "virchow2",
    "h_optimus_0",
    "phikon_v2",
    "conch",
    "gigapath",
    "ctranspath",
}
PATHOLOGY = sorted(set(list_encoders("pathology")) | FOUNDATION)


@pytest.fixture
def offline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """STIMAGE_HOME and every cache stimage looks in point into tmp_path (no real weights seen)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STIMAGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "home"


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _build_meta(spec: EncoderSpec) -> nn.Module:
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0, **spec.timm_kwargs}
    if spec.pooling != "timm":
        kwargs["global_pool"] = ""
    with torch.device("meta"):
        return timm.create_model(spec.arch, **kwargs)


# --- specs ------------------------------------------------------------------------------------


def test_all_foundation_models_are_registered() -> None:
    assert set(list_encoders("pathology")) >= FOUNDATION


@pytest.mark.parametrize("name", PATHOLOGY)
def test_spec_is_complete(name: str) -> None:
    spec = get_encoder_spec(name)
    src = spec.weights
    assert spec.family == "pathology"
    assert src is not None and src.filename and src.licence
    assert src.format in ("torch", "safetensors")
    assert src.format == "safetensors" or not src.filename.endswith(".safetensors")
    assert src.hf_repo is None or re.fullmatch(r"[\w.-]+/[\w.-]+", src.hf_repo)
    assert src.hf_repo or "README" in spec.description or "http" in spec.description
    assert src.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", src.sha256)
    assert spec.mpp is not None and 0.1 <= spec.mpp <= 4.0
    assert re.search(r"\b(19|20)\d\d\b", spec.citation), "citation needs a year"
    assert spec.description and spec.input_size in (224, 448)
    if src.key_map.startswith("convert:"):
        assert callable(_resolve(src.key_map[len("convert:") :]))
    else:
        assert src.key_map in ("timm", "ordered") or src.key_map.startswith("strip:")
    if ":" in spec.arch:
        assert callable(_resolve(spec.arch))
    else:
        assert timm.is_model(spec.arch), f"timm {timm.__version__} has no {spec.arch}"
    assert spec.to_dict()["weights_file"] == src.filename


def test_importing_and_listing_does_not_import_torch() -> None:
    code = (
        "import sys, stimage.encoders._foundation; from stimage.encoders import get_encoder_spec; "
        f"[get_encoder_spec(n) for n in {sorted(FOUNDATION)!r}]; "
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'heavy import'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", sorted(FOUNDATION))
def test_missing_weights_say_what_to_get_and_where(name: str, offline_home: Path) -> None:
    spec = get_encoder_spec(name)
    assert spec.weights is not None
    with torch.device("meta"), pytest.raises(MissingWeightsError) as err:
        create_encoder(name, device="cpu")
    msg = str(err.value)
    assert spec.weights.filename in msg
    assert str(offline_home / "weights" / name / spec.weights.filename) in msg
    assert "--encoder-weights" in msg
    if spec.weights.hf_repo:
        assert f"huggingface.co/{spec.weights.hf_repo}" in msg
    if spec.weights.gated:
        assert "gated" in msg


# --- the giant ViTs, on the meta device ---------------------------------------------------------

# name: (embed_dim, prefix tokens (class + registers), pos_embed shape, fc1 rows, MLP type, params)
# Param counts: UNI ViT-L/16 303M; Virchow2 632M (paper); H-optimus-0 and GigaPath 1.1B (READMEs).
GIANTS = {
    "uni": (1024, 1, (1, 197, 1024), 4096, "Mlp", 303_350_784),
    "uni2_h": (1536, 9, (1, 256, 1536), 8192, "GluMlp", 681_394_176),
    "virchow2": (1280, 5, (1, 261, 1280), 6832, "GluMlp", 631_239_424),
    "h_optimus_0": (1536, 5, (1, 256, 1536), 8192, "GluMlp", 1_134_774_272),
    "gigapath": (1536, 1, (1, 197, 1536), 8192, "GluMlp", 1_134_953_984),
    "phikon_v2": (1024, 1, (1, 197, 1024), 4096, "Mlp", 303_350_784),
}


@pytest.mark.parametrize("name", sorted(GIANTS))
def test_giant_architecture(name: str) -> None:
    spec = get_encoder_spec(name)
    dim, prefix, pos, fc1, mlp, params = GIANTS[name]
    m: Any = _build_meta(spec)
    assert m.embed_dim == dim and m.num_prefix_tokens == prefix
    assert tuple(m.pos_embed.shape) == pos
    assert m.blocks[0].mlp.fc1.weight.shape[0] == fc1
    assert type(m.blocks[0].mlp).__name__ == mlp
    if mlp == "GluMlp":
        assert isinstance(m.blocks[0].mlp.act, nn.SiLU)
    assert m.blocks[0].ls1.gamma.shape == (dim,), "LayerScale (init_values) must be built"
    assert sum(p.numel() for p in m.parameters()) == params
    expected = 2 * dim if spec.pooling == "cls+mean" else dim
    assert spec.feature_dim == expected


def test_virchow2_pools_class_and_patch_tokens_without_registers() -> None:
    spec = get_encoder_spec("virchow2")
    m: Any = _build_meta(spec)
    assert spec.pooling == "cls+mean" and spec.feature_dim == 2 * m.embed_dim
    assert m.num_prefix_tokens == 1 + 4 and m.global_pool == ""


# --- Phikon-v2: transformers DINOv2 -> timm ViT -------------------------------------------------


def _hf_dinov2_state(
    dim: int, depth: int, patch: int, image: int, device: str = "cpu", seed: int = 0
) -> dict[str, torch.Tensor]:
    """Keys and shapes of transformers' ``Dinov2Model`` (``modeling_dinov2.py``), random values."""
    g = torch.Generator().manual_seed(seed)

    def t(*shape: int) -> torch.Tensor:
        if device == "meta":
            return torch.empty(shape, device="meta")
        return torch.randn(shape, generator=g) * 0.1

    n = (image // patch) ** 2
    sd = {
        "embeddings.cls_token": t(1, 1, dim),
        "embeddings.mask_token": t(1, dim),
        "embeddings.position_embeddings": t(1, n + 1, dim),
        "embeddings.patch_embeddings.projection.weight": t(dim, 3, patch, patch),
        "embeddings.patch_embeddings.projection.bias": t(dim),
        "layernorm.weight": t(dim) + (0 if device == "meta" else 1),
        "layernorm.bias": t(dim),
    }
    for i in range(depth):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            sd[f"{p}attention.attention.{name}.weight"] = t(dim, dim)
            sd[f"{p}attention.attention.{name}.bias"] = t(dim)
        sd[p + "attention.output.dense.weight"] = t(dim, dim)
        sd[p + "attention.output.dense.bias"] = t(dim)
        for norm in ("norm1", "norm2"):
            sd[f"{p}{norm}.weight"] = t(dim) + (0 if device == "meta" else 1)
            sd[f"{p}{norm}.bias"] = t(dim)
        sd[p + "layer_scale1.lambda1"] = t(dim)
        sd[p + "layer_scale2.lambda1"] = t(dim)
        sd[p + "mlp.fc1.weight"] = t(4 * dim, dim)
        sd[p + "mlp.fc1.bias"] = t(4 * dim)
        sd[p + "mlp.fc2.weight"] = t(dim, 4 * dim)
        sd[p + "mlp.fc2.bias"] = t(dim)
    return sd


def _hf_dinov2_cls(sd: dict[str, torch.Tensor], x: torch.Tensor, heads: int) -> torch.Tensor:
    """The class token of ``Dinov2Model(x).last_hidden_state``, written out from transformers."""
    w = sd["embeddings.patch_embeddings.projection.weight"]
    dim, patch = w.shape[0], w.shape[-1]
    h = F.conv2d(x, w, sd["embeddings.patch_embeddings.projection.bias"], stride=patch)
    gh, gw = h.shape[-2:]
    h = h.flatten(2).transpose(1, 2)
    h = torch.cat([sd["embeddings.cls_token"].expand(len(x), -1, -1), h], dim=1)
    pos = sd["embeddings.position_embeddings"]
    if pos.shape[1] - 1 != gh * gw:  # Dinov2Embeddings.interpolate_pos_encoding
        side = int((pos.shape[1] - 1) ** 0.5)
        grid = pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)
    h = h + pos
    depth = len([k for k in sd if k.endswith("layer_scale1.lambda1")])
    for i in range(depth):
        p = f"encoder.layer.{i}."
        y = F.layer_norm(h, (dim,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        q, k, v = (
            F.linear(
                y, sd[f"{p}attention.attention.{n}.weight"], sd[f"{p}attention.attention.{n}.bias"]
            )
            .view(len(x), -1, heads, dim // heads)
            .transpose(1, 2)
            for n in ("query", "key", "value")
        )
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(len(x), -1, dim)
        a = F.linear(
            a, sd[p + "attention.output.dense.weight"], sd[p + "attention.output.dense.bias"]
        )
        h = h + a * sd[p + "layer_scale1.lambda1"]
        y = F.layer_norm(h, (dim,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        y = F.linear(
            F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
            sd[p + "mlp.fc2.weight"],
            sd[p + "mlp.fc2.bias"],
        )
        h = h + y * sd[p + "layer_scale2.lambda1"]
    return F.layer_norm(h, (dim,), sd["layernorm.weight"], sd["layernorm.bias"], 1e-6)[:, 0]


@pytest.mark.parametrize("saved_for", [32, 64], ids=["same-grid", "resampled-grid"])
def test_phikon_v2_conversion_reproduces_the_transformers_forward(saved_for: int) -> None:
    sd = _hf_dinov2_state(dim=64, depth=2, patch=16, image=saved_for)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=32,
        patch_size=16,
        embed_dim=64,
        depth=2,
        num_heads=4,
        init_values=1e-5,
        num_classes=0,
    ).eval()
    model.load_state_dict(fm.phikon_v2_to_timm(sd, model), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), _hf_dinov2_cls(sd, x, heads=4), rtol=1e-4, atol=1e-4)


def test_phikon_v2_file_layout_fits_the_real_architecture() -> None:
    spec = get_encoder_spec("phikon_v2")
    model = _build_meta(spec)
    for image in (224, 518):  # config.json's image_size is not confirmed; both must load
        sd = _hf_dinov2_state(dim=1024, depth=24, patch=16, image=image, device="meta")
        model.load_state_dict(fm.phikon_v2_to_timm(sd, model), strict=True, assign=True)


def test_phikon_v2_rejects_other_files() -> None:
    with pytest.raises(StimageError, match="owkin/phikon-v2"):
        fm.phikon_v2_to_timm({"patch_embed.proj.weight": torch.zeros(1)}, nn.Identity())


# --- CTransPath: timm 0.5.4 Swin-T + ConvStem ----------------------------------------------------


def test_conv_stem_shapes_and_names() -> None:
    stem = fm.conv_stem(
        img_size=224, patch_size=4, embed_dim=96, norm_layer=nn.LayerNorm, output_fmt="NHWC"
    )
    assert stem(torch.zeros(1, 3, 224, 224)).shape == (1, 56, 56, 96)
    assert stem.grid_size == (56, 56)
    names = {k.rsplit(".", 1)[0] for k in stem.state_dict()}
    assert names == {"proj.0", "proj.1", "proj.3", "proj.4", "proj.6", "norm"}
    with pytest.raises(StimageError, match="patch_size 4"):
        fm.conv_stem(patch_size=16, embed_dim=96)


def _old_relative_position_index(window: int) -> torch.Tensor:
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def _ctranspath_checkpoint(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """``ctranspath.pth`` as TransPath saved it: ``{"model": ...}`` in timm 0.5.4's Swin layout.

    Differences from current timm (timm's swin ``checkpoint_filter_fn``; TRIDENT's list of
    attn_mask keys): the downsampling of stage N+1 is stored as ``layers.N.downsample``; every
    block has a ``relative_position_index`` buffer; shifted blocks of stages 0-2 an ``attn_mask``
    (stage 3 is one 7x7 window, unshifted); no head (``model.head = nn.Identity()``).
    """
    out: dict[str, torch.Tensor] = {}
    windows = {0: 64, 1: 16, 2: 4}
    for k, v in model.state_dict().items():
        k = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", k)
        out[k] = v.clone()
        if m := re.fullmatch(
            r"layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table", k
        ):
            stage, block = int(m[1]), int(m[2])
            out[f"layers.{stage}.blocks.{block}.attn.relative_position_index"] = (
                _old_relative_position_index(7)
            )
            if block % 2 and stage in windows:
                out[f"layers.{stage}.blocks.{block}.attn_mask"] = torch.zeros(
                    windows[stage], 49, 49
                )
    assert (
        "layers.0.downsample.reduction.weight" in out
        and "layers.3.downsample.norm.weight" not in out
    )
    return {"model": out}


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                noise = torch.randn(t.shape, generator=g) * 0.05
                t.copy_(noise.abs() + 0.5 if name.endswith("running_var") else t + noise)
    return model.eval()


@pytest.mark.slow
def test_ctranspath_loads_the_published_layout(tmp_path: Path, offline_home: Path) -> None:
    ref: Any = _randomise(
        timm.create_model(
            "swin_tiny_patch4_window7_224",
            pretrained=False,
            num_classes=0,
            embed_layer=fm.conv_stem,
        )
    )
    path = tmp_path / "ctranspath.pth"
    torch.save(_ctranspath_checkpoint(ref), path)
    enc = create_encoder("ctranspath", weights=path, device="cpu", verify=False)
    got = enc.model.state_dict()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(got[k], v, msg=k)
    tiles = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    feats = enc.encode(tiles, precision="fp32")
    assert feats.shape == (2, 768) and np.isfinite(feats).all()
    with torch.inference_mode():
        expected = ref(enc.preprocess(tiles)).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(StimageError, match="SHA-256"):  # not the published file
        create_encoder("ctranspath", weights=path, device="cpu")
    path.unlink()  # 110 MB


def test_ctranspath_rejects_other_files() -> None:
    with pytest.raises(StimageError, match="TransPath"):
        fm.ctranspath_to_timm({"blocks.0.attn.qkv.weight": torch.zeros(1)}, nn.Identity())


# --- CONCH: open_clip CoCa -> vision tower ---------------------------------------------------------


class _ConchPooler(nn.Module):
    """CONCH's ``AttentionalPooler`` (open_clip_custom/transformer.py), as the reference."""

    def __init__(self, d_model: int, context_dim: int, n_head: int, n_queries: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_queries, d_model))
        self.attn = nn.MultiheadAttention(d_model, n_head, kdim=context_dim, vdim=context_dim)
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_k = nn.LayerNorm(context_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_k(x).permute(1, 0, 2)
        q = self.ln_q(self.query).unsqueeze(1).repeat(1, x.shape[1], 1)
        return self.attn(q, x, x, need_weights=False)[0].permute(1, 0, 2)


class _ConchVisual(nn.Module):
    """CONCH's ``VisualModel`` for conch_ViT-B-16.json (vision_tower.py, coca_model.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk: Any = timm.models.vision_transformer.VisionTransformer(
            embed_dim=768,
            depth=12,
            num_heads=12,
            mlp_ratio=4,
            img_size=448,
            patch_size=16,
            num_classes=0,
            dynamic_img_size=True,
        )
        self.attn_pool_contrast = _ConchPooler(512, 768, 8, 1)
        self.ln_contrast = nn.LayerNorm(512)
        self.proj_contrast = nn.Parameter(torch.randn(512, 512) * 768**-0.5)
        self.attn_pool_caption = _ConchPooler(768, 768, 8, 256)
        self.ln_caption = nn.LayerNorm(768)

    def forward_no_head(self, x: torch.Tensor) -> torch.Tensor:
        """``encode_image(x, proj_contrast=False, normalize=False)``."""
        return self.ln_contrast(self.attn_pool_contrast(self.trunk.forward_features(x))[:, 0])


@pytest.mark.slow
def test_conch_loads_the_published_layout(tmp_path: Path, offline_home: Path) -> None:
    visual: Any = _randomise(_ConchVisual())
    sd = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    sd |= {  # a few of the text tower's tensors: the converter must drop them
        "text.cls_emb": torch.randn(768),
        "text.positional_embedding": torch.randn(128, 768),
        "text.text_projection": torch.randn(768, 512),
        "logit_scale": torch.tensor(4.6),
    }
    path = tmp_path / "pytorch_model.bin"
    torch.save(sd, path)
    enc = create_encoder("conch", weights=path, device="cpu")
    path.unlink()  # 350 MB
    tiles = np.random.default_rng(1).integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    feats = enc.encode(tiles, precision="fp32")
    assert feats.shape == (1, 512) and np.isfinite(feats).all()
    with torch.inference_mode():
        expected = visual.forward_no_head(enc.preprocess(tiles)).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-4)


def test_conch_rejects_other_files() -> None:
    with pytest.raises(StimageError, match="MahmoodLab/CONCH"):
        fm.conch_to_tower({"trunk.pos_embed": torch.zeros(1)}, nn.Identity())
