"""Training augmentation: flips, 90° rotations, mild colour jitter and blur.

Each tile is augmented afresh every epoch (the published code cached one augmented copy per
tile, freezing it; we do not). Results are reproducible: the random state of a tile is
derived from ``(seed, epoch, index)``, so the same call gives the same tile in any process
and any order, which keeps data-loader workers deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stimage.errors import ConfigError

__all__ = ["Augmenter"]


@dataclass(frozen=True)
class Augmenter:
    """Geometric and colour augmentation of RGB uint8 tiles.

    Attributes:
        flips: Random horizontal and vertical flips.
        rot90: Random rotation by a multiple of 90°.
        hue: Maximum hue shift, as a fraction of the colour circle.
        saturation: Maximum relative saturation change.
        brightness: Maximum relative brightness change.
        contrast: Maximum relative contrast change.
        blur_prob: Probability of a Gaussian blur.
        blur_sigma: Range of the blur's sigma in output pixels.
        seed: Base seed.

    Example:
        >>> aug = Augmenter(seed=0)
        >>> tile = np.zeros((8, 8, 3), np.uint8)
        >>> np.array_equal(aug(tile, index=3, epoch=1), aug(tile, index=3, epoch=1))
        True
    """

    flips: bool = True
    rot90: bool = True
    hue: float = 0.02
    saturation: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hue", "saturation", "brightness", "contrast"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ConfigError(f"augmentation {name} must be in [0, 1), got {v}")
        if not 0 <= self.blur_prob <= 1:
            raise ConfigError(f"blur_prob must be in [0, 1], got {self.blur_prob}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ConfigError(
                f"blur_sigma must be an increasing positive range, got {self.blur_sigma}"
            )

    def rng(self, index: int, epoch: int = 0) -> np.random.Generator:
        """The random generator of one tile in one epoch."""
        return np.random.default_rng([self.seed, epoch, index])

    def __call__(self, tile: np.ndarray, index: int, epoch: int = 0) -> np.ndarray:
        """Augment one ``(h, w, 3)`` uint8 tile."""
        import cv2

        if tile.ndim != 3 or tile.shape[2] != 3 or tile.dtype != np.uint8:
            raise ValueError(f"expected an (h, w, 3) uint8 tile, got {tile.shape} {tile.dtype}")
        r = self.rng(index, epoch)
        out = tile
        if self.flips:
            if r.random() < 0.5:
                out = out[:, ::-1]
            if r.random() < 0.5:
                out = out[::-1]
        if self.rot90:
            out = np.rot90(out, int(r.integers(4)))
        out = np.ascontiguousarray(out)
        if self.hue or self.saturation:
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
            hsv[..., 0] = (hsv[..., 0] + r.uniform(-self.hue, self.hue) * 256.0) % 256.0
            hsv[..., 1] *= 1.0 + r.uniform(-self.saturation, self.saturation)
            out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)
        if self.brightness or self.contrast:
            f = out.astype(np.float32)
            mean = f.mean()
            f = (f - mean) * (1.0 + r.uniform(-self.contrast, self.contrast)) + mean
            f *= 1.0 + r.uniform(-self.brightness, self.brightness)
            out = np.clip(f + 0.5, 0, 255).astype(np.uint8)
        if self.blur_prob and r.random() < self.blur_prob:
            sigma = r.uniform(*self.blur_sigma)
            out = cv2.GaussianBlur(out, (0, 0), sigmaX=sigma)
        return out

    def batch(self, tiles: np.ndarray, indices: np.ndarray, epoch: int = 0) -> np.ndarray:
        """Augment an ``(n, h, w, 3)`` batch; ``indices`` identify the tiles."""
        return np.stack([self(t, int(i), epoch) for t, i in zip(tiles, indices, strict=True)])
