"""A QuPath project's slide jobs run on a runner (Ray workers) before the objects go in.

``stimage annotate-project --ray`` works in two steps. The project (paquo, or GeoJSON files)
stays with the driver, which alone reads annotations and saves images; the heavy part, each
image's resumable slide job (:func:`~stimage.pipelines.run_slide_job`), is what the workers
do, one image per task, writing the job stores into the work folder (on a file system all
workers see). Then the usual pass of :func:`~stimage.pipelines.annotate_project` finds each
store finished and only turns it into objects and saves the image. A job that failed on
every try is reported for its image, not tried again in the driver.
"""

from __future__ import annotations

import collections
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stimage.errors import StimageError
from stimage.pipelines._slide_job import SlideJobChangedError, run_slide_job

if TYPE_CHECKING:
    from stimage.models import Predictor
    from stimage.pipelines._cohort import Runner
    from stimage.pipelines._cohort_slide import ModelSpec

__all__ = ["ImageJob", "image_job_work", "run_image_jobs"]


@dataclass(frozen=True)
class ImageJob:
    """One image's slide job: what to tile (``area``: a shapely geometry, None for tissue)."""

    id: str
    slide: Path
    area: Any
    mpp: float | None
    folder: Path


def image_job_work(
    predictor: Predictor,
    job: ImageJob,
    progress: Callable[[int, int], None] | None,
    *,
    level: float,
    batch_size: int,
    chunk_batches: int,
) -> dict[str, Any]:
    """Run an image's slide job into its folder; a failure is returned as ``error``.

    As the driver would: a store made with other settings is started again.
    """
    worker = f"{platform.node()}:{os.getpid()}"

    def go(overwrite: bool) -> int:
        j = run_slide_job(predictor, job.slide, job.folder, region=job.area, mpp=job.mpp,
                          level=level, batch_size=batch_size, chunk_batches=chunk_batches,
                          overwrite=overwrite, progress=progress)  # fmt: skip
        return int(j.state["n_tiles"])

    try:
        try:
            tiles = go(False)
        except SlideJobChangedError:
            tiles = go(True)
    except (StimageError, OSError) as e:
        return {"error": f"{type(e).__name__}: {e}", "worker": worker}
    except Exception as e:  # noqa: BLE001 - an image's failure becomes its reason in the report
        return {"error": f"internal error {type(e).__name__}: {e}", "worker": worker}
    return {"tiles": tiles, "worker": worker}


def run_image_jobs(
    runner: Runner,
    model: ModelSpec,
    jobs: Sequence[ImageJob],
    level: float,
    batch_size: int,
    chunk_batches: int,
    *,
    retries: int = 2,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, str]:
    """Run the jobs on ``runner`` (each tried up to ``1 + retries`` times).

    Returns:
        Job id to the reason of its last failure, for the jobs that never succeeded.
    """
    if not jobs:
        return {}
    work = partial(image_job_work, level=level, batch_size=batch_size, chunk_batches=chunk_batches)
    queue = collections.deque(jobs)
    tries: collections.Counter[str] = collections.Counter()
    lost: dict[str, str] = {}
    finished = outstanding = 0
    runner.start(model, work)
    try:
        while queue or outstanding:
            while queue and outstanding < runner.slots:
                job = queue.popleft()
                tries[job.id] += 1
                runner.submit(job)
                outstanding += 1
            job, res = runner.next_result()
            outstanding -= 1
            if "error" in res and tries[job.id] <= retries:
                queue.append(job)
                continue
            if "error" in res:
                lost[job.id] = f"{res['error']} (after {tries[job.id]} tries)"
            finished += 1
            if progress is not None:
                progress("slide jobs", finished, len(jobs))
    finally:
        runner.close()
    return lost
