"""Cohorts: slides per hour in-process and on a local Ray cluster with 1 and 2 workers.

    .venv/bin/python benchmarks/bench_cohort.py [--slides 6] [--size 2400x3000] [--json out.json]

Writes ``--slides`` synthetic H&E slides (tests/_synth.py, 0.5 µm/px) and predicts the same
cohort with the bundled default model (``stimage predict-slides``' engine,
:func:`stimage.pipelines.run_cohort`) three ways, one after another in this one run:

* in-process (this process, torch on all this machine's cores);
* Ray, 1 worker reserving 2 CPUs (torch on 2 threads, as in-process): the overhead of Ray;
* Ray, 2 workers of 1 CPU each: the speed-up of a second worker (the ratio to 1 worker).

The three run in turn ``--repeats`` times (medians reported), so they share the machine's
load. Each is timed whole (model loading included) and from the workers being ready to the last
slide written (steady state, what a long cohort's rate tends to); the Ray cluster's own start
is timed apart. The load average is recorded before and after each run: the machine is
shared, so read the numbers with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


class _Timed:
    """A runner wrapper noting when its workers are ready (the model loaded everywhere)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ready_at = 0.0

    @property
    def slots(self) -> int:
        return self.inner.slots

    def start(self, model: Any, work: Any) -> None:
        self.inner.start(model, work)
        self.ready_at = time.perf_counter()

    def submit(self, task: Any) -> None:
        self.inner.submit(task)

    def next_result(self) -> Any:
        return self.inner.next_result()

    def close(self) -> None:
        self.inner.close()


def _run(name: str, runner: Any, specs: list, out: Path) -> dict[str, Any]:
    from stimage.pipelines import CohortSettings, ModelSpec, run_cohort

    timed = _Timed(runner)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    outcomes = run_cohort(specs, out, ModelSpec(None, "cpu"), CohortSettings(), runner=timed)
    t1 = time.perf_counter()
    done = [o for o in outcomes if o.status == "done"]
    if len(done) != len(specs):
        raise SystemExit(f"{name}: {len(specs) - len(done)} slide(s) failed: {outcomes}")
    tiles = sum(o.tiles for o in done)
    steady = t1 - timed.ready_at
    r = {
        "run": name,
        "slides": len(done),
        "tiles": tiles,
        "total_s": round(t1 - t0, 1),
        "startup_s": round(timed.ready_at - t0, 1),
        "steady_s": round(steady, 1),
        "slides_per_hour": round(len(done) * 3600 / steady, 1),
        "slides_per_hour_total": round(len(done) * 3600 / (t1 - t0), 1),
        "tiles_per_s": round(tiles / steady, 2),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(r), flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--slides", type=int, default=6)
    ap.add_argument("--size", default="2400x3000", help="HxW in pixels at 0.5 µm/px")
    ap.add_argument("--repeats", type=int, default=2, help="rounds of the three ways")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from _synth import render_he, write_pyramid_tiff
    from stimage.pipelines import InProcessRunner, RayRunner, cohort_slides

    h, w = (int(v) for v in args.size.split("x"))
    root = Path(tempfile.mkdtemp(prefix="bench_cohort_"))
    try:
        slides = root / "slides"
        slides.mkdir()
        for k in range(args.slides):
            write_pyramid_tiff(slides / f"s{k:02d}.tif", render_he(h, w, seed=100 + k), 0.5)
        specs = cohort_slides(slides)
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = round(time.perf_counter() - t0, 1)
        runs: list[dict[str, Any]] = []
        try:
            for rep in range(args.repeats):  # interleaved, so each way sees the same load
                runs.append(_run("in-process", InProcessRunner(), specs, root / f"inproc{rep}"))
                one = RayRunner(workers=1, cpus_per_worker=2)
                runs.append(_run("ray, 1 worker x 2 CPUs", one, specs, root / f"ray1-{rep}"))
                two = RayRunner(workers=2, cpus_per_worker=1)
                runs.append(_run("ray, 2 workers x 1 CPU", two, specs, root / f"ray2-{rep}"))
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def med(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs if r["run"] == name))

    names = ["in-process", "ray, 1 worker x 2 CPUs", "ray, 2 workers x 1 CPU"]
    medians = {n: {k: med(n, k) for k in ("total_s", "startup_s", "steady_s",
                                          "slides_per_hour", "tiles_per_s")} for n in names}  # fmt: skip
    inproc, r1, r2 = (medians[n] for n in names)
    summary = {
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "python": sys.version.split()[0],
        "ray": ray.__version__,
        "slide_px": [h, w],
        "repeats": args.repeats,
        "ray_cluster_start_s": ray_start,
        "medians": medians,
        "runs": runs,
        "ratio_2_to_1_workers": round(r2["slides_per_hour"] / r1["slides_per_hour"], 2),
        "ray_overhead_steady": round(r1["steady_s"] / inproc["steady_s"] - 1, 3),
        "ray_overhead_total": round((r1["total_s"] + ray_start) / inproc["total_s"] - 1, 3),
        "load_range": [min(r["load_before"] for r in runs), max(r["load_after"] for r in runs)],
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
