"""STImage for QuPath: spatial gene expression, cell types and explanations from H&E.

Importing :mod:`stimage` only defines things: it touches no network, no device and no
logging configuration. The rooms of the package are imported on demand:

* :mod:`stimage.data`: slides, µm per pixel, spatial samples and datasets.
* :mod:`stimage.tiles`: tiles in physical units, tissue QC, stain normalisation,
  augmentation and the on-disk tile store.
"""

from stimage._version import __version__
from stimage.errors import StimageError

__all__ = ["StimageError", "__version__"]
