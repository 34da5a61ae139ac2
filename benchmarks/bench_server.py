"""Tiles per second through `stimage serve` against calling the model in process; latency of a
16-tile request; server memory over a long run.

    .venv/bin/python benchmarks/bench_server.py [--model DIR | --make-model DIR]
        [--her2st ../shared/data/her2st] [--section B4] [--tiles 512] [--clients 4]
        [--request-tiles 64] [--batch-size 64] [--device auto] [--long-run-s 120]

Tiles are real H&E (one HER2ST section, cut around its spots at the model's µm and px, then
PNG-encoded as the Python client sends them); without HER2ST, synthetic H&E from tests/_synth.

1. In process (this process, before the server starts): the model alone on normalised tiles
   (``Predictor.predict_tiles`` in batches), and the whole pipeline the server runs per tile
   (PNG decode, stain fit once for the image, normalisation, model), sequentially.
2. Through the server (a ``stimage serve`` subprocess on loopback): ``--clients`` threads
   with one :class:`Client` each send ``--request-tiles``-tile requests with one image id
   until ``--tiles`` tiles are predicted; tiles/s over the wall time, and its ratio to 1.
3. Round-trip latency of a 16-tile request from one client on the idle server (median, p95).
4. Memory: the server's resident set size sampled every few seconds while the clients keep
   sending 16-tile requests for ``--long-run-s`` seconds; growth after the first quarter.

``--make-model DIR`` trains a model of the default model's shape (EfficientNet-Lite0, 200 µm
tiles at 224 px, Vahadane) on two HER2ST sections, for machines without the bundled model:
throughput depends on the encoder and the tile size, not on the genes.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _machine() -> str:
    import torch

    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {mem:.0f} GiB RAM, {gpu}; Python "
        f"{platform.python_version()}, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )


def make_model(her2st: Path, out: Path) -> Path:
    from stimage.data import load_dataset
    from stimage.models import NBEnsembleConfig, NBGLMConfig
    from stimage.tiles import TileSettings, TileStore, prepare_dataset
    from stimage.training import TrainConfig, train_model

    if (out / "manifest.json").exists():
        return out
    store_dir = out.parent / (out.name + "-store")
    ds = load_dataset(her2st)
    sections = [s.sample_id for s in ds][:2]
    if not (store_dir / "store.json").exists():
        prepare_dataset(ds.select(sections), store_dir, TileSettings())
    cfg = TrainConfig(
        encoders=("efficientnet_lite0",),
        gene_sets=("mean250",),
        # A quick fit: the head's cost at prediction time does not depend on its penalty.
        ensemble=NBEnsembleConfig(
            members=3, pca_dim=64, glm=NBGLMConfig(l2=(100.0,), max_iter=100)
        ),
        name="bench-efficientnet-lite0",
        description="benchmark model: the default model's encoder and tiles, 2 HER2ST sections",
    )
    train_model(TileStore(store_dir), cfg, sections).save(out)
    return out


def load_tiles(
    her2st: Path | None, section: str, tile_um: float, tile_px: int, n: int
) -> tuple[list, str]:
    import numpy as np

    if her2st is not None and her2st.is_dir():
        from stimage.constants import Key
        from stimage.data import open_sample_slide, read_her2st

        sample = read_her2st(her2st, section)
        with open_sample_slide(sample) as slide:
            xy = sample.obsm[Key.SPATIAL]
            tiles = [
                slide.read_um(float(x), float(y), tile_um, tile_px)
                for x, y in xy[: min(n, len(xy))]
            ]
        src = f"HER2ST section {section}"
    else:
        sys.path.insert(0, str(REPO / "tests"))
        from _synth import render_he

        tiles = [
            render_he(tile_px, tile_px, np.ones((tile_px, tile_px), bool), seed=i)
            for i in range(min(n, 64))
        ]
        src = "synthetic H&E (tests/_synth.py)"
    out = [tiles[i % len(tiles)] for i in range(n)]
    return out, src


class InProcess:
    """The reference: the same model called in this process."""

    def __init__(self, model: Path, device: str | None, tiles: list, batch: int) -> None:
        import numpy as np

        from stimage.models import Predictor
        from stimage.server._images import pick_stain_tiles
        from stimage.tiles import StainNormalizer

        self.p = Predictor(model, device=device)
        self.batch = batch
        self.p.predict_tiles(np.stack(tiles[:batch]))  # warm-up
        b = self.p.bundle
        self.target = StainNormalizer.from_dict(b.stain_target) if b.tiles.get("stain") else None
        norm = (
            self.target.copy().fit_source(pick_stain_tiles(tiles[:batch])) if self.target else None
        )
        self.normalised = np.stack([norm.transform(t) for t in tiles]) if norm else np.stack(tiles)

    def model_only(self) -> float:
        """Tiles/s of the model alone on normalised tiles."""
        t0 = time.perf_counter()
        for b in range(0, len(self.normalised), self.batch):
            self.p.predict_tiles(self.normalised[b : b + self.batch])
        return len(self.normalised) / (time.perf_counter() - t0)

    def pipeline(self, encoded: list[bytes]) -> float:
        """Tiles/s of PNG decode + stain fit (once) + normalisation + model, sequentially."""
        import numpy as np

        from stimage.server._images import decode_tile, pick_stain_tiles

        t0 = time.perf_counter()
        fitted = None
        for b in range(0, len(encoded), self.batch):
            dec = [decode_tile(e, 4096) for e in encoded[b : b + self.batch]]
            if self.target is not None and fitted is None:
                fitted = self.target.copy().fit_source(pick_stain_tiles(dec))
            if fitted is not None:
                dec = [fitted.transform(t) for t in dec]
            self.p.predict_tiles(np.stack(dec))
        return len(encoded) / (time.perf_counter() - t0)


def _requests(
    address: str, encoded: list[bytes], size: int, mpp: float, clients: int, *, total: int | None = None,
    seconds: float | None = None, on_request=None,
) -> tuple[float, int]:  # fmt: skip
    """Send requests of ``size`` tiles from ``clients`` threads; return (wall seconds, tiles)."""
    from stimage.server.client import Client

    lock = threading.Lock()
    state = {"sent": 0, "done": 0, "requests": 0}
    end = time.perf_counter() + seconds if seconds else None
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            with Client(address, timeout=600, heartbeat_timeout=60) as c:
                while True:
                    with lock:
                        if total is not None and state["sent"] >= total:
                            return
                        if end is not None and time.perf_counter() >= end:
                            return
                        start = state["sent"] % len(encoded)
                        state["sent"] += size
                    part = [encoded[(start + i) % len(encoded)] for i in range(size)]
                    boxes = [[i * 10.0, k * 10.0, 10.0, 10.0] for i in range(size)]
                    out = c.predict(part, boxes, mpp, image_id="bench", format="table")
                    with lock:
                        state["done"] += out["n_tiles"]
                        state["requests"] += 1
                        n = state["requests"]
                    if on_request is not None:
                        on_request(n)
        except Exception as e:  # noqa: BLE001 - re-raised by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0, state["done"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--make-model", type=Path, default=None)
    ap.add_argument("--her2st", type=Path, default=REPO.parent / "shared" / "data" / "her2st")
    ap.add_argument("--section", default="B4")
    ap.add_argument("--tiles", type=int, default=512)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--request-tiles", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--latency-requests", type=int, default=30)
    ap.add_argument("--long-run-s", type=float, default=120.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from stimage.models import default_model_path, load_bundle
    from stimage.server._images import encode_tile

    model = args.model
    if model is None and args.make_model is not None:
        model = make_model(args.her2st, args.make_model)
    if model is None:
        model = default_model_path()
    bundle = load_bundle(model)
    tile_um, tile_px = float(bundle.tiles["tile_um"]), int(bundle.tiles["tile_px"])
    mpp = tile_um / tile_px
    tiles, source = load_tiles(args.her2st, args.section, tile_um, tile_px, args.tiles)
    encoded = [encode_tile(t) for t in tiles]
    device = None if args.device == "auto" else args.device
    ref = InProcess(model, device, tiles, args.batch_size)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-c", "from stimage.cli import main; main()", "-q", "serve", "--model", str(model),
        "--port", str(port), "--device", args.device, "--batch-size", str(args.batch_size),
        "--max-requests", str(max(32, 2 * args.clients)),
    ]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    from stimage.server.client import Client, ServerError

    try:
        with Client(address, heartbeat_timeout=2) as probe:
            for _ in range(300):
                try:
                    probe.ping()
                    break
                except ServerError as e:
                    if server.poll() is not None:
                        raise SystemExit(
                            server.stderr.read().decode() if server.stderr else "server died"
                        ) from e
            else:
                raise SystemExit("the server did not start")
        _requests(
            address,
            encoded,
            args.request_tiles,
            mpp,
            args.clients,
            total=args.clients * args.request_tiles,
        )
        # Rounds alternate the three measurements so that a shared machine's load falls alike
        # on each; medians are reported.
        rounds: dict[str, list[float]] = {"model_only": [], "pipeline": [], "server": []}
        for _ in range(args.rounds):
            rounds["model_only"].append(ref.model_only())
            rounds["pipeline"].append(ref.pipeline(encoded))
            wall, done = _requests(
                address, encoded, args.request_tiles, mpp, args.clients, total=args.tiles
            )
            rounds["server"].append(done / wall)
        med = {k: statistics.median(v) for k, v in rounds.items()}
        ratios = [s / p for s, p in zip(rounds["server"], rounds["pipeline"], strict=True)]
        lat = []
        with Client(address) as c:
            part, boxes = encoded[:16], [[i * 10.0, 0.0, 10.0, 10.0] for i in range(16)]
            c.predict(part, boxes, mpp, image_id="bench", format="geojson")
            for _ in range(args.latency_requests):
                t0 = time.perf_counter()
                c.predict(part, boxes, mpp, image_id="bench", format="geojson")
                lat.append((time.perf_counter() - t0) * 1000)
        samples: list[tuple[float, float]] = []
        t_start = time.perf_counter()
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.perf_counter() - t_start, _rss_mib(server.pid)))
                stop.wait(max(1.0, args.long_run_s / 40))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        long_wall, long_tiles = _requests(
            address, encoded, 16, mpp, args.clients, seconds=args.long_run_s
        )
        stop.set()
        sampler.join()
        samples.append((time.perf_counter() - t_start, _rss_mib(server.pid)))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    quarter = [r for t, r in samples if t >= samples[-1][0] / 4]
    rss_q, rss_end, rss_max = quarter[0], samples[-1][1], max(r for _, r in samples)
    lat.sort()
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    print(
        f"Command: `.venv/bin/python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`".rstrip()
    )
    print(f"Machine: {_machine()}")
    print(f"Model: {bundle.name} ({', '.join(bundle.encoders)}, {tile_um:g} µm tiles at {tile_px} px, "
          f"stain {bundle.tiles.get('stain')}, {len(bundle.genes)} genes); tiles: {source}, PNG; "
          f"server batch {args.batch_size}, {args.clients} clients x {args.request_tiles}-tile requests")  # fmt: skip
    print()
    print(f"{args.rounds} rounds; median (min-max) over rounds.")
    print()
    print("| measure | value |")
    print("|---|---:|")
    fmt = lambda v: f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"  # noqa: E731
    print(f"| in process, model only (normalised tiles), tiles/s | {fmt(rounds['model_only'])} |")
    print(f"| in process, decode + stain + model, tiles/s | {fmt(rounds['pipeline'])} |")
    print(f"| through the server ({done} tiles a round), tiles/s | {fmt(rounds['server'])} |")
    print(
        f"| server / in-process pipeline | **{med['server'] / med['pipeline']:.0%}** "
        f"(rounds {min(ratios):.0%}-{max(ratios):.0%}) |"
    )
    print(f"| server / model only | {med['server'] / med['model_only']:.0%} |")
    print(
        f"| 16-tile request round trip, median (p95) | {statistics.median(lat):.0f} ms ({p95:.0f} ms) |"
    )
    print(f"| long run: {long_tiles} tiles in {long_wall:.0f} s ({len(samples)} RSS samples) | |")
    print(
        f"| server RSS after 1/4 of the run / at the end / max | {rss_q:.0f} / {rss_end:.0f} / {rss_max:.0f} MiB |"
    )
    print(f"| growth over the last 3/4 | {rss_end - rss_q:+.0f} MiB |")


if __name__ == "__main__":
    main()
