"""What a user asks for, once: the application layer above models, explain, encoders and tiles.

The command line and the server are thin adapters over these pipelines: they parse or
validate a request, call one function here and format its answer, so a result is the same
whichever way it was asked for.

* :func:`predict_spots`, :func:`predict_slide`: predictions of a spatial sample's spots or
  of a slide region, in memory (AnnData); :func:`write_predictions` writes them (h5ad, CSV).
* :func:`run_slide_job`, :class:`SlideJob`: a whole slide, resumable, chunk by chunk on disk;
  :func:`slide_job_features` streams its tiles as QuPath objects; :func:`predict_slide_files`
  writes GeoJSON, AnnData and heatmaps from it (``stimage predict-slide``).
* :func:`detect_cells`, :func:`cells_in_image`: nuclei segmented and typed.
* :func:`explain_tile`: which nuclei drove a tile's prediction (LIME or occlusion).
* :func:`annotate_project`: every image of a QuPath project, into the project.
* :func:`run_cohort`: many slides (a manifest or a folder, :func:`cohort_slides`), one task
  per slide, in-process (:class:`InProcessRunner`) or on Ray (:class:`RayRunner`), resumable
  from its ledger (``stimage predict-slides``).
"""

from stimage.pipelines._cells import (
    cells_in_image,
    detect_cells,
    plot_cells,
    region_cell_features,
)
from stimage.pipelines._cohort import (
    CohortProgress,
    InProcessRunner,
    Runner,
    SlideOutcome,
    cohort_status,
    run_cohort,
    write_summary,
)
from stimage.pipelines._cohort_ledger import Ledger
from stimage.pipelines._cohort_manifest import SlideSpec, cohort_slides, read_manifest
from stimage.pipelines._cohort_ray import RayRunner, import_ray
from stimage.pipelines._cohort_slide import CohortSettings, ModelSpec, predict_cohort_slide
from stimage.pipelines._explain import (
    FIT_ON_SLIDE,
    METHODS,
    TileExplanation,
    explain_tile,
    plot_explanation,
    score_name,
    target_function,
    tile_box,
    write_explanation_geojson,
)
from stimage.pipelines._explain_context import NeighbourTiles
from stimage.pipelines._predict import predict_slide, predict_spots, write_predictions
from stimage.pipelines._project import annotate_project
from stimage.pipelines._project_report import ImageResult, format_summary
from stimage.pipelines._run_report import (
    RunReport,
    cells_section,
    explanation_warnings,
    model_section,
    slide_report,
    training_overlap,
)
from stimage.pipelines._slide_files import SlideFiles, output_paths, predict_slide_files
from stimage.pipelines._slide_job import (
    SlideJob,
    SlideJobChangedError,
    model_fingerprint,
    model_id,
    run_slide_job,
    slide_job_features,
)

__all__ = [
    "FIT_ON_SLIDE",
    "METHODS",
    "CohortProgress",
    "CohortSettings",
    "ImageResult",
    "InProcessRunner",
    "Ledger",
    "ModelSpec",
    "NeighbourTiles",
    "RayRunner",
    "RunReport",
    "Runner",
    "SlideFiles",
    "SlideJob",
    "SlideJobChangedError",
    "SlideOutcome",
    "SlideSpec",
    "TileExplanation",
    "annotate_project",
    "cells_in_image",
    "cells_section",
    "cohort_slides",
    "cohort_status",
    "detect_cells",
    "explain_tile",
    "explanation_warnings",
    "format_summary",
    "import_ray",
    "model_fingerprint",
    "model_id",
    "model_section",
    "output_paths",
    "plot_cells",
    "plot_explanation",
    "predict_cohort_slide",
    "predict_slide",
    "predict_slide_files",
    "predict_spots",
    "read_manifest",
    "region_cell_features",
    "run_cohort",
    "run_slide_job",
    "score_name",
    "slide_job_features",
    "slide_report",
    "target_function",
    "tile_box",
    "training_overlap",
    "write_explanation_geojson",
    "write_predictions",
    "write_summary",
]
