"""Synthetic data for tests: H&E-like images, pyramidal TIFFs, legacy ST folders."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

#: Unit stain vectors in optical density (rows: haematoxylin, eosin), as in Ruifrok & Johnston.
STAINS = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])
STAINS = STAINS / np.linalg.norm(STAINS, axis=1, keepdims=True)


def her2st_root() -> Path | None:
    """The real HER2ST folder, from STIMAGE_HER2ST or ../shared/data/her2st, if present."""
    env = os.environ.get("STIMAGE_HER2ST")
    p = Path(env) if env else REPO.parent / "shared" / "data" / "her2st"
    return p if (p / "ST-cnts").is_dir() else None


def render_he(
    height: int,
    width: int,
    tissue: np.ndarray | None = None,
    *,
    seed: int = 0,
    background: tuple[int, int, int] = (240, 236, 240),
    nuclei_per_mpx: float = 900.0,
    stains: np.ndarray = STAINS,
    density: np.ndarray | None = None,
) -> np.ndarray:
    """An H&E-like RGB image: eosin-stained tissue with haematoxylin nuclei on tinted glass.

    Args:
        height: Image height.
        width: Image width.
        tissue: Bool mask of tissue (default: an ellipse filling the middle).
        seed: Random seed.
        background: Glass colour.
        nuclei_per_mpx: Nuclei per million tissue pixels.
        stains: 2 x 3 stain matrix (OD rows H, E).
        density: Relative nuclei density per pixel (``(height, width)``, mean about 1), so
            that regions differ the way tumour and stroma do.
    """
    import cv2

    rng = np.random.default_rng(seed)
    if tissue is None:
        yy, xx = np.mgrid[:height, :width]
        tissue = ((xx - width / 2) / (0.38 * width)) ** 2 + (
            (yy - height / 2) / (0.36 * height)
        ) ** 2 < 1
    eosin = np.zeros((height, width), np.float32)
    noise = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 3)
    eosin[tissue] = 0.35 + 0.5 * noise[tissue]
    # Nuclei: random seeds on tissue, grown into discs of varying intensity by grey dilation.
    seeds = np.zeros((height, width), np.float32)
    ys, xs = np.nonzero(tissue)
    n = int(len(ys) / 1e6 * nuclei_per_mpx * 4) + 1
    weights = None
    if density is not None:
        weights = np.clip(density[ys, xs].astype(np.float64), 0, None)
        weights = weights / weights.sum()
    pick = rng.choice(len(ys), size=min(n, len(ys)), replace=False, p=weights)
    seeds[ys[pick], xs[pick]] = rng.uniform(0.8, 1.3, len(pick))
    haem = cv2.dilate(seeds, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 7)))
    haem = cv2.GaussianBlur(haem, (0, 0), 0.8)
    od = haem[..., None] * stains[0] + eosin[..., None] * stains[1]
    img = np.asarray(background, np.float32) * np.exp(-od)
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_pyramid_tiff(
    path: Path, image: np.ndarray, mpp: float, *, ome: bool = False, levels: int = 3
) -> Path:
    """Write a tiled pyramidal TIFF at ``mpp`` µm/px.

    Plain TIFF: levels as separate IFDs with resolution tags (what OpenSlide reads).
    OME-TIFF: levels as SubIFDs with PhysicalSizeX/Y (what tifffile reads).
    """
    import cv2
    import tifffile

    pyramid = [image]
    for _ in range(levels - 1):
        im = pyramid[-1]
        pyramid.append(
            cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA)
        )
    opts = {"tile": (128, 128), "photometric": "rgb", "compression": "zlib"}
    if ome:
        meta = {
            "PhysicalSizeX": mpp,
            "PhysicalSizeY": mpp,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
        }
        with tifffile.TiffWriter(path, ome=True) as tw:
            tw.write(pyramid[0], subifds=levels - 1, metadata=meta, **opts)
            for im in pyramid[1:]:
                tw.write(im, subfiletype=1, **opts)
    else:
        res = (1e4 / mpp, 1e4 / mpp)
        with tifffile.TiffWriter(path) as tw:
            for i, im in enumerate(pyramid):
                tw.write(
                    im,
                    resolution=res,
                    resolutionunit="CENTIMETER",
                    subfiletype=0 if i == 0 else 1,
                    **opts,
                )
    return path


def make_legacy_st(
    root: Path,
    section: str = "S1",
    patient: str = "P1",
    *,
    mpp: float = 2.0,
    grid: tuple[int, int] = (8, 10),
    n_genes: int = 40,
    seed: int = 0,
    jitter_px: float = 3.0,
) -> dict[str, object]:
    """Write one section in the HER2ST layout under ``root``; returns what was written.

    Spots lie on a 200 µm grid (``200 / mpp`` px apart) over a synthetic tissue image that
    covers them; counts are negative-binomial with gene-specific means that depend on the
    local nucleus density, so they relate to the image.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    pitch = 200.0 / mpp
    rows, cols = grid
    margin = 1.2 * pitch
    w, h = int(2 * margin + (cols - 1) * pitch), int(2 * margin + (rows - 1) * pitch)
    yy, xx = np.mgrid[:h, :w]
    tissue = (
        (xx > margin * 0.55)
        & (xx < w - margin * 0.55)
        & (yy > margin * 0.55)
        & (yy < h - margin * 0.55)
    )
    # Smooth nuclei density (tumour-like dense and stroma-like sparse regions); genes follow it.
    field = rng.normal(size=(max(2, h // 150), max(2, w // 150)))
    import cv2

    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
    density = np.exp(1.2 * (field - field.mean()) / (field.std() + 1e-9))
    img = render_he(h, w, tissue, seed=seed, density=density)
    xs, ys = np.meshgrid(np.arange(cols) + 3, np.arange(rows) + 5)
    xs, ys = xs.ravel(), ys.ravel()
    px = margin + (xs - 3) * pitch + rng.normal(0, jitter_px, len(xs))
    py = margin + (ys - 5) * pitch + rng.normal(0, jitter_px, len(ys))
    selected = np.ones(len(xs), int)
    selected[0] = 0  # one spot off tissue, as in real spot files
    spots = pd.DataFrame(
        {
            "x": xs,
            "y": ys,
            "new_x": xs + 0.01,
            "new_y": ys - 0.01,
            "pixel_x": px.round(2),
            "pixel_y": py.round(2),
            "selected": selected,
        }
    )
    ids = [f"{x}x{y}" for x, y in zip(xs, ys, strict=True)]
    genes = [f"GENE{i}" for i in range(n_genes)]
    # Log density under each spot drives half the genes up and half down (the rest: noise).
    d = np.log(
        [
            density[int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))]
            for x, y in zip(px, py, strict=True)
        ]
    )
    effect = np.zeros(n_genes)
    effect[: n_genes // 3] = 0.8
    effect[n_genes // 3 : 2 * n_genes // 3] = -0.8
    base = rng.gamma(2.0, 2.0, n_genes)
    lib = rng.uniform(0.5, 1.5, len(ids))
    mu = lib[:, None] * base[None, :] * np.exp(d[:, None] * effect[None, :])
    counts = rng.negative_binomial(5, 5 / (5 + mu))
    in_tissue_ids = [i for i, s in zip(ids, selected, strict=True) if s == 1]
    cdf = pd.DataFrame(counts, index=ids, columns=genes).loc[in_tissue_ids]
    (root / "ST-cnts").mkdir(parents=True, exist_ok=True)
    (root / "ST-spotfiles").mkdir(parents=True, exist_ok=True)
    (root / "ST-imgs" / patient / section).mkdir(parents=True, exist_ok=True)
    (root / "ST-deconv-major").mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "ST-cnts" / f"{section}.tsv.gz", "wt") as fh:
        cdf.to_csv(fh, sep="\t")
    spots.to_csv(root / "ST-spotfiles" / f"{section}_selection.tsv", sep="\t", index=False)
    image_path = root / "ST-imgs" / patient / section / f"{section}_HE.jpg"
    Image.fromarray(img).save(image_path, quality=92)
    props = rng.dirichlet(np.ones(4), len(in_tissue_ids))
    pd.DataFrame(
        props, index=in_tissue_ids, columns=["Epithelial", "CAFs", "T-cells", "Endothelial"]
    ).to_csv(root / "ST-deconv-major" / f"{section}-proportion.tsv", sep="\t")
    return {
        "counts": cdf,
        "spots": spots,
        "image": image_path,
        "mpp": mpp,
        "pitch_px": pitch,
        "shape": (h, w),
    }


def tiny_slide_model(root: Path) -> Path:
    """A tiny model bundle for slide-level tests, trained and saved under ``root``.

    Two synthetic legacy-ST sections (15 genes), 32 px Reinhard tiles, the random test CNN, two
    NB members and one penalty, no spatial context (the context paths have their own tests in
    tests/models/test_context.py). About 15 s on a busy CPU: build it once per module.
    """
    from stimage.data import load_dataset
    from stimage.models import NBEnsembleConfig, NBGLMConfig
    from stimage.tiles import TileSettings, TileStore, prepare_dataset
    from stimage.training import TrainConfig, train_model

    config = TrainConfig(
        encoders=("test_tiny_cnn",),
        gene_sets=("mean250",),
        ensemble=NBEnsembleConfig(members=2, pca_dim=8, glm=NBGLMConfig(l2=(100.0,), max_iter=30)),
        name="tiny",
        context=None,
    )
    make_legacy_st(root / "st", "S1", "P1", seed=11, grid=(6, 7), n_genes=15)
    make_legacy_st(root / "st", "S2", "P1", seed=12, grid=(6, 7), n_genes=15)
    store = root / "store"
    prepare_dataset(
        load_dataset(root / "st"),
        store,
        TileSettings(tile_px=32, stain="reinhard", stain_patches=4),
    )
    return train_model(TileStore(store), config, ["S1", "S2"]).save(root / "model" / "tiny")
