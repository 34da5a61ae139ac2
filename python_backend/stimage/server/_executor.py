"""Worker threads shared fairly between clients.

A :class:`FairExecutor` keeps one queue of work per client and serves the clients in turn, so
one client's many requests (or one huge request) cannot hold every worker while another
client's single tile waits. Work is a plain call, or a generator: a generator runs one step
(up to its next ``yield``) at a time and then goes to the back of its client's line, which is
how a request decoding hundreds of tiles lets others through between tiles. A step that
yields :data:`WAIT` has nothing to do yet (its device queue is full): it is retried after a
short pause without holding a worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Hashable
from typing import Any

__all__ = ["WAIT", "FairExecutor"]

logger = logging.getLogger(__name__)

#: Yielded by a step that cannot go on yet; the work is retried after :data:`_WAIT_S`.
WAIT = object()
_WAIT_S = 0.02

Work = Generator[Any, None, None]


class FairExecutor:
    """Threads that run work round-robin over clients.

    Args:
        threads: Worker threads.
        name: Thread name prefix.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._cond = threading.Condition()
        self._queues: OrderedDict[Hashable, deque[tuple[float, Work]]] = OrderedDict()
        self._running = True
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, client: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` for ``client`` (a generator function runs step by step).

        Raises:
            RuntimeError: The executor is shut down.
        """
        with self._cond:
            if not self._running:
                raise RuntimeError("the server is stopping")
            self._queues.setdefault(client, deque()).append((0.0, _as_steps(fn, args)))
            self._cond.notify()

    @property
    def pending(self) -> int:
        """Work items queued (not running)."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop taking work, drop what is queued and wait for running steps to end."""
        with self._cond:
            self._running = False
            dropped = [w for q in self._queues.values() for _, w in q]
            self._queues.clear()
            self._cond.notify_all()
        for w in dropped:
            w.close()
        for t in self._threads:
            t.join(timeout)

    def _next(self) -> tuple[Hashable, Work] | None:
        """The next runnable work, taking clients in turn (under the lock)."""
        while self._running:
            now = time.monotonic()
            soonest = None
            for client in list(self._queues):
                q = self._queues[client]
                for k, (ready_at, work) in enumerate(q):
                    if ready_at <= now:
                        del q[k]
                        # This client goes to the back of the line.
                        self._queues.move_to_end(client)
                        if not q:
                            del self._queues[client]
                        return client, work
                    soonest = ready_at if soonest is None else min(soonest, ready_at)
            self._cond.wait(None if soonest is None else max(soonest - now, 0.001))
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                got = self._next()
            if got is None:
                return
            client, work = got
            try:
                out = next(work)
            except StopIteration:
                continue
            except Exception:  # the work's own handler failed: never lose the thread
                logger.exception("a server task failed")
                continue
            ready_at = time.monotonic() + (_WAIT_S if out is WAIT else 0.0)
            with self._cond:
                if not self._running:
                    work.close()
                    return
                self._queues.setdefault(client, deque()).append((ready_at, work))
                self._cond.notify()


def _as_steps(fn: Callable[..., Any], args: tuple[Any, ...]) -> Work:
    """Work as steps: a generator function's generator, or one step calling ``fn``."""
    import inspect

    if inspect.isgeneratorfunction(fn):
        gen: Work = fn(*args)
        return gen

    def once() -> Work:
        fn(*args)
        return
        yield  # makes this a generator: one step that runs fn, then done

    return once()
