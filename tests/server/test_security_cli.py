"""Loopback by default, CURVE keys or --insecure elsewhere; the serve and client commands."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from server._helpers import TEST_LIMITS, boxes_for, model_tiles
from stimage.cli import cli
from stimage.errors import ConfigError, StimageError
from stimage.models import Predictor
from stimage.qupath import validate_geojson
from stimage.server import ErrorCode, Server, ServerConfig, ServerError, is_loopback, make_keys
from stimage.server._config import load_key_pair
from stimage.server.client import Client

ClientOf = Callable[..., Client]


def test_non_loopback_needs_keys_or_insecure(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert (
        not is_loopback("0.0.0.0")
        and not is_loopback("192.168.1.5")
        and not is_loopback("example.org")
    )
    with pytest.raises(ConfigError, match="--curve-keys"):
        ServerConfig(host="0.0.0.0")
    assert ServerConfig(host="0.0.0.0", insecure=True).insecure
    assert ServerConfig(host="0.0.0.0", curve_keys=tmp_path).curve_keys == tmp_path
    with pytest.raises(ConfigError, match="not both"):
        ServerConfig(host="0.0.0.0", curve_keys=tmp_path, insecure=True)
    with pytest.raises(StimageError, match="--allow-root"):
        ServerConfig(allow_roots=(tmp_path / "missing",))


def test_serve_command_refuses_an_open_interface_and_makes_keys(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["serve", "--host", "0.0.0.0", "--model", str(tmp_path)])
    assert r.exit_code == 2 and "--curve-keys" in r.output and "--insecure" in r.output
    keys = tmp_path / "keys"
    r = runner.invoke(cli, ["serve", "--make-keys", str(keys)])
    assert r.exit_code == 0, r.output
    for f in (
        "server.key",
        "server.key_secret",
        "client.key",
        "client.key_secret",
        "authorized/client.key",
    ):
        assert (keys / f).is_file(), f
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0
    r = runner.invoke(cli, ["serve", "--make-keys", str(keys)])
    assert r.exit_code == 2 and "already" in r.output


def test_curve_lets_in_only_authorised_clients(
    predictor: Predictor, tmp_path: Path, client_of: ClientOf
) -> None:
    make_keys(tmp_path / "keys")
    make_keys(tmp_path / "other")
    cfg = ServerConfig(port=0, curve_keys=tmp_path / "keys", limits=TEST_LIMITS, device="cpu")
    with Server([predictor], cfg) as server:
        ok = client_of(server.address, curve_keys=tmp_path / "keys")
        assert ok.hello()["models"]
        tiles, mpp = model_tiles(predictor, 2)
        assert ok.predict(tiles, boxes_for(2), mpp)["n_tiles"] == 2
        theirs = load_key_pair(tmp_path / "other" / "server.key")[0]
        for c, says in (
            (client_of(server.address), "expects CURVE keys"),  # plain text
            (
                client_of(
                    server.address,
                    server_public_key=load_key_pair(tmp_path / "keys" / "server.key")[0],
                    client_keys=load_key_pair(tmp_path / "other" / "client.key_secret"),
                ),
                "refused this client's|client's key is not authorised",
            ),
            (client_of(server.address, curve_keys=tmp_path / "other"), "not this server's"),
            (
                client_of(
                    server.address,
                    server_public_key=theirs,
                    client_keys=load_key_pair(tmp_path / "keys" / "client.key_secret"),
                ),
                "server key given is not this server's",
            ),
        ):
            t0 = time.monotonic()
            with pytest.raises(ServerError, match=says) as e:
                c.ping()
            # Told at once from the handshake, not after the connect timeout.
            assert e.value.code == ErrorCode.DISCONNECTED and time.monotonic() - t0 < 3.0
        assert ok.ping() > 0
    # Keys against a server without CURVE: said so, at once.
    plain_cfg = replace(cfg, curve_keys=None)
    with (
        Server([predictor], plain_cfg) as plain,
        pytest.raises(ServerError, match="runs without --curve-keys"),
    ):
        client_of(plain.address, curve_keys=tmp_path / "keys").ping()


def test_client_commands(server: Server, slide_root: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["client", "-a", server.address, "hello"])
    assert r.exit_code == 0, r.output
    assert "tiles of 200 µm" in r.output and "slide paths: allowed" in r.output
    r = runner.invoke(cli, ["client", "-a", server.address, "hello", "--json"])
    assert json.loads(r.output)["protocol"] == 1
    # An image read here and sent as tiles (the synthetic slide is 2 µm/px: 100 px tiles).
    out = tmp_path / "tiles.geojson"
    r = runner.invoke(
        cli, ["client", "-a", server.address, "predict", str(slide_root / "wsi.tif"), "--region", "200,200,300,200",
              "--out", str(out), "--batch", "4"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert validate_geojson(out) == 6
    # The same region read by the server gives the same objects and measurements.
    out2 = tmp_path / "slide.geojson"
    r = runner.invoke(
        cli, ["client", "-a", server.address, "predict", "--slide", str(slide_root / "wsi.tif"),
              "--region", "200,200,300,200", "--out", str(out2)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    a, b = (json.loads(p.read_text())["features"] for p in (out, out2))
    assert [f["geometry"] for f in a] == [f["geometry"] for f in b]
    # Errors are one line with the code.
    r = runner.invoke(
        cli,
        ["client", "-a", server.address, "predict", "--slide", "/etc/passwd", "--out", str(out2)],
    )
    assert r.exit_code == 2 and "forbidden_path" in r.output
    r = runner.invoke(cli, ["client", "-a", server.address, "predict", "--out", str(out2)])
    assert r.exit_code == 2
