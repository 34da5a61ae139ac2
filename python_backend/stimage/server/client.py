"""Python client of the stimage server (protocol v1, a ZeroMQ DEALER socket).

Example:
    >>> from stimage.server.client import Client
    >>> with Client("tcp://127.0.0.1:5557") as c:  # doctest: +SKIP
    ...     info = c.hello()
    ...     out = c.predict(tiles, boxes, mpp=0.5, image_id="slide-1")
    ...     features = out["geojson"]["features"]

Every call waits for its one result and raises :class:`ServerError` on an error reply. An
address where no server answers is reported as ``ServerError("disconnected", ...)`` within
``connect_timeout`` seconds; a server that stops answering (restarted, crashed, unreachable)
once no reply or heartbeat came for ``heartbeat_timeout`` seconds. The next call then
reconnects with a fresh socket.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from stimage._version import __version__
from stimage.errors import ConfigError
from stimage.server._client_connection import DEFAULT_ADDRESS, Connection
from stimage.server._images import encode_tile
from stimage.server._protocol import PROTOCOL_VERSION, ErrorCode, ServerError

__all__ = ["DEFAULT_ADDRESS", "Client", "ServerError"]


class Client(Connection):
    """A connection to a stimage server.

    Methods may be called from one thread at a time, except :meth:`cancel`, which may be
    called from any thread while another waits.

    Args:
        address: The server's ZeroMQ endpoint.
        timeout: Seconds a request may take (sent as its deadline; the server answers
            ``deadline`` after it).
        heartbeat_timeout: Seconds of silence (no reply, no heartbeat) after which the
            server is taken for gone (``disconnected``). Keep it well above the server's
            ``heartbeat_s``.
        curve_keys: Folder made by ``stimage serve --make-keys`` holding ``server.key``
            and ``client.key_secret`` (for a server started with ``--curve-keys``).
        server_public_key: The server's Z85 public key (instead of ``curve_keys``).
        client_keys: This client's Z85 ``(public, secret)`` key pair (instead of ``curve_keys``).
        connect_timeout: Seconds a new connection waits for the server's first answer (at
            most ``heartbeat_timeout``) before ``disconnected`` says no server answers.
    """

    # -- operations ----------------------------------------------------------------------
    def hello(self) -> dict[str, Any]:
        """Server and protocol versions, models (genes, tile µm and px), limits."""
        info = self.request(
            "hello", {"client": {"name": "stimage-python", "version": __version__}}, timeout=30
        )
        if info.get("protocol") != PROTOCOL_VERSION:
            raise ServerError(
                ErrorCode.UNSUPPORTED_PROTOCOL,
                f"the server speaks protocol {info.get('protocol')}, this client {PROTOCOL_VERSION}",
            )
        return info

    def ping(self) -> float:
        """Round-trip time in seconds."""
        t0 = time.perf_counter()
        self.request("ping", timeout=30)
        return time.perf_counter() - t0

    def predict(
        self,
        tiles: Sequence[np.ndarray | bytes],
        boxes: np.ndarray | Sequence[Sequence[float]],
        mpp: float,
        *,
        model: str | None = None,
        genes: Sequence[str] | None = None,
        level: float | None = None,
        image_id: str | None = None,
        names: Sequence[str] | None = None,
        format: str = "geojson",
        object_type: str | None = None,
        classification: str | None = None,
        tile_format: str = "png",
        context_only: Sequence[bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Predict expression for tiles read by the caller.

        Args:
            tiles: RGB uint8 arrays (encoded here as ``tile_format``) or encoded PNG/JPEG bytes,
                each covering the model's tile µm (see :meth:`hello`).
            boxes: ``(n, 4)`` x, y, width, height of each tile in full-resolution pixels
                (the geometry of the returned objects).
            mpp: µm per pixel of the tile images.
            model: Model name (the server's default when None).
            genes: Genes to return (all when None).
            level: Predictive interval level (0.9 when None).
            image_id: Names the image the tiles come from; the server fits the stain
                normalisation once per image id and reuses it for its later tiles.
            names: Object names, one per tile.
            format: ``geojson`` (QuPath objects) or ``table`` (``columns`` and ``values``,
                an ``(n, len(columns))`` float32 array).
            object_type: ``tile`` (default), ``detection`` or ``annotation``.
            classification: A class name given to every object.
            tile_format: ``png`` (lossless) or ``jpeg`` for arrays.
            context_only: Per tile, True for a tile sent only as spatial context of the
                others (a tile around the region): a model with spatial context reads it,
                nothing is returned for it.
            progress: Called with ``(done, total)``.
            cancel: Set to cancel.
            timeout: Seconds.

        Returns:
            The result: ``geojson`` (a FeatureCollection) or ``columns``, ``values`` (numpy),
            ``boxes`` and ``names``; with ``model``, ``genes``, ``level`` and ``n_tiles``.

        Raises:
            ServerError: The server's error reply (e.g. ``wrong_scale``, ``unknown_gene``).
        """
        b = np.asarray(boxes, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != 4 or len(b) != len(tiles):
            raise ConfigError(f"boxes must be ({len(tiles)}, 4); got shape {b.shape}")
        frames = [
            t if isinstance(t, bytes | bytearray) else encode_tile(t, tile_format) for t in tiles
        ]
        tile_params: list[dict[str, Any]] = []
        for i, box in enumerate(b.tolist()):
            t: dict[str, Any] = {"frame": i, "box": box}
            if names is not None:
                t["name"] = str(names[i])
            if context_only is not None and context_only[i]:
                t["context_only"] = True
            tile_params.append(t)
        params = self._common(model, genes, level, format, object_type, classification, timeout)
        params.update({"mpp": float(mpp), "tiles": tile_params})
        if image_id is not None:
            params["image_id"] = str(image_id)
        return self.request(
            "predict",
            params,
            [bytes(f) for f in frames],
            progress=progress,
            cancel=cancel,
            timeout=timeout,
        )

    def predict_slide(
        self,
        path: str | os.PathLike[str],
        region: Sequence[float] | dict[str, Any] | None = None,
        *,
        mpp: float | None = None,
        model: str | None = None,
        genes: Sequence[str] | None = None,
        level: float | None = None,
        format: str = "geojson",
        object_type: str | None = None,
        classification: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Predict the grid tiles of a slide file that the server can read.

        Args:
            path: Absolute path of the slide on the server's machine, under one of its
                ``--allow-root`` folders.
            region: ``[x, y, w, h]`` or a GeoJSON Polygon in full-resolution pixels (all
                tissue when None).
            mpp: µm per pixel, when the file does not record it.
            model: Model name.
            genes: Genes to return.
            level: Predictive interval level.
            format: ``geojson`` or ``table``.
            object_type: QuPath object type of the tiles.
            classification: A class name for every tile.
            progress: Called with ``(done, total)``.
            cancel: Set to cancel.
            timeout: Seconds.

        Returns:
            As :meth:`predict`, plus ``slide`` (path, mpp, width, height).
        """
        slide: dict[str, Any] = {"path": os.fspath(path)}
        if region is not None:
            slide["region"] = region if isinstance(region, dict) else [float(v) for v in region]
        if mpp is not None:
            slide["mpp"] = float(mpp)
        params = self._common(model, genes, level, format, object_type, classification, timeout)
        params["slide"] = slide
        return self.request("predict", params, progress=progress, cancel=cancel, timeout=timeout)

    def cells(
        self,
        image: np.ndarray | bytes | None = None,
        mpp: float | None = None,
        *,
        origin: Sequence[float] = (0.0, 0.0),
        downsample: float = 1.0,
        slide: str | os.PathLike[str] | None = None,
        region: Sequence[float] | dict[str, Any] | None = None,
        slide_mpp: float | None = None,
        classify: bool = True,
        image_format: str = "png",
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Nuclei segmented and typed, in an image sent from here or a region of a slide file.

        Give either ``image`` and ``mpp`` (pixels read by the caller: the region's image, its
        full-resolution top-left ``origin`` and ``downsample``) or ``slide`` and ``region`` (a
        file the server reads, under its ``--allow-root`` folders).

        Args:
            image: RGB uint8 array (encoded here as ``image_format``) or PNG/JPEG bytes.
            mpp: µm per pixel of ``image``.
            origin: Full-resolution ``(x, y)`` of the image's top-left pixel.
            downsample: Full-resolution pixels per image pixel.
            slide: Absolute path of a slide on the server's machine.
            region: ``[x, y, w, h]`` or a GeoJSON Polygon in full-resolution pixels of ``slide``.
            slide_mpp: µm per pixel of ``slide``, when the file does not record it.
            classify: Type the cells with the server's cell-type model (else only segment).
            image_format: ``png`` or ``jpeg`` for arrays.
            progress: Called with ``(done, total)`` segmentation tiles.
            cancel: Set to cancel.
            timeout: Seconds.

        Returns:
            ``n_cells``, ``counts`` (cells per class), ``classes``, ``cell_model``, ``mpp`` and
            ``geojson`` (QuPath cell objects in full-resolution pixels); ``slide`` for files.

        Raises:
            ConfigError: Neither or both of ``image`` and ``slide``, or no ``mpp``/``region``.
            ServerError: The server's error reply.
        """
        if (image is None) == (slide is None):
            raise ConfigError("give either image (with mpp) or slide (with region)")
        params: dict[str, Any] = {
            "classify": bool(classify),
            "deadline_ms": max(1, int((timeout or self.timeout) * 1000)),
        }
        frames: list[bytes] = []
        if slide is not None:
            if region is None:
                raise ConfigError("give the region of the slide to find cells in")
            spec: dict[str, Any] = {
                "path": os.fspath(slide),
                "region": region if isinstance(region, dict) else [float(v) for v in region],
            }
            if slide_mpp is not None:
                spec["mpp"] = float(slide_mpp)
            params["slide"] = spec
        elif image is not None:
            if mpp is None:
                raise ConfigError("give mpp, the µm per pixel of the image sent")
            data = (
                image if isinstance(image, bytes | bytearray) else encode_tile(image, image_format)
            )
            frames.append(bytes(data))
            x, y = (float(v) for v in origin)
            params["image"] = {"frame": 0, "x": x, "y": y, "downsample": float(downsample)}
            params["mpp"] = float(mpp)
        return self.request(
            "cells", params, frames, progress=progress, cancel=cancel, timeout=timeout
        )

    def explain(
        self,
        genes: Sequence[str],
        tile: np.ndarray | bytes | None = None,
        box: Sequence[float] | None = None,
        mpp: float | None = None,
        *,
        slide: str | os.PathLike[str] | None = None,
        slide_mpp: float | None = None,
        neighbours: Sequence[tuple[np.ndarray | bytes, Sequence[float]]] = (),
        model_tile: np.ndarray | bytes | None = None,
        model: str | None = None,
        method: str = "lime",
        target: str = "mean",
        num_samples: int | None = None,
        seed: int | None = None,
        image_id: str | None = None,
        tile_format: str = "png",
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Score each nucleus of one model tile for some genes (LIME or occlusion).

        Give either ``tile`` with its ``box`` and ``mpp`` (read by the caller, covering the
        model's tile µm) or ``slide`` with ``box`` (a file the server reads).

        Args:
            genes: Genes to explain (all from one set of perturbations).
            tile: RGB uint8 array or PNG/JPEG bytes of the tile.
            box: ``[x, y, w, h]`` of the tile in full-resolution pixels.
            mpp: µm per pixel of ``tile``.
            slide: Absolute path of a slide on the server's machine.
            slide_mpp: µm per pixel of ``slide``, when the file does not record it.
            neighbours: With ``tile``, for a model with spatial context: ``(image, box)`` of
                the tissue tiles around it within the model's ``context_um`` (each the
                model's tile, box in full-resolution pixels); their features are held fixed
                while the tile is perturbed. A ``slide`` request reads them itself.
            model_tile: With ``tile``: the same tile as it was sent to predict (read at the
                model's resolution), so that the model sees exactly that tile and the
                explained prediction equals predict's; ``tile`` is still what the nuclei are
                segmented on.
            model: Model name (the server's default when None).
            method: ``lime`` or ``occlusion``.
            target: ``mean`` or ``p_high``.
            num_samples: LIME's perturbed tiles (server default 1000).
            seed: LIME's seed.
            image_id: Names the image, for the server's stain normalisation cache.
            tile_format: ``png`` or ``jpeg`` for arrays.
            progress: Called with ``(done, total)`` model inputs.
            cancel: Set to cancel.
            timeout: Seconds.

        Returns:
            ``model``, ``method``, ``targets``, ``measurements`` (the score names, e.g.
            ``"LIME: VEGFA"``), ``prediction``, ``fit_r2``, ``box``, ``n_nuclei``,
            ``num_samples``, ``context_tiles`` (neighbours held fixed; None for a model
            without context) and ``geojson`` (the nuclei as detections carrying the scores).

        Raises:
            ConfigError: Neither or both of ``tile`` and ``slide``, or no ``box``/``mpp``.
            ServerError: The server's error reply (``no_nuclei``, ``unknown_gene`` ...).
        """
        if (tile is None) == (slide is None):
            raise ConfigError("give either tile (with box and mpp) or slide (with box)")
        if (neighbours or model_tile is not None) and slide is not None:
            raise ConfigError(
                "neighbours and model_tile go with a tile; a slide request reads them itself"
            )
        if box is None or len(box) != 4:
            raise ConfigError("give box, the tile's [x, y, w, h] in full-resolution pixels")
        b = [float(v) for v in box]
        params: dict[str, Any] = {
            "genes": list(genes),
            "method": method,
            "target": target,
            "deadline_ms": max(1, int((timeout or self.timeout) * 1000)),
        }
        for k, v in (("model", model), ("num_samples", num_samples), ("seed", seed)):
            if v is not None:
                params[k] = v
        frames: list[bytes] = []
        if slide is not None:
            spec: dict[str, Any] = {"path": os.fspath(slide), "box": b}
            if slide_mpp is not None:
                spec["mpp"] = float(slide_mpp)
            params["slide"] = spec
        elif tile is not None:
            if mpp is None:
                raise ConfigError("give mpp, the µm per pixel of the tile sent")
            params["mpp"] = float(mpp)
            params.update(_tile_frames(tile, b, neighbours, model_tile, tile_format, frames))
            if image_id is not None:
                params["image_id"] = str(image_id)
        return self.request(
            "explain", params, frames, progress=progress, cancel=cancel, timeout=timeout
        )

    def _common(
        self,
        model: str | None,
        genes: Sequence[str] | None,
        level: float | None,
        format: str,
        object_type: str | None,
        classification: str | None,
        timeout: float | None,
    ) -> dict[str, Any]:
        p: dict[str, Any] = {
            "format": format,
            "deadline_ms": max(1, int((timeout or self.timeout) * 1000)),
        }
        for k, v in (
            ("model", model),
            ("level", level),
            ("object_type", object_type),
            ("classification", classification),
        ):
            if v is not None:
                p[k] = v
        if genes is not None:
            p["genes"] = list(genes)
        return p


def _tile_frames(
    tile: np.ndarray | bytes,
    box: list[float],
    neighbours: Sequence[tuple[np.ndarray | bytes, Sequence[float]]],
    model_tile: np.ndarray | bytes | None,
    tile_format: str,
    frames: list[bytes],
) -> dict[str, Any]:
    """Explain's ``tile``, ``neighbours`` and ``model_tile`` params; their images onto ``frames``."""

    def frame(img: np.ndarray | bytes) -> int:
        data = img if isinstance(img, bytes | bytearray) else encode_tile(img, tile_format)
        frames.append(bytes(data))
        return len(frames) - 1

    params: dict[str, Any] = {"tile": {"frame": frame(tile), "box": box}}
    if neighbours:
        params["neighbours"] = [
            {"frame": frame(img), "box": [float(v) for v in nb_box]} for img, nb_box in neighbours
        ]
    if model_tile is not None:
        params["model_tile"] = {"frame": frame(model_tile)}
    return params
