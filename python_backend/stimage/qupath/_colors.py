"""Classification colours: fixed ones for known classes, a stable hash colour for the rest.

QuPath rejects a classification object without a colour (``GsonTools.PathClassTypeAdapter``),
so every classification STImage writes carries one. Where a name is also one of QuPath's
standard classes (``PathClass.StandardPathClasses`` and ``PathClass.getDefaultColor``) the
colour is QuPath's, so our objects look like QuPath's own.
"""

from __future__ import annotations

import colorsys
import hashlib

__all__ = ["KNOWN_CLASS_COLORS", "class_color"]

RGB = tuple[int, int, int]

#: Colours of known class names (matched exactly, then ignoring case).
KNOWN_CLASS_COLORS: dict[str, RGB] = {
    # QuPath's standard classes (PathClass.StandardPathClasses, getDefaultColor)
    "Tumor": (200, 0, 0),
    "Stroma": (150, 200, 150),
    "Immune cells": (160, 90, 160),
    "Necrosis": (50, 50, 50),
    "Other": (255, 200, 0),
    "Region*": (0, 0, 180),
    "Ignore*": (180, 180, 180),
    "Positive": (250, 62, 62),  # makeScaledRGB((200, 50, 50), 1.25)
    "Negative": (112, 112, 225),  # makeScaledRGB((90, 90, 180), 1.25)
    # Cell types of STImage's cell typing (and common segmentation/typing models). STImage's
    # four classes use the Okabe-Ito palette (told apart with any colour vision) in hues that
    # stand out on H&E's pinks and purples: a purple outline vanishes on haematoxylin.
    "Immune": (0, 158, 115),
    "Lymphocyte": (130, 60, 200),
    "Myeloid": (200, 110, 200),
    "Macrophage": (190, 80, 150),
    "Plasma cell": (110, 40, 140),
    "Stromal": (240, 228, 66),
    "Fibroblast": (90, 170, 90),
    "Connective": (150, 200, 150),
    "Epithelial": (230, 159, 0),
    "Non-neoplastic epithelial": (230, 150, 50),
    "Neoplastic": (200, 0, 0),
    "Inflammatory": (160, 90, 160),
    "Endothelial": (86, 180, 233),
    "Adipocyte": (240, 230, 140),
    "Dead": (50, 50, 50),
    "Unknown": (128, 128, 128),
    # High/low expression classes of STImage's classifier
    "High": (220, 50, 50),
    "Low": (60, 90, 220),
    # STImage's own objects
    "STImage region": (0, 160, 160),
}

_BY_CASEFOLD = {k.casefold(): v for k, v in KNOWN_CLASS_COLORS.items()}


def class_color(name: str) -> RGB:
    """The colour of a classification, as QuPath wants it: ``(r, g, b)`` integers in 0-255.

    Known names (QuPath's standard classes, STImage's cell types, ``"High"``/``"Low"``) get a
    fixed colour; any other name gets a colour derived from a hash of the name, the same in
    every run and on every machine. A derived class ``"COX6C: High"`` takes the colour of its
    last part when that part is known.

    Note that QuPath keeps the colour of a class that already exists in a project; the colour
    written here only applies when QuPath meets the class for the first time.

    Args:
        name: Class name; ``": "`` separates the parts of a derived class.

    Returns:
        ``(r, g, b)``.

    Example:
        >>> class_color("Tumor")
        (200, 0, 0)
    """
    name = name.strip()
    known = KNOWN_CLASS_COLORS.get(name) or _BY_CASEFOLD.get(name.casefold())
    if known is not None:
        return known
    last = name.rsplit(":", 1)[-1].strip()
    if last != name:
        known = KNOWN_CLASS_COLORS.get(last) or _BY_CASEFOLD.get(last.casefold())
        if known is not None:
            return known
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=4).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536.0
    sat = 0.55 + 0.35 * digest[2] / 255.0
    val = 0.70 + 0.25 * digest[3] / 255.0
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return (round(r * 255), round(g * 255), round(b * 255))
