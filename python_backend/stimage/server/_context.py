"""What an operation may use of the server: the :class:`ServerContext` protocol.

Operations (:mod:`stimage.server.ops`) are written against this protocol, not against
:class:`~stimage.server.Server` itself, so the server imports its operations and nothing
imports back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from stimage.models import CellTypeClassifier, Predictor
    from stimage.server._batcher import Batcher
    from stimage.server._config import ServerConfig
    from stimage.server._images import StainCache
    from stimage.server._jobs import Job, Request

__all__ = ["ServerContext"]


class ServerContext(Protocol):
    """The parts of a running server an operation handler may use."""

    config: ServerConfig
    models: dict[str, Predictor]
    default_model: str
    device: str
    batcher: Batcher
    stain_cache: StainCache

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        ...

    @property
    def op_names(self) -> list[str]:
        """Names of the registered operations."""
        ...

    def admit(self, req: Request, deadline_s: float) -> Job:
        """Register a request as a job (``busy`` and duplicate ids are refused)."""
        ...

    def find_job(self, identity: bytes, request_id: str) -> Job | None:
        """The open job of a client's request."""
        ...

    def submit(self, job: Job, fn: Callable[..., Any], *args: Any) -> None:
        """Run a job's work on the prepare threads (a generator runs step by step)."""
        ...

    def submit_slide(self, job: Job, fn: Callable[..., Any], *args: Any) -> None:
        """Run a job's work on the slide-reading threads (a generator runs step by step)."""
        ...

    def submit_analysis(self, job: Job, fn: Callable[..., Any], *args: Any) -> None:
        """Run a job's long work (segmentation, explanations) on threads of their own."""
        ...

    def reply_result(self, req: Request, result: dict[str, Any]) -> None:
        """Answer a request on the spot (I/O thread)."""
        ...

    def cells_model(self) -> CellTypeClassifier:
        """The cell-type model of the ``cells`` op (loaded once, on first use)."""
        ...
