"""`stimage serve --exit-with-stdin`: the server goes when the program that started it goes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stimage.server.client import Client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_server_stops_when_stdin_closes(bundle, tmp_path: Path) -> None:
    model = bundle.save(tmp_path / "m")
    port = _free_port()
    cmd = [sys.executable, "-c", "from stimage.cli import main; main()", "serve", "--model", str(model), "--port", str(port),
           "--device", "cpu", "--exit-with-stdin"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        client = Client(f"tcp://127.0.0.1:{port}", connect_timeout=2.0, heartbeat_timeout=5.0)
        until = time.monotonic() + 120
        while True:
            try:
                assert client.ping() > 0
                break
            except Exception:  # noqa: BLE001 - not up yet
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < until, "the server did not answer within 120 s"
                time.sleep(0.5)
        client.close()
        assert proc.stdin is not None
        proc.stdin.close()  # what the death of the launching program does
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "standard input closed" in err or proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
