"""Gene sets to evaluate on, re-exported from :mod:`stimage.training._genesets`.

Training chooses them (from the training samples only), so they live there; evaluation offers
the same names as it always has.
"""

from stimage.training import PAPER_PANEL, PAPER_TEXT_PANEL, gene_sets, top_hvg, top_mean

__all__ = ["PAPER_PANEL", "PAPER_TEXT_PANEL", "gene_sets", "top_hvg", "top_mean"]
