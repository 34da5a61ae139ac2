"""``stimage doctor --qupath``: what to paste into the QuPath extension's settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from stimage.cli import cli


def _rows(out: str) -> dict[str, str]:
    """The ``  name  value`` lines of the printout."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("  "):
            name, _, value = line.strip().partition("  ")
            rows[name] = value.strip()
    return rows


def test_qupath_prints_this_interpreters_environment_and_program() -> None:
    r = CliRunner().invoke(cli, ["doctor", "--qupath"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "Extensions > STImage > Backend settings > Local backend" in r.stdout
    rows = _rows(r.stdout)
    env = Path(rows["Python environment"])
    assert env.is_dir() and env.is_absolute()
    assert env.resolve() == Path(sys.prefix).resolve(), "the running interpreter's environment"
    program = Path(rows["stimage program"])
    assert program.is_file() and os.access(program, os.X_OK)
    assert program.parent.resolve() == Path(sys.executable).parent.resolve(), (
        "beside this interpreter"
    )
    # what the extension resolves from the environment folder (bin/stimage or Scripts\stimage.exe)
    layout = env / ("Scripts/stimage.exe" if os.name == "nt" else "bin/stimage")
    assert layout.resolve() == program.resolve()
    assert rows["Server address"] == "tcp://127.0.0.1:5557"
    assert rows["Model folder"].startswith("(leave empty: the bundled model, ")
    bundled = Path(rows["Model folder"].removeprefix("(leave empty: the bundled model, ")[:-1])
    assert (bundled / "manifest.json").is_file()
    assert rows["CURVE keys"].startswith("none needed for a backend on this computer")
    assert f"Python {sys.version.split()[0]} at {sys.executable}" in r.stdout


def test_qupath_names_port_model_and_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "server.key").write_text("x")
    not_a_model = tmp_path / "model"
    not_a_model.mkdir()
    r = CliRunner().invoke(
        cli,
        [
            "doctor",
            "--qupath",
            "--port",
            "6000",
            "--model",
            str(not_a_model),
            "--curve-keys",
            str(keys),
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    rows = _rows(r.stdout)
    assert rows["Server address"] == "tcp://127.0.0.1:6000"
    assert rows["Model folder"] == f"{not_a_model}  (NOT a model: no manifest.json in it)"
    assert rows["CURVE keys"] == f"{keys} (server.key found; MISSING client.key, client.key_secret)"
    empty = tmp_path / "nokeys"
    r = CliRunner().invoke(cli, ["doctor", "--qupath", "--curve-keys", str(empty)])
    assert f"none in {empty}: create them with stimage serve --make-keys {empty}" in r.stdout


def test_qupath_as_a_user_runs_it() -> None:
    """The installed command in a fresh process prints paths that exist."""
    program = Path(sys.executable).parent / ("stimage.exe" if os.name == "nt" else "stimage")
    out = subprocess.run(
        [str(program), "doctor", "--qupath"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = _rows(out)
    assert Path(rows["Python environment"]).resolve() == Path(sys.prefix).resolve()
    assert Path(rows["stimage program"]).resolve() == program.resolve()
