"""Encoders' public names, the private paths others import, and its place on the first floor."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest

import stimage.encoders as enc

ROOM = Path(enc.__file__).parent
#: Rooms the encoders may import (the ground floor); ``stimage._doctor`` imports encoders.
ALLOWED = {"errors", "constants", "encoders"}


@pytest.mark.parametrize("name", enc.__all__)
def test_public_names_resolve(name: str) -> None:
    assert getattr(enc, name) is not None


def test_private_paths_still_import() -> None:
    from stimage._doctor import stimage_home
    from stimage.encoders._encoder import pick_device, resolve_precision
    from stimage.encoders._foundation import (
        conch_to_tower,
        conch_vision_tower,
        conv_stem,
        ctranspath_to_timm,
        phikon_v2_to_timm,
        swiglu_packed,
    )
    from stimage.encoders._weights import MissingWeightsError, sha256_of

    assert pick_device is enc.pick_device and MissingWeightsError is enc.MissingWeightsError
    assert stimage_home().name and callable(resolve_precision) and callable(sha256_of)
    for f in (conch_to_tower, conch_vision_tower, conv_stem, ctranspath_to_timm):
        assert callable(f)
    assert callable(phikon_v2_to_timm) and callable(swiglu_packed)


@pytest.mark.parametrize("path", sorted(ROOM.glob("*.py")), ids=lambda p: p.name)
def test_encoders_import_only_the_ground_floor(path: Path) -> None:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
    rooms = {m.split(".")[1] for m in mods if m.startswith("stimage.")}
    assert rooms <= ALLOWED, f"{path.name} imports stimage rooms {sorted(rooms - ALLOWED)}"


def test_pooled_stages_extend_the_head_features() -> None:
    """efficientnet_lite0_stages: the same head features, then the pooled stages 1-4."""
    import numpy as np

    from stimage.encoders import create_encoder, get_encoder_spec

    spec = get_encoder_spec("efficientnet_lite0_stages")
    assert spec.feature_dim == 1776 and spec.to_dict()["stages"] == [1, 2, 3, 4]
    try:
        stages = create_encoder("efficientnet_lite0_stages", device="cpu")
        head = create_encoder("efficientnet_lite0", device="cpu")
    except Exception as e:  # noqa: BLE001 - weights not installed here
        import pytest

        pytest.skip(f"EfficientNet-Lite0 weights not installed ({e})")
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    f, f0 = stages.encode(tiles), head.encode(tiles)
    assert f.shape == (2, 1776)
    np.testing.assert_allclose(f[:, :1280], f0, rtol=1e-3, atol=1e-3)
    assert np.abs(f[:, 1280:]).sum() > 0


def test_any_timm_encoder_can_expose_pooled_stages() -> None:
    """with_stages: Lite2's head features, then its pooled stages (declared dims checked)."""
    import numpy as np

    from stimage.encoders import get_encoder_spec
    from stimage.encoders._builtin import with_stages

    spec = get_encoder_spec("efficientnet_lite2_stages")
    assert spec.feature_dim == 1280 + 24 + 48 + 120 + 352 and spec.input_size == 260
    custom = with_stages(get_encoder_spec("efficientnet_lite0"), (24, 40), "lite0_two_stages")
    assert custom.feature_dim == 1344 and custom.stages == (1, 2)
    enc, head = _encoders_or_skip("efficientnet_lite2_stages", "efficientnet_lite2")
    tiles = np.random.default_rng(1).integers(0, 256, (2, 260, 260, 3), dtype=np.uint8)
    f = enc.encode(tiles)
    assert f.shape == (2, spec.feature_dim)
    np.testing.assert_allclose(f[:, :1280], head.encode(tiles), rtol=1e-3, atol=1e-3)


def test_test_time_augmentation_averages_the_eight_views() -> None:
    """tta=8: the mean of the features of the tile's 8 rotations and mirror images."""
    import numpy as np

    from stimage.encoders import EncoderSpec, get_encoder_spec
    from stimage.errors import ConfigError

    spec = get_encoder_spec("efficientnet_lite0_stages_tta8")
    assert spec.tta == 8 and spec.to_dict()["tta"] == 8
    assert "tta" not in get_encoder_spec("efficientnet_lite0_stages").to_dict()
    with pytest.raises(ConfigError, match="tta"):
        dataclasses.replace(spec, tta=3)
    assert isinstance(spec, EncoderSpec)
    tta, one = _encoders_or_skip("efficientnet_lite0_stages_tta8", "efficientnet_lite0_stages")
    tile = np.random.default_rng(2).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    views = [np.rot90(tile, k, axes=(1, 2)) for k in range(4)]
    views += [v[:, :, ::-1] for v in views]
    expected = np.mean([one.encode(np.ascontiguousarray(v), precision="fp32") for v in views], 0)
    got = tta.encode(tile, precision="fp32")
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
    # Averaged over the whole group, a rotated tile gives the same features.
    turned = np.ascontiguousarray(np.rot90(tile, 1, axes=(1, 2)))
    np.testing.assert_allclose(tta.encode(turned, precision="fp32"), got, rtol=1e-3, atol=1e-3)


def _encoders_or_skip(*names: str) -> list[Any]:
    """The named encoders on the CPU, or a skip when their weights are not installed here."""
    from stimage.encoders import create_encoder

    try:
        return [create_encoder(n, device="cpu") for n in names]
    except Exception as e:  # noqa: BLE001 - weights not installed here
        pytest.skip(f"weights of {names} not installed ({e})")
