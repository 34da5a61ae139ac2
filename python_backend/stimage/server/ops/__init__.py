"""Operations of protocol v1: one module per operation, in a registry.

A handler runs on the I/O thread and must return quickly: it checks its parameters (cheap
checks with hard caps), then replies at once (``hello``, ``ping``, ``cancel``) or admits a job
and hands the work to worker threads (``predict``, ``cells``, ``explain``), which call the
pipelines (:mod:`stimage.pipelines`). Errors are raised as :class:`ProtocolError` and become
error replies. Handlers see the server through :class:`~stimage.server._context.ServerContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stimage.server.ops._cells import cells_result, op_cells
from stimage.server.ops._common import confine_path
from stimage.server.ops._explain import op_explain
from stimage.server.ops._hello import op_cancel, op_hello, op_ping
from stimage.server.ops._predict import finish_predict, op_predict, tile_ok

if TYPE_CHECKING:
    from stimage.server._context import ServerContext
    from stimage.server._jobs import Request

__all__ = [
    "UNAVAILABLE_OPS",
    "Handler",
    "Op",
    "cells_result",
    "confine_path",
    "default_ops",
    "finish_predict",
    "tile_ok",
]

Handler = Callable[["ServerContext", "Request"], None]


@dataclass(frozen=True)
class Op:
    """A registered operation: its name and handler."""

    name: str
    handler: Handler


#: Operations planned in the protocol whose engine this server does not provide (yet).
#: (Empty: this package implements every op of protocol v1; kept for servers built without one.)
UNAVAILABLE_OPS: dict[str, str] = {}


def default_ops() -> dict[str, Op]:
    """The operations of protocol v1 this package implements."""
    ops = [
        Op("hello", op_hello),
        Op("ping", op_ping),
        Op("cancel", op_cancel),
        Op("predict", op_predict),
        Op("cells", op_cells),
        Op("explain", op_explain),
    ]
    return {o.name: o for o in ops}
