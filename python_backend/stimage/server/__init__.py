"""The stimage backend over ZeroMQ: protocol v1, the server and a Python client.

The server (``stimage serve``) loads models once and answers requests from QuPath or
scripts on a ROUTER socket: ``hello``, ``ping``, ``predict`` (tiles sent by the client, or a
region of a slide file the server may read) and ``cancel``. The protocol is described in
``docs/protocol.md`` and its JSON Schema ships as ``protocol_v1.schema.json``.

Example:
    >>> from stimage.server import Server, ServerConfig
    >>> from stimage.server.client import Client
    >>> with Server(["my_model"], ServerConfig(port=0)) as server:  # doctest: +SKIP
    ...     print(Client(server.address).hello()["models"][0]["genes"][:3])
"""

from stimage.server._config import DEFAULT_PORT, Limits, ServerConfig, is_loopback, make_keys
from stimage.server._protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    ProtocolError,
    ServerError,
    load_schema,
    validate,
)
from stimage.server._server import Server

__all__ = [
    "DEFAULT_PORT",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "Limits",
    "ProtocolError",
    "Server",
    "ServerConfig",
    "ServerError",
    "is_loopback",
    "load_schema",
    "make_keys",
    "validate",
]
