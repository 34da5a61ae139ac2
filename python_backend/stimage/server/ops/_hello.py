"""``hello`` (versions, models with their genes, limits), ``ping`` and ``cancel``: answered at once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from stimage._version import __version__
from stimage.server._protocol import PROTOCOL_VERSION, ErrorCode, validate

if TYPE_CHECKING:
    from stimage.server._context import ServerContext
    from stimage.server._jobs import Request

__all__ = ["op_cancel", "op_hello", "op_ping"]

logger = logging.getLogger(__name__)


def _model_info(server: ServerContext, name: str) -> dict[str, Any]:
    p = server.models[name]
    info: dict[str, Any] = {
        "name": name,
        "genes": list(p.bundle.genes),
        "tile_um": p.tile_um,
        "tile_px": p.tile_px,
        "stain": p.bundle.tiles.get("stain") or None,
        "encoders": list(p.bundle.encoders),
        "default": name == server.default_model,
    }
    if p.bundle.classifier is not None:
        info["classifier_genes"] = list(p.bundle.classifier.genes)
    if p.bundle.description:
        info["description"] = p.bundle.description
    if p.context is not None:
        info["context_um"] = p.context.reach_um
    rel = p.bundle.gene_reliability()
    if any(r["pcc"] is not None for r in rel.values()):
        info["gene_pcc"] = {g: r["pcc"] for g, r in rel.items()}
        info["unreliable_genes"] = p.bundle.unreliable_genes()
    return info


def op_hello(server: ServerContext, req: Request) -> None:
    """Versions, models with their genes and tile size, limits."""
    validate(req.params, "params_hello", "params")
    client = req.params.get("client")
    if client:
        logger.info("hello from %s %s", client.get("name", "?"), client.get("version", ""))
    server.reply_result(
        req,
        {
            "server": "stimage",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "protocols": [PROTOCOL_VERSION],
            "ops": sorted(server.op_names),
            "models": [_model_info(server, name) for name in server.models],
            "limits": server.config.limits.to_dict(),
            "device": server.device,
            "slide_paths": bool(server.config.allow_roots),
        },
    )


def op_ping(server: ServerContext, req: Request) -> None:
    """Liveness check."""
    validate(req.params, "params_ping", "params")
    server.reply_result(req, {"pong": True})


def op_cancel(server: ServerContext, req: Request) -> None:
    """Cancel a request of the same client; it ends with a ``cancelled`` error."""
    validate(req.params, "params_cancel", "params")
    target = req.params["target"]
    job = server.find_job(req.identity, target)
    done = job is not None and job.fail(ErrorCode.CANCELLED, "cancelled by the client")
    if done:
        server.batcher.wake()
    server.reply_result(req, {"target": target, "cancelled": bool(done)})
