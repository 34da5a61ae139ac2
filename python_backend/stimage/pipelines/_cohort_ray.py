"""The Ray runner of a cohort: one actor per worker, the model loaded once in each.

Ray (PyPI ``ray``, the ``stimage[ray]`` extra) is optional; without it the cohort runs
in-process. Each worker is an actor holding one :class:`~stimage.models.Predictor`; a slide
is one call on whichever actor is free, and its outputs are written by the actor straight
into the cohort folder, which must therefore be on a file system every node sees (as the
slides must be). Only the small result dict travels back to the driver, which alone writes
the ledger. A worker that dies (killed, out of memory, its node lost) fails only the slide it
held: the driver records the attempt, starts a fresh actor in its place and the slide goes
back in the queue; the slide's store keeps its finished chunks, so the next attempt resumes.

Nothing is sent anywhere: usage statistics are switched off before Ray starts
(``RAY_USAGE_STATS_ENABLED=0``) and a local cluster starts without its dashboard. Its
processes are Ray's own: they listen on this machine's interfaces, not only on loopback (Ray
2.60 turns 127.0.0.1 into the machine's address so that other nodes could join), guarded by
Ray's token authentication (on by default; the token is in ``~/.ray/auth_token``).
"""

from __future__ import annotations

import logging
import os
import platform
import socket
from pathlib import Path
from typing import Any

from stimage.errors import ConfigError, MissingDependencyError, StimageError
from stimage.pipelines._cohort_slide import ModelSpec, Work

__all__ = ["RayRunner", "import_ray"]

logger = logging.getLogger(__name__)

RAY_FIX = (
    "Ray is not installed: install it with `pip install 'stimage[ray]'` (or `pip install ray`), "
    "or leave out --ray to run in-process"
)


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`MissingDependencyError` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise MissingDependencyError(f"{RAY_FIX} ({e})") from None
    return ray


class _Worker:
    """A Ray actor's body: the model loaded once, then one task (a slide) per call."""

    def __init__(self, model: ModelSpec, work: Work) -> None:
        self.predictor = model.load()
        self.work = work

    def ready(self) -> int:
        return os.getpid()

    def run(self, task: Any) -> dict[str, Any]:
        return self.work(self.predictor, task, None)


class RayRunner:
    """Slides on a Ray cluster, one actor (and one model) per worker.

    Args:
        address: ``auto`` (a running cluster if there is one, else a local one on this
            machine), ``local`` (always a new local one), or a cluster's address
            (``ray://head:10001`` or ``head:6379``).
        workers: Actors to start (default: one per GPU of the cluster when the model runs
            on GPUs, else one per ``cpus_per_worker`` CPUs).
        cpus_per_worker: CPUs each actor reserves (its torch threads).
        gpus_per_worker: GPUs each actor reserves (default: 1 when the cluster has GPUs and
            the device is not ``cpu``, else 0).
        num_cpus: CPUs of a local cluster started here (default: all of this machine's).
        startup_timeout: Seconds the workers have to load the model.
    """

    def __init__(
        self,
        address: str = "auto",
        *,
        workers: int | None = None,
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float | None = None,
        num_cpus: int | None = None,
        startup_timeout: float = 600.0,
    ) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be at least 1, not {workers}")
        if address not in ("auto", "local"):
            _host_port(address)  # a malformed address is refused before anything starts
        self.address = address
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.num_cpus = num_cpus
        self.startup_timeout = startup_timeout
        self.slots = 0
        self._ray: Any = None
        self._started_ray = False
        self._actors: list[Any] = []
        self._pids: list[int | None] = []
        self._busy: dict[Any, tuple[int, Any]] = {}
        self._make: Any = None
        self._pending: dict[int, Any] = {}
        self.replaced = 0

    def _init(self) -> None:
        ray = self._ray = import_ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if ray.is_initialized():
            return
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address not in ("auto", "local"):
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, **kw)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise StimageError(
                    f"cannot reach the Ray cluster at {self.address} ({e}); check the head "
                    "node's address (`ray status` on it), or use --ray local"
                ) from e
        else:
            connected = False
            if self.address == "auto" and (
                os.environ.get("RAY_ADDRESS") or Path("/tmp/ray/ray_current_cluster").exists()
            ):
                try:
                    ray.init(address="auto", **kw)
                    connected = True
                except ConnectionError:
                    logger.info("no running Ray cluster found; starting a local one")
            if not connected:
                ray.init(num_cpus=self.num_cpus, **kw)
        self._started_ray = True

    def _worker_count(self, model: ModelSpec) -> tuple[int, float]:
        res = self._ray.cluster_resources()
        gpus = float(res.get("GPU", 0))
        gpw = self.gpus_per_worker
        if gpw is None:
            gpw = 1.0 if gpus >= 1 and (model.device or "").lower() != "cpu" else 0.0
        if self.workers is not None:
            return self.workers, gpw
        if gpw > 0:
            return max(1, int(gpus // gpw)), gpw
        return max(1, int(float(res.get("CPU", 1)) // self.cpus_per_worker)), gpw

    def start(self, model: ModelSpec, work: Work) -> None:
        """Start Ray (or join the cluster) and load the model on every worker."""
        self._init()
        ray = self._ray
        n, gpw = self._worker_count(model)
        actor = ray.remote(_Worker).options(
            num_cpus=self.cpus_per_worker, num_gpus=gpw, max_restarts=0
        )
        self._make = lambda: actor.remote(model, work)
        self._actors = [self._make() for _ in range(n)]
        try:
            self._pids = list(
                ray.get([a.ready.remote() for a in self._actors], timeout=self.startup_timeout)
            )
        except ray.exceptions.GetTimeoutError as e:
            self.close()
            raise StimageError(
                f"the {n} Ray worker(s) did not load the model in {self.startup_timeout:g} s; "
                "check that the cluster has the resources asked for (`ray status`)"
            ) from e
        except ray.exceptions.RayError as e:
            self.close()
            raise StimageError(
                f"a Ray worker could not load the model ({_cause(e)}); install stimage and the "
                "model on every node, with the same paths"
            ) from e
        self.slots = n
        logger.info("Ray: %d worker(s) ready (pids %s)", n, self._pids)

    def worker_pids(self) -> list[int | None]:
        """Process ids of the workers (None for a replacement not yet ready)."""
        for i, ref in list(self._pending.items()):
            done, _ = self._ray.wait([ref], timeout=0)
            if done:
                del self._pending[i]
                try:
                    self._pids[i] = self._ray.get(ref)
                except self._ray.exceptions.RayError as e:
                    logger.warning("Ray: a replacement worker failed to start (%s)", _cause(e))
        return list(self._pids)

    def busy_pids(self) -> list[int]:
        """Process ids of the workers holding a slide now."""
        pids = self.worker_pids()
        return [p for i, _ in self._busy.values() if (p := pids[i]) is not None]

    def submit(self, task: Any) -> None:
        """Give a task (a slide) to a free worker."""
        busy = {i for i, _ in self._busy.values()}
        i = next(k for k in range(len(self._actors)) if k not in busy)
        self._busy[self._actors[i].run.remote(task)] = (i, task)

    def next_result(self) -> tuple[Any, dict[str, Any]]:
        """Wait for the next slide to finish; a dead worker fails its slide and is replaced."""
        ray = self._ray
        ready, _ = ray.wait(list(self._busy), num_returns=1)
        i, spec = self._busy.pop(ready[0])
        try:
            return spec, ray.get(ready[0])
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
            worker = f"{platform.node()}:{self._pids[i]}"
            self._replace(i)
            return spec, {"error": f"worker lost ({type(e).__name__}); retried", "worker": worker}
        except ray.exceptions.RayError as e:
            return spec, {"error": f"Ray: {_cause(e)}", "worker": f"pid {self._pids[i]}"}

    def _replace(self, i: int) -> None:
        self.replaced += 1
        if self.replaced > 10 * max(1, len(self._actors)):
            raise StimageError(
                f"{self.replaced} Ray workers lost; stopping (a node or its memory is failing: "
                "see `ray status` and the worker logs in /tmp/ray/session_latest/logs)"
            )
        self._actors[i] = self._make()
        self._pids[i] = None  # known once it is ready (see worker_pids); its tasks wait till then
        self._pending[i] = self._actors[i].ready.remote()

    def close(self) -> None:
        """Stop the workers (and Ray, when this runner started it)."""
        ray = self._ray
        if ray is None:
            return
        for a in self._actors:
            try:
                ray.kill(a)
            except ray.exceptions.RayError as e:  # already gone
                logger.debug("Ray: %s", e)
        self._actors, self._busy, self._pending = [], {}, {}
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


def _host_port(address: str) -> tuple[str, int]:
    """The host and port of a cluster address (``HOST:PORT`` or ``ray://HOST:PORT``)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(
            f"--ray {address!r}: give auto, local, or the head's HOST:PORT (e.g. head:6379, "
            "or ray://head:10001 for Ray Client)"
        )
    return host.strip("[]"), int(port)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Refuse at once an address nothing listens on (Ray itself would retry for minutes)."""
    try:
        socket.create_connection(_host_port(address), timeout=timeout).close()
    except OSError as e:
        raise StimageError(
            f"cannot reach the Ray cluster at {address} ({e}); check that its head runs "
            "(`ray status` on it) and the address and port, or use --ray local"
        ) from None


def _cause(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:500]
