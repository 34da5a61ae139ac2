"""Fixtures of the QuPath GeoJSON tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely

from stimage.constants import Measurement, ObjectMarker
from stimage.qupath import annotation_feature, cell_features, polygon_features, tile_features


@pytest.fixture
def sample_features() -> list[dict[str, Any]]:
    """One of each kind of object, with NaN and infinite measurements."""
    gene = "COX6C"
    df = pd.DataFrame(
        {
            Measurement.of(gene, Measurement.MEAN): [1.5, np.nan],
            Measurement.of(gene, Measurement.P_HIGH): [0.25, np.inf],
        }
    )
    feats = list(
        tile_features(
            np.array([[0, 0, 224, 224], [224, 0, 224, 224]]),
            df,
            classification=["COX6C: High", None],
            extra={ObjectMarker.TASK: "expression"},
        )
    )
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    feats += polygon_features(
        [bowtie, shapely.box(50, 50, 60, 60)],
        pd.DataFrame({Measurement.lime("VEGFA"): [0.125, -0.25]}),
        classifications=["Immune", "Tumor"],
        names=["n1", "n2"],
    )
    feats += cell_features(
        [shapely.Point(100, 100).buffer(4)],
        [shapely.Point(100, 100).buffer(9)],
        ["Epithelial"],
        pd.DataFrame({Measurement.class_probability("Epithelial"): [0.875]}),
    )
    feats.append(
        annotation_feature(
            shapely.box(0, 0, 1000, 1000).difference(shapely.box(100, 100, 200, 200)),
            name="STImage region",
            classification="STImage region",
            locked=True,
        )
    )
    return feats
