"""From a received message to a :class:`Request`: version, schema, op and size checks.

Cheap checks only, with hard caps: this runs on the I/O thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stimage.server._config import Limits
from stimage.server._jobs import Request
from stimage.server._protocol import PROTOCOL_VERSION, ErrorCode, ProtocolError, validate
from stimage.server.ops import UNAVAILABLE_OPS

__all__ = ["parse_request"]


def parse_request(
    envelope: list[bytes],
    header: dict[str, Any],
    frames: list[bytes],
    lim: Limits,
    ops: Mapping[str, Any],
) -> Request:
    """The request of a decoded header and its binary frames.

    Raises:
        ProtocolError: Wrong protocol version, a header the schema refuses, an unknown
            operation, or too many or too large frames.
    """
    if "protocol" not in header:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f'the header has no "protocol"; this server speaks protocol {PROTOCOL_VERSION}',
        )
    version = header["protocol"]
    if (
        isinstance(version, bool)
        or not isinstance(version, int | float)
        or version != PROTOCOL_VERSION
    ):
        shown = version if isinstance(version, int | float | str | None) else type(version).__name__
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_PROTOCOL,
            f"this server speaks protocol {PROTOCOL_VERSION}; the request uses protocol "
            f"{str(shown)[:20]}: use a client for protocol {PROTOCOL_VERSION}, or update the "
            "server and the client to the same version",
            {"server_protocols": [PROTOCOL_VERSION]},
        )
    validate(header, "request")
    op = header["op"]
    if op not in ops:
        known = ", ".join(sorted(ops))
        why = UNAVAILABLE_OPS.get(op, f"unknown operation {op[:64]!r}")
        raise ProtocolError(ErrorCode.UNKNOWN_OP, f"{why}; this server knows: {known}")
    if len(frames) > lim.max_frames:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"{len(frames)} binary frames; this server takes at most {lim.max_frames} per request",
        )
    total = 0
    for i, f in enumerate(frames):
        total += len(f)
        if len(f) > lim.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"binary frame {i} has {len(f)} bytes; this server takes at most "
                f"{lim.max_frame_bytes} per frame",
            )
    if total > lim.max_request_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"the request has {total} bytes of frames; this server takes at most {lim.max_request_bytes}",
        )
    params = header.get("params", {})
    return Request(envelope, header["id"], op, params, list(frames))
