"""House style as a test: ruff's lint rules (pyproject.toml) hold over the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_is_clean_on_the_package() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    r = subprocess.run(
        [ruff, "check", "--output-format", "concise", "python_backend"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def _tool(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        pytest.skip(f"{name} is not installed (pip install -e .[dev])")
    return exe


def test_ruff_format_is_clean_on_everything() -> None:
    r = subprocess.run(
        [_tool("ruff"), "format", "--check", "python_backend", "tests", "benchmarks", "scripts"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_mypy_passes_on_the_package() -> None:
    """mypy, configured in pyproject.toml, on python_backend/stimage."""
    r = subprocess.run(
        [_tool("mypy"), "--no-error-summary", "python_backend/stimage"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
