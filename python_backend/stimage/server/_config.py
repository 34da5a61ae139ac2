"""Server settings, size limits and CURVE key files."""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stimage.errors import ConfigError, InputFileNotFoundError

__all__ = ["Limits", "ServerConfig", "is_loopback", "make_keys"]

logger = logging.getLogger(__name__)

#: Default TCP port of ``stimage serve``.
DEFAULT_PORT = 5557


@dataclass(frozen=True)
class Limits:
    """Bounds on what a client may send and on the work the server holds.

    Attributes:
        max_header_bytes: Largest JSON header frame.
        max_frame_bytes: Largest binary frame (one encoded tile).
        max_request_bytes: Largest request, all frames together.
        max_frames: Most binary frames in one request.
        max_tiles: Most tiles in one tile request.
        max_tile_px: Longest side of a decoded tile (decompression bombs are refused).
        max_slide_tiles: Most tiles of one slide-path request.
        max_requests: Requests admitted at once (queued or running); more get ``busy``.
        max_client_requests: Requests one client (connection) may have admitted at once.
        batch_size: Tiles per forward pass of the model.
        heartbeat_s: Seconds between heartbeats to clients with work in flight.
        default_deadline_s: Deadline of a request that gives none.
        max_deadline_s: Longest deadline a request may ask for.
        scale_tolerance: Accepted relative difference between a tile's physical size
            (pixels x µm/px) and the model's tile µm.
    """

    max_header_bytes: int = 1 << 20
    max_frame_bytes: int = 8 << 20
    max_request_bytes: int = 128 << 20
    max_frames: int = 1024
    max_tiles: int = 512
    max_tile_px: int = 4096
    max_slide_tiles: int = 200_000
    max_requests: int = 32
    max_client_requests: int = 8
    batch_size: int = 64
    heartbeat_s: float = 1.0
    default_deadline_s: float = 600.0
    max_deadline_s: float = 86400.0
    scale_tolerance: float = 0.05

    def __post_init__(self) -> None:
        bad = [
            k for k, v in asdict(self).items() if not (v > 0) or (k == "scale_tolerance" and v >= 1)
        ]
        if bad:
            raise ConfigError(
                f"server limits must be positive (scale_tolerance below 1); got {bad}"
            )
        if self.max_frame_bytes > self.max_request_bytes:
            raise ConfigError("max_frame_bytes cannot exceed max_request_bytes")

    def to_dict(self) -> dict[str, Any]:
        """The limits as sent in the hello reply."""
        return asdict(self)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Where and how the server listens.

    Attributes:
        host: Interface to bind; loopback by default. Another interface needs
            ``curve_keys`` or ``insecure``.
        port: TCP port; 0 picks a free one (see :attr:`Server.address`).
        curve_keys: Folder made by :func:`make_keys`: the server's key pair and, in
            ``authorized/``, the public keys of clients allowed in.
        insecure: Listen on a non-loopback interface without authentication or
            encryption (warned about loudly).
        allow_roots: Folders whose slide files clients may ask the server to read
            (symlinks resolved); none by default, so slide-path requests are refused.
        device: ``auto`` (GPU when available), ``cpu``, ``cuda``, ``cuda:1``...
        limits: Size and work limits.
        stain_cache: Stain fits kept per (model, image id), least recently used dropped.
        workers: Threads that decode and normalise tiles and read slides.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    curve_keys: Path | None = None
    insecure: bool = False
    allow_roots: tuple[Path, ...] = ()
    device: str = "auto"
    limits: Limits = field(default_factory=Limits)
    stain_cache: int = 64
    workers: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        if self.curve_keys is not None and self.insecure:
            raise ConfigError("give either CURVE keys or --insecure, not both")
        if not is_loopback(self.host) and self.curve_keys is None and not self.insecure:
            raise ConfigError(
                f"refusing to listen on {self.host} without authentication: anyone who can reach "
                "it could use the server. Create keys with `stimage serve --make-keys DIR` and "
                "pass --curve-keys DIR (clients need DIR/client.key_secret and DIR/server.key), "
                "or accept the risk with --insecure"
            )
        if self.stain_cache < 1 or self.workers < 1:
            raise ConfigError("stain_cache and workers must be at least 1")
        roots = []
        for r in self.allow_roots:
            p = Path(r).expanduser()
            if not p.is_dir():
                raise InputFileNotFoundError(f"{p}: --allow-root must be an existing folder")
            roots.append(p.resolve())
        object.__setattr__(self, "allow_roots", tuple(roots))
        if self.curve_keys is not None:
            object.__setattr__(self, "curve_keys", Path(self.curve_keys).expanduser())

    @property
    def bind_address(self) -> str:
        """The ZeroMQ endpoint to bind."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"tcp://{host}:{self.port if self.port else '*'}"


def make_keys(folder: str | os.PathLike[str], *, overwrite: bool = False) -> dict[str, Path]:
    """Create CURVE key pairs for a server and one client.

    Writes ``server.key`` / ``server.key_secret``, ``client.key`` / ``client.key_secret``
    and ``authorized/client.key`` (the server lets in every public key in ``authorized/``).
    Give clients ``server.key`` and ``client.key_secret``; keep ``server.key_secret`` on
    the server.

    Raises:
        ConfigError: Keys already exist and ``overwrite`` is False.
    """
    import shutil

    import zmq.auth

    out = Path(folder).expanduser()
    if (out / "server.key_secret").exists() and not overwrite:
        raise ConfigError(f"{out} already holds server keys; pick another folder or remove them")
    (out / "authorized").mkdir(parents=True, exist_ok=True)
    pub_s, sec_s = zmq.auth.create_certificates(str(out), "server")
    pub_c, sec_c = zmq.auth.create_certificates(str(out), "client")
    shutil.copy(pub_c, out / "authorized" / "client.key")
    for secret in (sec_s, sec_c):
        os.chmod(secret, 0o600)
    return {
        "server_public": Path(pub_s),
        "server_secret": Path(sec_s),
        "client_public": Path(pub_c),
        "client_secret": Path(sec_c),
        "authorized": out / "authorized",
    }


def load_key_pair(path: Path) -> tuple[bytes, bytes | None]:
    """Public and secret key of a certificate file written by ``zmq.auth``."""
    import zmq.auth

    if not path.is_file():
        raise InputFileNotFoundError(
            f"{path}: no such key file; create keys with `stimage serve --make-keys DIR`"
        )
    try:
        return zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as e:
        raise ConfigError(f"{path}: not a ZeroMQ certificate ({e})") from e
