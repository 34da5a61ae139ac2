"""Expression models: NB regression of counts, ensembles, classifier, baselines, bundles.

Also prediction from tiles, spots and slides with a bundle (:class:`Predictor`).
"""

from pathlib import Path

from stimage.models._bundle import FORMAT_VERSION, ModelBundle, UnknownGeneError, load_bundle
from stimage.models._classifier import HighLowClassifier, high_low_labels
from stimage.models._ensemble import (
    ExpressionPrediction,
    NBEnsemble,
    NBEnsembleConfig,
    mixture_quantiles,
)
from stimage.models._linear import FeaturePipeline, PCARidge
from stimage.models._nb import NBGLM, NBGLMConfig, nb_nll
from stimage.models._paper import PaperConfig, PaperNB
from stimage.models._predictor import Predictor, TilePredictions, predict_slide, predict_spots

__all__ = [
    "FORMAT_VERSION",
    "NBGLM",
    "ExpressionPrediction",
    "FeaturePipeline",
    "HighLowClassifier",
    "ModelBundle",
    "NBEnsemble",
    "NBEnsembleConfig",
    "NBGLMConfig",
    "PCARidge",
    "PaperConfig",
    "PaperNB",
    "Predictor",
    "TilePredictions",
    "UnknownGeneError",
    "default_model_path",
    "high_low_labels",
    "load_bundle",
    "mixture_quantiles",
    "nb_nll",
    "predict_slide",
    "predict_spots",
]


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
