"""STImage for QuPath: spatial gene expression, cell types and explanations from H&E.

Importing :mod:`stimage` only defines things: it touches no network, no device and no
logging configuration. It sets one default, before any math library loads: OpenMP threads
that wait for work sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE`` unless set), so
that the many small steps of model fitting do not burn the CPU of a shared machine (training
on 2 busy cores: 80 s instead of 216 s; idle: 32 s instead of 26 s; docs/benchmarks.md).
The rooms of the package are imported on demand:

* :mod:`stimage.data`: slides, µm per pixel, spatial samples and datasets.
* :mod:`stimage.tiles`: tiles in physical units, tissue QC, stain normalisation,
  augmentation and the on-disk tile store.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from stimage._version import __version__
from stimage.errors import StimageError

__all__ = ["StimageError", "__version__"]
