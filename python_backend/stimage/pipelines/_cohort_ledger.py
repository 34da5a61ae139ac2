"""The run ledger of a cohort: one JSON line per event, appended, never rewritten.

``OUT/ledger.jsonl`` records every attempt at a slide::

    {"slide": "A1", "event": "started", "attempt": 1, "settings": "3f1c...", ...}
    {"slide": "A1", "event": "done", "attempt": 1, "settings": "3f1c...", "tiles": 412, ...}
    {"slide": "A2", "event": "failed", "attempt": 1, "error": "...", "final": false, ...}

Appends are single ``write`` calls of one line under an exclusive ``flock`` and are flushed
to disk (``fsync``) before the call returns, so several processes (a Slurm array's tasks,
Ray's driver) may append to one ledger on a shared file system, and a crash leaves at worst a
torn last line, which the reader skips. The reader is bounded (file size, line length).
A slide counts as done when its last ``done`` event carries the cohort's settings hash and
its output folder exists.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stimage.errors import ConfigError

__all__ = ["Ledger", "SlideRecord"]

logger = logging.getLogger(__name__)

#: Largest ledger read (about a million events).
MAX_LEDGER_BYTES = 512 << 20
#: Longest event line kept (an error message is cut to fit).
MAX_LINE_CHARS = 16_384


@dataclass
class SlideRecord:
    """What the ledger says of one slide.

    Attributes:
        done: The last ``done`` event with the current settings (None if none).
        attempts: Failed attempts since the last ``done`` or run start (all runs).
        last_error: The error of the last failed attempt.
        final: Whether the last failure ended the slide's tries in its run.
        started: Whether the last event is a ``started`` one (no outcome since).
    """

    done: dict[str, Any] | None = None
    attempts: int = 0
    last_error: str | None = None
    final: bool = False
    started: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)


class Ledger:
    """An append-only JSON-lines ledger of slide events (safe for several writers)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def append(self, event: dict[str, Any]) -> None:
        """Append one event (``slide`` and ``event`` required); time, host and pid are added."""
        rec = {
            **event,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        line = json.dumps(rec, default=str, ensure_ascii=False)
        if len(line) > MAX_LINE_CHARS and isinstance(rec.get("error"), str):
            rec["error"] = rec["error"][: MAX_LINE_CHARS // 2] + " ..."
            line = json.dumps(rec, default=str, ensure_ascii=False)
        data = (line + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _lock(fd)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # after a torn line (a crash mid-write): start a new one
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock

    def events(self) -> list[dict[str, Any]]:
        """Every well-formed event, in order (a torn or foreign line is skipped with a warning).

        Raises:
            ConfigError: The ledger is larger than :data:`MAX_LEDGER_BYTES`.
        """
        if not self.path.is_file():
            return []
        size = self.path.stat().st_size
        if size > MAX_LEDGER_BYTES:
            raise ConfigError(
                f"{self.path}: {size} bytes is too large for a ledger (at most "
                f"{MAX_LEDGER_BYTES >> 20} MiB); start the cohort in a new --out"
            )
        out = []
        bad = 0
        with open(self.path, "rb") as fh:
            for raw in fh:
                if len(raw) > MAX_LINE_CHARS * 4 or not raw.endswith(b"\n"):
                    bad += 1
                    continue
                try:
                    ev = json.loads(raw)
                except ValueError:
                    bad += 1
                    continue
                if isinstance(ev, dict) and isinstance(ev.get("slide"), str) and "event" in ev:
                    out.append(ev)
                else:
                    bad += 1
        if bad:
            logger.warning("%s: %d unreadable line(s) skipped (a torn write?)", self.path, bad)
        return out

    def records(self, settings: str) -> dict[str, SlideRecord]:
        """Per slide id: its ``done`` event for these settings, and its failed attempts."""
        recs: dict[str, SlideRecord] = {}
        for ev in self.events():
            r = recs.setdefault(ev["slide"], SlideRecord())
            r.events.append(ev)
            r.started = ev["event"] == "started"
            if ev["event"] == "done":
                r.done = ev if ev.get("settings") == settings else None
                r.attempts, r.last_error, r.final = 0, None, False
            elif ev["event"] == "failed":
                r.attempts += 1
                r.last_error = str(ev.get("error"))
                r.final = bool(ev.get("final"))
        return recs


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: appends of one line are still whole
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
