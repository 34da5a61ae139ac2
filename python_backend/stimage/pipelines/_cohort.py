"""A cohort of slides predicted one task per slide, in-process or on a Ray cluster, resumable.

:func:`run_cohort` is what ``stimage predict-slides`` does. Its output folder::

    OUT/cohort.json              the model, its manifest hash and the settings (their digest)
    OUT/ledger.jsonl             every attempt at every slide (see :class:`Ledger`)
    OUT/slides/<id>/             a finished slide: <id>.geojson, <id>.h5ad, <id>.heatmaps/,
                                 run_metadata.json; renamed into place whole
    OUT/work/<id>/               a slide in progress: its resumable store and staged outputs
    OUT/summary.csv              one row per slide of the manifest, rewritten at the end

Slides run as tasks on a *runner*: :class:`InProcessRunner` (the default: one worker, this
process, the model loaded once) or :class:`~stimage.pipelines.RayRunner` (one actor per
worker, each loading the model once; slides go to whichever worker is free). A slide that
fails is tried again up to ``retries`` times, at the back of the queue, then reported; the
others go on. The ledger is appended after every attempt, so an interrupted cohort, run again,
skips every slide whose ``done`` event has the same settings digest and whose folder exists,
and an interrupted slide resumes at the first missing chunk of its store.

Granularity: one task is one slide. A huge slide is still cut into chunks inside its task
(the slide job's store, ``chunk_batches`` batches each) so a killed worker loses at most one
chunk of it; spreading one slide's chunks over several workers is not done (see
docs/cohorts.md for the design it would take).
"""

from __future__ import annotations

import collections
import csv
import io
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from stimage.errors import ConfigError
from stimage.pipelines._cohort_ledger import Ledger
from stimage.pipelines._cohort_manifest import SlideSpec
from stimage.pipelines._cohort_slide import (
    CohortSettings,
    ModelSpec,
    RegionReader,
    Work,
    bundle_fingerprint,
    cohort_paths,
    cohort_work,
)

__all__ = [
    "CohortProgress",
    "InProcessRunner",
    "Runner",
    "SlideOutcome",
    "cohort_status",
    "run_cohort",
    "write_summary",
]

logger = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    "index", "id", "slide", "status", "attempts", "tiles", "seconds", "tiles_per_s",
    "error", "outputs", "model_id", "worker",
)  # fmt: skip


class Runner(Protocol):
    """Runs tasks (a slide, an image's job): ``slots`` at a time, results as they finish.

    A task is any picklable object with an ``id``; ``work(predictor, task, progress)`` does
    it and returns a dict, with ``error`` when it failed (it never raises for a task's
    failure). The model is loaded once per worker in :meth:`start`.
    """

    slots: int

    def start(self, model: ModelSpec, work: Work) -> None:
        """Load the model on every worker; ``work`` is what each task runs."""

    def submit(self, task: Any) -> None:
        """Start a task (at most ``slots`` outstanding)."""

    def next_result(self) -> tuple[Any, dict[str, Any]]:
        """The next finished task: ``(task, result)``, result with ``error`` on failure."""

    def close(self) -> None:
        """Stop the workers."""


class InProcessRunner:
    """One worker: this process, the model loaded once; tasks one after another.

    Args:
        tile_progress: Called with (task id, tiles done, tiles in all) while predicting.
    """

    slots = 1

    def __init__(self, tile_progress: Callable[[str, int, int], None] | None = None) -> None:
        self.tile_progress = tile_progress
        self._queue: collections.deque[Any] = collections.deque()
        self._predictor: Any = None
        self._work: Work | None = None

    def start(self, model: ModelSpec, work: Work) -> None:
        """Load the model (once, for every task)."""
        self._predictor, self._work = model.load(), work

    def submit(self, task: Any) -> None:
        """Queue a task (it runs in :meth:`next_result`)."""
        self._queue.append(task)

    def next_result(self) -> tuple[Any, dict[str, Any]]:
        """Run the queued task here and now."""
        task = self._queue.popleft()
        tp = self.tile_progress
        progress = None if tp is None else (lambda d, t: tp(task.id, d, t))
        assert self._work is not None, "start() first"
        return task, self._work(self._predictor, task, progress)

    def close(self) -> None:
        """Let the model go."""
        self._predictor = self._work = None


@dataclass
class SlideOutcome:
    """How a slide of the cohort ended in this run (``done``, ``failed`` or ``skipped``)."""

    index: int
    id: str
    slide: str
    status: str
    attempts: int = 0
    tiles: int = 0
    seconds: float = 0.0
    error: str = ""
    outputs: str = ""
    model_id: str = ""
    worker: str = ""


@dataclass
class CohortProgress:
    """Where a cohort run stands, after each finished attempt.

    Attributes:
        total: Slides of this run (skipped ones included).
        done: Slides finished in this run.
        failed: Slides that failed all their attempts.
        skipped: Slides finished before this run.
        retrying: Failed attempts to be tried again.
        tiles: Tiles of the slides finished in this run.
        elapsed: Seconds since the workers were ready.
        last: The outcome just known (None before any).
    """

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    retrying: int = 0
    tiles: int = 0
    elapsed: float = 0.0
    slots: int = 1
    last: SlideOutcome | None = None

    @property
    def tiles_per_s(self) -> float:
        """Tiles per second of the finished slides, all workers together."""
        return self.tiles / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def remaining(self) -> int:
        """Slides neither finished nor failed yet."""
        return self.total - self.done - self.failed - self.skipped

    @property
    def eta_s(self) -> float | None:
        """Seconds left at this run's pace so far (None before a slide has finished)."""
        finished = self.done + self.failed
        if not finished or self.elapsed <= 0:
            return None
        return self.remaining * self.elapsed / finished


def _check_cohort(out: Path, digest: str, record: dict[str, Any], overwrite: bool) -> None:
    """Record the cohort's model and settings, or refuse other ones (unless ``overwrite``)."""
    p = out / "cohort.json"
    if p.is_file() and p.stat().st_size < (1 << 20):
        try:
            old = json.loads(p.read_text())
        except ValueError:
            old = {}
        if isinstance(old, dict) and old.get("digest") not in (None, digest) and not overwrite:
            before = old.get("settings") or {}
            now = record["settings"]
            changed = [k for k in now if before.get(k) != now[k]]
            if old.get("model_hash") != record["model_hash"]:
                changed.insert(0, "model")
            raise ConfigError(
                f"{out}: holds a cohort run with other settings ({', '.join(changed) or 'settings'} "
                "changed); use the same ones to resume, --overwrite to redo every slide with "
                "these, or another --out"
            )
        if isinstance(old, dict) and old.get("digest") == digest:
            return
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"cohort.json.part-{os.getpid()}"
    tmp.write_text(json.dumps({**record, "digest": digest}, indent=2, default=str))
    os.replace(tmp, p)


def run_cohort(
    slides: Sequence[SlideSpec],
    out: str | os.PathLike[str],
    model: ModelSpec,
    settings: CohortSettings,
    *,
    runner: Runner | None = None,
    read_region: RegionReader | None = None,
    overwrite: bool = False,
    cohort: Sequence[SlideSpec] | None = None,
    on_progress: Callable[[CohortProgress], None] | None = None,
) -> list[SlideOutcome]:
    """Predict every slide not finished before, a task per slide, and write the summary.

    Args:
        slides: The cohort's slides (all of them: the summary covers every one; run a part with
            a subset, e.g. one slide per Slurm array task).
        out: The cohort's folder (ledger, slides, summary).
        model: The model every worker loads once.
        settings: Genes, heatmaps, intervals, batching, retries.
        runner: Where slides run (default: :class:`InProcessRunner`).
        read_region: Reads a manifest's region GeoJSON (needed when a slide has a region).
        overwrite: Redo slides finished before (also with other settings).
        cohort: Every slide of the manifest, for the summary (default: ``slides``).
        on_progress: Called after each finished attempt.

    Returns:
        One outcome per slide of ``slides``, in their order.

    Raises:
        ConfigError: ``out`` holds a cohort with other settings (and not ``overwrite``).
        KeyboardInterrupt: Interrupted (finished slides stay; run again to resume).
    """
    out = Path(out).absolute()  # workers elsewhere write here: no path relative to our cwd
    bundle = model.bundle()
    bundle.check_genes(list(settings.genes) if settings.genes else None)
    bundle.check_genes(list(settings.heatmaps) or None)
    digest = settings.digest(bundle)
    record = {
        "model": str(bundle.path),
        "model_name": bundle.name,
        "model_hash": bundle_fingerprint(bundle),
        "settings": settings.outputs_key(),
    }
    _check_cohort(out, digest, record, overwrite)
    ledger = Ledger(out / "ledger.jsonl")
    done_before = {} if overwrite else ledger.records(digest)
    outcomes: dict[str, SlideOutcome] = {}
    todo = []
    for s in slides:
        r = done_before.get(s.id)
        if r is not None and r.done is not None and cohort_paths(out, s.id)["folder"].is_dir():
            outcomes[s.id] = SlideOutcome(s.index, s.id, str(s.slide), "skipped", 0,
                                          int(r.done.get("tiles") or 0), 0.0, "",
                                          str(cohort_paths(out, s.id)["folder"]))  # fmt: skip
        else:
            todo.append(s)
    prog = CohortProgress(total=len(slides), skipped=len(slides) - len(todo))
    try:
        if todo:
            runner = runner or InProcessRunner()
            work = partial(cohort_work, out=out, settings=settings, read_region=read_region)
            runner.start(model, work)
            try:
                _schedule(todo, runner, ledger, (digest, settings.retries), prog, outcomes,
                          on_progress)  # fmt: skip
            finally:
                runner.close()
    finally:  # also when interrupted: the summary says what is done so far
        write_summary(out, cohort if cohort is not None else slides)
    return [outcomes[s.id] for s in slides if s.id in outcomes]


def _schedule(
    todo: list[SlideSpec],
    runner: Runner,
    ledger: Ledger,
    what: tuple[str, int],
    prog: CohortProgress,
    outcomes: dict[str, SlideOutcome],
    on_progress: Callable[[CohortProgress], None] | None,
) -> None:
    """Keep every worker busy; record each attempt; retry failures at the back of the queue."""
    digest, retries = what
    queue = collections.deque(todo)
    attempts: collections.Counter[str] = collections.Counter()
    outstanding = 0
    prog.slots = runner.slots
    t0 = time.perf_counter()
    while queue or outstanding:
        while queue and outstanding < runner.slots:
            spec = queue.popleft()
            attempts[spec.id] += 1
            ledger.append({"slide": spec.id, "event": "started", "attempt": attempts[spec.id],
                           "settings": digest})  # fmt: skip
            runner.submit(spec)
            outstanding += 1
        spec, res = runner.next_result()
        outstanding -= 1
        n = attempts[spec.id]
        o = SlideOutcome(spec.index, spec.id, str(spec.slide), "done", n,
                         worker=str(res.get("worker", "")))  # fmt: skip
        if "error" not in res:
            o.tiles, o.seconds = int(res["tiles"]), float(res["seconds"])
            o.outputs, o.model_id = str(res["folder"]), str(res["model_id"])
            ledger.append({"slide": spec.id, "event": "done", "attempt": n, "settings": digest,
                           **{k: res[k] for k in ("tiles", "seconds", "model_id", "worker")}})  # fmt: skip
            prog.done += 1
            prog.tiles += o.tiles
        else:
            final = n > retries
            o.status, o.error = ("failed" if final else "retrying"), str(res["error"])
            ledger.append({"slide": spec.id, "event": "failed", "attempt": n, "settings": digest,
                           "error": o.error, "final": final, "worker": o.worker})  # fmt: skip
            logger.info("%s: attempt %d failed: %s", spec.id, n, o.error)  # on_progress says it
            if final:
                prog.failed += 1
            else:
                queue.append(spec)
        prog.retrying = sum(1 for s in queue if attempts[s.id])
        outcomes[spec.id] = o
        prog.elapsed = time.perf_counter() - t0
        prog.last = o
        if on_progress is not None:
            on_progress(prog)


def cohort_status(out: str | os.PathLike[str], slides: Sequence[SlideSpec]) -> list[dict[str, Any]]:
    """Per slide, what the ledger says (for the current settings of ``OUT/cohort.json``).

    Status ``done``, ``failed`` (its last attempt failed), ``started`` (an attempt began and has
    no outcome yet: running now, or cut off by an interruption) or ``pending``.
    """
    out = Path(out)
    try:
        digest = json.loads((out / "cohort.json").read_text()).get("digest")
    except (OSError, ValueError, AttributeError):
        digest = None
    recs = Ledger(out / "ledger.jsonl").records(str(digest))
    rows = []
    for s in slides:
        r = recs.get(s.id)
        row: dict[str, Any] = {"index": s.index, "id": s.id, "slide": str(s.slide),
                               "status": "pending", "attempts": 0}  # fmt: skip
        if r is not None and r.done is not None:
            d = r.done
            secs = float(d.get("seconds") or 0.0)
            row.update(status="done", attempts=int(d.get("attempt") or 1), tiles=d.get("tiles"),
                       seconds=round(secs, 2), model_id=d.get("model_id"), worker=d.get("worker"),
                       outputs=str(cohort_paths(out, s.id)["folder"]),
                       tiles_per_s=round(float(d.get("tiles") or 0) / secs, 2) if secs else "")  # fmt: skip
            if not cohort_paths(out, s.id)["folder"].is_dir():
                row.update(status="pending", error="outputs missing; run again to redo")
        elif r is not None and r.started:
            row.update(status="started", attempts=r.attempts + 1, error=r.last_error)
        elif r is not None and r.attempts:
            last = [e for e in r.events if e["event"] == "failed"][-1]
            row.update(status="failed", attempts=r.attempts, error=r.last_error,
                       worker=last.get("worker"))  # fmt: skip
        rows.append(row)
    return rows


def write_summary(out: str | os.PathLike[str], slides: Sequence[SlideSpec]) -> Path:
    """Write ``OUT/summary.csv`` from the ledger, atomically (every writer sees it whole).

    The statuses follow the settings in ``OUT/cohort.json`` (see :func:`cohort_status`).
    """
    out = Path(out)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in cohort_status(out, slides):
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in SUMMARY_COLUMNS})
    p = out / "summary.csv"
    tmp = out / f"summary.csv.part-{os.getpid()}"
    tmp.write_text(buf.getvalue())
    os.replace(tmp, p)
    return p


def outcome_dict(o: SlideOutcome) -> dict[str, Any]:
    """An outcome as a plain dict (for JSON)."""
    return asdict(o)
