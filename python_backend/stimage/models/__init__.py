"""Expression models: NB regression of counts, ensembles, classifier, baselines, bundles.

Also prediction from tiles, spots and slides with a bundle (:class:`Predictor`).
"""

from pathlib import Path

from stimage.models._bundle import (
    FORMAT_VERSION,
    RELIABLE_PCC,
    Component,
    ModelBundle,
    UnknownGeneError,
    load_bundle,
)
from stimage.models._cells import Cells, cell_measurements, display_class
from stimage.models._celltype import CellTypeClassifier, celltype_entropy
from stimage.models._celltype_features import (
    celltype_features,
    labels_from_qupath,
    labels_from_xenium,
    morphology_anchors,
    patch_features,
    patch_features_image,
    read_cell_type_table,
    spot_bags,
)
from stimage.models._celltype_io import CELLTYPE_FORMAT_VERSION, load_celltype_model
from stimage.models._celltype_mapping import (
    DEFAULT_CELL_CLASSES,
    DEFAULT_CELLTYPE_MAPPING,
    HER2ST_CELLTYPE_MAPPING,
    UnknownCellTypeError,
    map_labels,
    map_proportions,
)
from stimage.models._celltype_train import (
    SpotNuclei,
    classify_nuclei,
    collect_spot_nuclei,
    spot_nuclei,
    train_celltypes_from_dataset,
)
from stimage.models._classifier import HighLowClassifier, high_low_labels
from stimage.models._context import MAX_NEIGHBOURS, ContextNeighbours, SpatialContext
from stimage.models._ensemble import (
    ExpressionPrediction,
    NBEnsemble,
    NBEnsembleConfig,
    fit_pipeline,
    gene_chunk,
    mixture_pit,
    mixture_quantiles,
)
from stimage.models._linear import FeaturePipeline, PCARidge
from stimage.models._nb import NBGLM, SCALE, NBGLMConfig, nb_nll
from stimage.models._nb_mlp import NBMLP, NBMLPConfig
from stimage.models._nb_select import LEVEL, THETA_SCALES, HeldOut
from stimage.models._outputs import (
    GENE_OUTPUTS,
    NOVELTY_FLAG,
    TILE_OUTPUTS,
    GeneOutput,
    TileOutput,
    TilePredictions,
    anndata_values,
    measurement_columns,
    to_anndata,
)
from stimage.models._paper import PaperConfig, PaperNB
from stimage.models._predictor import GridTiles, Predictor

__all__ = [
    "CELLTYPE_FORMAT_VERSION",
    "DEFAULT_CELLTYPE_MAPPING",
    "DEFAULT_CELL_CLASSES",
    "FORMAT_VERSION",
    "GENE_OUTPUTS",
    "HER2ST_CELLTYPE_MAPPING",
    "LEVEL",
    "MAX_NEIGHBOURS",
    "NBGLM",
    "NBMLP",
    "NOVELTY_FLAG",
    "RELIABLE_PCC",
    "SCALE",
    "THETA_SCALES",
    "TILE_OUTPUTS",
    "CellTypeClassifier",
    "Cells",
    "Component",
    "ContextNeighbours",
    "ExpressionPrediction",
    "FeaturePipeline",
    "GeneOutput",
    "GridTiles",
    "HeldOut",
    "HighLowClassifier",
    "ModelBundle",
    "NBEnsemble",
    "NBEnsembleConfig",
    "NBGLMConfig",
    "NBMLPConfig",
    "PCARidge",
    "PaperConfig",
    "PaperNB",
    "Predictor",
    "SpatialContext",
    "SpotNuclei",
    "TileOutput",
    "TilePredictions",
    "UnknownCellTypeError",
    "UnknownGeneError",
    "anndata_values",
    "cell_measurements",
    "celltype_entropy",
    "celltype_features",
    "classify_nuclei",
    "collect_spot_nuclei",
    "default_celltype_model_path",
    "default_model_path",
    "display_class",
    "fit_pipeline",
    "gene_chunk",
    "high_low_labels",
    "labels_from_qupath",
    "labels_from_xenium",
    "load_bundle",
    "load_celltype_model",
    "map_labels",
    "map_proportions",
    "measurement_columns",
    "mixture_pit",
    "mixture_quantiles",
    "morphology_anchors",
    "nb_nll",
    "patch_features",
    "patch_features_image",
    "read_cell_type_table",
    "spot_bags",
    "spot_nuclei",
    "to_anndata",
    "train_celltypes_from_dataset",
]


def default_celltype_model_path() -> Path:
    """Folder of the bundled default cell-type model (trained on HER2ST spot proportions).

    Raises:
        InputFileNotFoundError: This installation has no bundled cell-type model.
    """
    from stimage.errors import InputFileNotFoundError

    p = Path(__file__).parent / "default_cells"
    if not (p / "celltype_manifest.json").exists():
        raise InputFileNotFoundError(
            f"{p}: no bundled cell-type model in this installation; give one with --model "
            "(train it with scripts/train_default_cells.py)"
        )
    return p


def default_model_path() -> Path:
    """Folder of the bundled default model (EfficientNet-Lite0 on HER2ST).

    Raises:
        InputFileNotFoundError: This installation has no bundled model.
    """
    from stimage.errors import InputFileNotFoundError

    p = Path(__file__).parent / "default"
    if not (p / "manifest.json").exists():
        raise InputFileNotFoundError(
            f"{p}: no bundled default model in this installation; give one with --model "
            "(train it with `stimage train` or scripts/train_default_model.py)"
        )
    return p
