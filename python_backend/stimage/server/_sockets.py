"""The server's sockets.

The ROUTER that clients talk to (with CURVE when configured) and the inproc PULL that its
worker threads send replies through.
"""

from __future__ import annotations

import logging
from typing import Any

from stimage.errors import ConfigError
from stimage.server._config import ServerConfig, is_loopback, load_key_pair

__all__ = ["RCVHWM", "bind_router"]

logger = logging.getLogger(__name__)

#: Messages ZeroMQ queues per client before it stops reading from that client's connection
#: (a client that floods requests is held back by TCP, not by the server's memory).
RCVHWM = 16


def bind_router(ctx: Any, cfg: ServerConfig, endpoint: str) -> tuple[Any, Any, Any, str]:
    """Bind the ROUTER and the reply PULL socket.

    Returns:
        The router, the pull socket, the CURVE authenticator (or None) and the bound address.

    Raises:
        ConfigError: The address cannot be bound, or the CURVE keys are unusable.
    """
    import zmq

    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    lim = cfg.limits
    # ZeroMQ drops a connection that sends a frame over this size, before buffering it.
    router.setsockopt(zmq.MAXMSGSIZE, max(lim.max_frame_bytes, lim.max_header_bytes) + 4096)
    router.setsockopt(zmq.RCVHWM, RCVHWM)
    if ":" in cfg.host:
        router.setsockopt(zmq.IPV6, 1)
    auth = None
    if cfg.curve_keys is not None:
        auth = _curve(ctx, router, cfg)
    elif cfg.insecure and not is_loopback(cfg.host):
        logger.warning(
            "INSECURE: listening on %s without authentication or encryption; anyone who can "
            "reach this port can use the server and read its replies. Use --curve-keys instead.",
            cfg.host,
        )
    try:
        router.bind(cfg.bind_address)
    except zmq.ZMQError as e:
        router.close()
        if auth is not None:
            auth.stop()
        raise ConfigError(
            f"cannot listen on {cfg.bind_address}: {e}; is another server running there? "
            "pick another --port"
        ) from e
    address = router.getsockopt_string(zmq.LAST_ENDPOINT)
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(endpoint)
    return router, pull, auth, address


def _curve(ctx: Any, router: Any, cfg: ServerConfig) -> Any:
    """Make ``router`` a CURVE server that lets in the keys of ``curve_keys/authorized``."""
    from zmq.auth.thread import ThreadAuthenticator

    assert cfg.curve_keys is not None
    authorized = cfg.curve_keys / "authorized"
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        router.close()
        raise ConfigError(
            f"{authorized}: no authorised client keys (*.key); create keys with "
            "`stimage serve --make-keys DIR`"
        )
    public, secret = load_key_pair(cfg.curve_keys / "server.key_secret")
    if secret is None:
        router.close()
        raise ConfigError(f"{cfg.curve_keys / 'server.key_secret'} holds no secret key")
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(authorized))
    router.curve_secretkey = secret
    router.curve_publickey = public
    router.curve_server = True
    return auth
