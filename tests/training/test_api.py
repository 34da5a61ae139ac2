"""Training's public names, the private paths others import, and its place below evaluation."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import stimage.training as tr

ROOM = Path(tr.__file__).parent


@pytest.mark.parametrize("name", tr.__all__)
def test_public_names_resolve(name: str) -> None:
    assert getattr(tr, name) is not None


def test_private_paths_still_import() -> None:
    from stimage.training._features import _batches, extract_features, feature_cache_dir
    from stimage.training._genesets import gene_sets

    assert callable(_batches) and extract_features is tr.extract_features
    assert feature_cache_dir is tr.feature_cache_dir and callable(gene_sets)


def _stimage_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("stimage.")}


@pytest.mark.parametrize("path", sorted(ROOM.glob("*.py")), ids=lambda p: p.name)
def test_training_does_not_import_evaluation(path: Path) -> None:
    # Evaluation imports training (cross-validation fits models); never the other way round.
    bad = {m for m in _stimage_imports(path) if m.split(".")[1] in ("evaluation", "pipelines")}
    assert not bad, f"{path.name} imports {sorted(bad)}"
