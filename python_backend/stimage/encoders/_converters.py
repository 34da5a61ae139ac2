"""Checkpoint converters: a publisher's state dict -> the names of the model stimage builds.

Each has the signature ``(state dict, model) -> state dict`` and is named in a spec's
``key_map`` as ``convert:<module>:<function>``:

* ``phikon_v2``: a Hugging Face ``transformers`` DINOv2 file; separate q/k/v are fused into
  timm's ``qkv`` (:func:`phikon_v2_to_timm`).
* ``conch``: the whole CoCa model; only the vision tower is kept (:func:`conch_to_tower`).
* ``ctranspath``: a Swin-T saved by timm 0.5.4 (downsampling at the end of a stage); timm's own
  Swin converter renames it (:func:`ctranspath_to_timm`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stimage.errors import StimageError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["conch_to_tower", "ctranspath_to_timm", "phikon_v2_to_timm"]


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
    trunk = model.trunk
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
