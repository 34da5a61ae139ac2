"""The connection under :class:`stimage.server.client.Client`: one DEALER socket, requests, cancel.

A fresh socket first pings the server and waits at most ``connect_timeout`` seconds for any
answer, so a client pointed at an address where no server listens says so within seconds
(ZeroMQ itself would wait silently for a server to appear). After that, a server that stops
answering is reported as ``disconnected`` once no reply or heartbeat came for
``heartbeat_timeout`` seconds; the next request then reconnects with a fresh socket.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from stimage.errors import ConfigError
from stimage.server._config import DEFAULT_PORT, load_key_pair
from stimage.server._protocol import ErrorCode, ServerError, encode_header, request_header

__all__ = ["DEFAULT_ADDRESS", "Connection"]

logger = logging.getLogger(__name__)

DEFAULT_ADDRESS = f"tcp://127.0.0.1:{DEFAULT_PORT}"
_POLL_MS = 50
#: ZeroMQ monitor events of a handshake that failed (bad or missing keys on one side).
_HANDSHAKE_FAILED = (
    0x0800  # EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | 0x2000  # EVENT_HANDSHAKE_FAILED_PROTOCOL
    | 0x4000  # EVENT_HANDSHAKE_FAILED_AUTH
)


def _attach_arrays(result: dict[str, Any], frames: Sequence[bytes]) -> dict[str, Any]:
    """Replace ``{"frame": k, "dtype": ..., "shape": ...}`` entries by numpy arrays of those frames."""
    for key, v in list(result.items()):
        if isinstance(v, dict) and set(v) == {"frame", "dtype", "shape"}:
            k, shape = int(v["frame"]), tuple(int(n) for n in v["shape"])
            if not 0 <= k < len(frames):
                raise ServerError(
                    ErrorCode.BAD_REQUEST,
                    f"the reply refers to binary frame {k}; it has {len(frames)}",
                )
            result[key] = np.frombuffer(frames[k], dtype=np.dtype(str(v["dtype"]))).reshape(shape)
    return result


def _parse(reply: Sequence[bytes]) -> dict[str, Any] | None:
    """The JSON header of a reply, or None when it is not a JSON object."""
    try:
        msg = json.loads(reply[0])
    except (ValueError, UnicodeDecodeError):
        logger.warning("ignoring a reply that is not JSON")
        return None
    return msg if isinstance(msg, dict) else None


class Connection:
    """A DEALER socket to a stimage server: requests, their replies, and cancel.

    Methods may be called from one thread at a time, except :meth:`cancel`, which may be
    called from any thread while another waits. The arguments are those of
    :class:`~stimage.server.client.Client`.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float = 600.0,
        heartbeat_timeout: float = 15.0,
        curve_keys: str | os.PathLike[str] | None = None,
        server_public_key: bytes | None = None,
        client_keys: tuple[bytes, bytes] | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        import zmq

        if timeout <= 0 or heartbeat_timeout <= 0 or connect_timeout <= 0:
            raise ConfigError("timeout, heartbeat_timeout and connect_timeout must be positive")
        _check_address(address)
        self.address = address
        self.timeout = timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.connect_timeout = connect_timeout
        if curve_keys is not None:
            folder = Path(curve_keys).expanduser()
            server_public_key, _ = load_key_pair(folder / "server.key")
            pub, sec = load_key_pair(folder / "client.key_secret")
            if sec is None:
                raise ConfigError(f"{folder / 'client.key_secret'} holds no secret key")
            client_keys = (pub, sec)
        if (server_public_key is None) != (client_keys is None):
            raise ConfigError("CURVE needs both the server's public key and the client's key pair")
        self._curve: tuple[bytes, tuple[bytes, bytes]] | None = (
            (server_public_key, client_keys)
            if server_public_key is not None and client_keys is not None
            else None
        )
        self._ctx = zmq.Context()
        self._sock: Any = None
        self._lock = threading.Lock()
        self._cancels: dict[str, threading.Event] = {}

    # -- connection ----------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket and the context."""
        with self._lock:
            self._reset()
            self._ctx.term()

    def _socket(self) -> Any:
        """The connected socket; a new one is made and checked for an answering server."""
        import zmq

        if self._sock is None:
            s = self._ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            # a send that finds no peer gives up (zmq.Again) instead of waiting for ever
            s.setsockopt(zmq.SNDTIMEO, max(1, int(self.heartbeat_timeout * 1000)))
            if self._curve is not None:
                server_key, (pub, sec) = self._curve
                s.curve_serverkey = server_key
                s.curve_publickey = pub
                s.curve_secretkey = sec
            try:
                s.connect(self.address)
            except zmq.ZMQError as e:
                s.close(linger=0)  # an unclosed socket would hang the context's term()
                raise ConfigError(
                    f"cannot connect to {self.address!r} ({e}); give tcp://HOST:PORT, e.g. "
                    "tcp://127.0.0.1:5557"
                ) from e
            self._sock = s
            try:
                self._await_server(s)
            except BaseException:
                self._reset()
                raise
        return self._sock

    def _await_server(self, sock: Any) -> None:
        """Ping through a new socket; any answer within ``connect_timeout`` s will do.

        Raises:
            ServerError: ``disconnected``: nothing answered.
        """
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        rid = uuid.uuid4().hex
        mon = sock.get_monitor_socket(_HANDSHAKE_FAILED)
        try:
            ping = [encode_header(request_header(rid, "ping", None))]
            wait = min(self.connect_timeout, self.heartbeat_timeout)
            until = time.monotonic() + wait
            sent = False
            while time.monotonic() < until:
                if mon.poll(0, zmq.POLLIN):
                    event = recv_monitor_message(mon)["event"]
                    raise ServerError(ErrorCode.DISCONNECTED, self._handshake_message(event))
                if not sent:
                    # Never a blocking send: while a refused handshake has dropped the
                    # connection and ZeroMQ has not made the next, a DEALER has no peer and a
                    # plain send would wait for one forever.
                    try:
                        sock.send_multipart(ping, flags=zmq.NOBLOCK)
                        sent = True
                    except zmq.Again:
                        time.sleep(_POLL_MS / 1000)
                        continue
                if sock.poll(_POLL_MS, zmq.POLLIN):
                    msg = _parse(sock.recv_multipart())
                    if msg is not None and msg.get("id") == rid:
                        return
        finally:
            sock.disable_monitor()
            mon.close(linger=0)
        keys = " (or it does not accept this client's keys)" if self._curve is not None else ""
        raise ServerError(
            ErrorCode.DISCONNECTED,
            f"no stimage server answers at {self.address}{keys} within {wait:g} s; start one "
            "with `stimage serve`, or check the address",
        )

    def _handshake_message(self, event: int) -> str:
        """What a failed ZeroMQ handshake means, and what to do about it."""
        import zmq

        at = f"the server at {self.address}"
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return (
                f"{at} refused this client's key: add its public key (client.key, beside the "
                "client.key_secret given) to the server's --curve-keys folder, authorized/, "
                "or use the key files made with the server's keys"
            )
        # A refused protocol and a handshake cut short (timing decides which one a client
        # sees) both mean keys on one side only, or the wrong server key.
        if self._curve is None:
            return (
                f"the handshake with {at} failed: it expects CURVE keys (started with "
                "--curve-keys DIR): give this client DIR's server.key and a client.key_secret "
                "(curve_keys=DIR, or `stimage client --curve-keys DIR`); or what listens there "
                "is not a stimage server"
            )
        return (
            f"the CURVE handshake with {at} failed: the server key given is not this "
            "server's (use the server.key of the folder it was started with, --curve-keys "
            "DIR), this client's key is not authorised there, or the server runs without "
            "--curve-keys (then connect without keys)"
        )

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    # -- requests ------------------------------------------------------------------------
    def request(
        self,
        op: str,
        params: dict[str, Any] | None = None,
        frames: Sequence[bytes] = (),
        *,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request and wait for its result.

        Args:
            op: Operation name.
            params: Its parameters.
            frames: Binary frames referenced by the parameters.
            progress: Called with ``(done, total)`` on progress events.
            cancel: Setting this event cancels the request (it then raises ``cancelled``).
            timeout: Seconds (default: the client's ``timeout``).

        Returns:
            The ``result`` object of the result reply.

        Raises:
            ServerError: The error reply, or ``disconnected`` / ``deadline`` decided here.
        """
        rid = uuid.uuid4().hex
        header = request_header(rid, op, params)
        event = cancel or threading.Event()
        with self._lock:
            self._cancels[rid] = event
            try:
                return self._exchange(rid, header, frames, progress, event, timeout or self.timeout)
            finally:
                self._cancels.pop(rid, None)

    def _exchange(
        self,
        rid: str,
        header: dict[str, Any],
        frames: Sequence[bytes],
        progress: Callable[[int, int], None] | None,
        cancel: threading.Event,
        timeout: float,
    ) -> dict[str, Any]:
        import zmq

        sock = self._socket()
        try:
            sock.send_multipart([encode_header(header), *frames], copy=False)
        except zmq.Again:  # no peer for heartbeat_timeout s (SNDTIMEO): the server went away
            self._reset()
            raise ServerError(
                ErrorCode.DISCONNECTED,
                f"could not send to {self.address} for {self.heartbeat_timeout:g} s: the server "
                "stopped, restarted or is unreachable; the next request reconnects",
            ) from None
        start = last = time.monotonic()
        cancel_sent = False
        while True:
            now = time.monotonic()
            if cancel.is_set() and not cancel_sent:
                self._send_cancel(sock, rid)
                cancel_sent, last = True, now
            if now - start > timeout + self.heartbeat_timeout:
                if not cancel_sent:
                    self._send_cancel(sock, rid)
                raise ServerError(ErrorCode.DEADLINE, f"no result within {timeout:g} s")
            if now - last > self.heartbeat_timeout:
                self._reset()
                raise ServerError(
                    ErrorCode.DISCONNECTED,
                    f"no reply or heartbeat from {self.address} for {self.heartbeat_timeout:g} s: the "
                    "server stopped, restarted or is unreachable; the next request reconnects",
                )
            if not sock.poll(_POLL_MS, zmq.POLLIN):
                continue
            reply = sock.recv_multipart()
            msg = _parse(reply)
            if msg is None or msg.get("id") != rid:
                continue  # a late reply of an earlier, abandoned request
            last = time.monotonic()
            kind = msg.get("kind")
            if kind == "progress":
                if progress is not None:
                    progress(int(msg.get("done", 0)), int(msg.get("total", 0)))
            elif kind == "result":
                return _attach_arrays(dict(msg.get("result") or {}), reply[1:])
            elif kind == "error":
                raise ServerError(str(msg.get("code")), str(msg.get("message")), msg.get("details"))

    def _send_cancel(self, sock: Any, rid: str) -> None:
        import zmq

        hdr = request_header(f"{rid}-cancel", "cancel", {"target": rid})
        try:
            sock.send_multipart([encode_header(hdr)], flags=zmq.NOBLOCK)
        except zmq.Again:  # no peer to tell: the caller's deadline or disconnect follows
            logger.debug("cancel of %s not sent: no connection to %s", rid, self.address)

    def cancel(self, request_id: str) -> bool:
        """Cancel a request of this client.

        Called from another thread while that request is waiting, it makes the waiting
        call send the cancel (and raise ``cancelled``). Otherwise it asks the server.

        Returns:
            Whether a request in flight was cancelled (or will be, for a waiting call).
        """
        event = self._cancels.get(request_id)
        if event is not None:
            event.set()
            return True
        return bool(self.request("cancel", {"target": request_id}, timeout=30).get("cancelled"))


def _check_address(address: str) -> None:
    """Refuse what ZeroMQ cannot connect to, before any socket exists.

    Raises:
        ConfigError: Not ``tcp://HOST:PORT`` (nor ``ipc://`` / ``inproc://``).
    """
    import re

    if re.fullmatch(r"(ipc|inproc)://.+", address):
        return
    m = re.fullmatch(r"tcp://(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d{1,5})", address)
    if m is None or not 0 < int(m.group(2)) < 65536:
        raise ConfigError(
            f"{address!r} is not a server address; give tcp://HOST:PORT, e.g. tcp://127.0.0.1:5557 "
            "(the address `stimage serve` prints)"
        )
