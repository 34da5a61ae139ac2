"""Shared options: defined once, the same everywhere, implausible scales refused at parse time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from stimage.cli import cli
from stimage.cli._common import ProgressBars
from stimage.cli._options import MPP_MAX, MPP_MIN, MPP_WARN, mpp_option


def _commands() -> list[tuple[str, click.Command]]:
    """Every command, subcommands of groups as 'group sub'."""
    out: list[tuple[str, click.Command]] = []
    for name, cmd in cli.commands.items():
        if isinstance(cmd, click.Group):
            out += [(f"{name} {sub}", c) for sub, c in cmd.commands.items()]
        out.append((name, cmd))
    return out


def _option(cmd: click.Command, flag: str) -> click.Option | None:
    return next((p for p in cmd.params if isinstance(p, click.Option) and flag in p.opts), None)


def test_every_option_has_help() -> None:
    missing = [
        f"{name} {p.opts[0]}"
        for name, cmd in _commands()
        for p in cmd.params
        if isinstance(p, click.Option) and not p.help
    ]
    assert not missing


@pytest.mark.parametrize(
    ("flag", "commands"),
    [
        (
            "--mpp",
            [
                "prepare",
                "predict",
                "predict-slide",
                "annotate-project",
                "train-cells",
                "cells",
                "explain",
                "client predict",
                "client cells",
                "client explain",
            ],
        ),
        (
            "--model",
            [
                "predict",
                "predict-slide",
                "annotate-project",
                "cells",
                "explain",
                "serve",
                "client predict",
                "client explain",
            ],
        ),
        (
            "--device",
            [
                "train",
                "predict",
                "predict-slide",
                "annotate-project",
                "explain",
                "serve",
                "evaluate",
            ],
        ),
        (
            "--encoder-weights",
            [
                "train",
                "predict",
                "predict-slide",
                "annotate-project",
                "explain",
                "serve",
                "evaluate",
            ],
        ),
    ],
)
def test_shared_options_are_the_same_everywhere(flag: str, commands: list[str]) -> None:
    by_name = dict(_commands())
    found = {name: _option(by_name[name], flag) for name in commands}
    assert all(o is not None for o in found.values()), found
    opts = [o for o in found.values() if o is not None]
    if flag == "--mpp":
        assert all(o.callback is opts[0].callback for o in opts)  # one check for all
    if flag == "--model":
        assert all(o.opts == ["--model", "-m"] for o in opts)
    if flag == "--encoder-weights":
        assert all(o.multiple and o.metavar == "NAME=PATH" for o in opts)


def _probe() -> click.Command:
    @click.command()
    @mpp_option()
    def probe(mpp: float | None) -> None:
        click.echo(f"mpp={mpp}")

    return probe


@pytest.mark.parametrize("value", ["5", "50", "0.01", "nan", "inf", str(MPP_MAX * 1.01)])
def test_implausible_mpp_is_refused_with_the_usual_values(value: str) -> None:
    r = CliRunner().invoke(_probe(), ["--mpp", value])
    assert r.exit_code == 2
    assert "not a plausible scale" in r.output and "20x ≈ 0.5" in r.output
    assert "mpp=" not in r.output


def test_plausible_mpp_passes_and_a_coarse_one_warns() -> None:
    r = CliRunner().invoke(_probe(), ["--mpp", "0.5"])
    assert r.exit_code == 0 and r.stdout == "mpp=0.5\n" and not r.stderr
    for v in (MPP_MIN, MPP_WARN):
        assert CliRunner().invoke(_probe(), ["--mpp", str(v)]).stderr == ""
    r = CliRunner().invoke(_probe(), ["--mpp", "3"])
    assert r.exit_code == 0 and "mpp=3.0" in r.stdout and "warning: --mpp 3" in r.stderr


def test_commands_refuse_an_implausible_mpp_before_any_work(tmp_path: Path) -> None:
    img = tmp_path / "x.png"
    img.write_bytes(b"not read")
    for args in (
        ["cells", str(img), "--box", "0,0,10,10", "--out", str(tmp_path / "c.geojson")],
        ["predict-slide", str(img), "--out", str(tmp_path / "p.geojson")],
        ["client", "predict", str(img), "--out", str(tmp_path / "q.geojson")],
    ):
        r = CliRunner().invoke(cli, [*args, "--mpp", "50"])
        assert r.exit_code == 2 and "not a plausible scale" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_help_texts() -> None:
    r = CliRunner().invoke(cli, ["train-cells", "--help"])
    assert r.exit_code == 0 and "\\b" not in r.output and "\b" not in r.output
    r = CliRunner().invoke(cli, ["explain", "--help"])
    assert "explain_lime.png" in r.output and "explain.png" not in r.output
    r = CliRunner().invoke(cli, ["prepare", "--help"])
    assert "every sample of the store" in " ".join(r.output.split())


_STARTUP = textwrap.dedent(
    """
    import sys
    from click.testing import CliRunner
    from stimage.cli import cli

    def check(args, code, needle):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == code, (args, r.output)
        assert needle in r.output, (args, r.output)
        assert "torch" not in sys.modules, ("torch imported by", args)

    for name, cmd in cli.commands.items():
        check([name, "--help"], 0, "Usage")
        for sub in getattr(cmd, "commands", {}):
            check([name, sub, "--help"], 0, "Usage")
    img, out = sys.argv[1], sys.argv[2]
    check(["cells", img, "--box", "0,0,9,9", "--mpp", "9", "-o", out + "/c.geojson"], 2, "plausible")
    if sys.argv[3] == "model":
        bad = "does not predict ['NOTAGENE']"
        check(["predict", img, "--mpp", "0.5", "--genes", "NOTAGENE", "-o", out], 2, bad)
        check(["predict-slide", img, "--mpp", "0.5", "--genes", "NOTAGENE", "-o", out + "/a.geojson"], 2, bad)
        check(["predict-slide", img, "--mpp", "0.5", "--heatmaps", "NOTAGENE", "-o", out + "/a.geojson"], 2, bad)
        check(["explain", img, "--mpp", "0.5", "--tile", "99,99", "--gene", "NOTAGENE", "-o", out], 2, bad)
        check(["predict", img, "-o", out], 2, "--mpp")  # no scale: said before the model loads
    print("ok")
    """
)


def test_help_and_argument_errors_do_not_import_torch(tmp_path: Path) -> None:
    """--help of every command and errors found before the model is built stay light."""
    from stimage.examples import example_path

    try:
        from stimage.models import default_model_path

        default_model_path()
        has_model = "model"
    except FileNotFoundError:
        has_model = "none"
    (img,) = Path(example_path()).glob("ST-imgs/*/*/*.jpg")
    r = subprocess.run(
        [sys.executable, "-c", _STARTUP, str(img), str(tmp_path), has_model],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
    assert not any(tmp_path.iterdir())  # nothing written by refused commands


def test_progress_bars_start_at_the_first_count_and_say_stages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bars = ProgressBars()
    bars.stage("S1: finding tissue ...")
    bars("S1", 64, 256)
    bar = bars._bar
    assert bar.initial == 64 and bar.n == 64  # not a jump from 0 to 64 in no time
    rate = bar.format_dict["rate"]
    assert rate is None or rate == 0
    bars("S1", 128, 256)
    assert bars._bar is bar and bar.n == 128
    bars("S1", 128, 300)
    assert bar.total == 300
    bars("S2", 0, 10)
    assert bars._bar is not bar and bars._bar.n == 0
    bars.close()
    err = capsys.readouterr().err
    assert "S1: finding tissue ..." in err and "S2" in err
    quiet = ProgressBars(disable=True)
    quiet.stage("hidden")
    quiet("S", 1, 2)
    quiet.close()
    assert "hidden" not in capsys.readouterr().err
