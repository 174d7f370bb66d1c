"""The in-memory side of one watch while sipd runs, and the key a scene row is stored under."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sipd.watch.files import Layout
from sipd.watch.settle import Settler
from sipd.watch.spec import WatchSpec


class WatchEvents(Protocol):
    """What the watch threads report as they go (sipd.prometheus implements it)."""

    def scene_done(self, watch_id: str, predict_seconds: float, latency_seconds: float) -> None: ...

    def scene_failed(self, watch_id: str) -> None: ...

    def scene_retried(self, watch_id: str) -> None: ...


@dataclass
class Runtime:
    spec: WatchSpec
    layout: Layout
    settler: Settler
    paused: bool
    handle: Any = None  # watchdog's ObservedWatch, None when events are unavailable
    next_scan: float = 0.0  # monotonic time of the next full rescan
    hold_until: float = 0.0  # no dispatch before (no model yet, engine queue full)
    cleaned: bool = False  # leftover temporaries removed from the outbox
    rescan_requested: bool = True  # at start and on resume
    # Completed scanner passes over this watch (paused or not) and full rescans of its inbox:
    # a stuck scanner shows as counters that stop rising, and a test can wait for "the
    # scanner looked again" instead of sleeping.
    passes: int = 0
    rescans: int = 0


def unit_key(unit: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) a scene row is keyed by: the file's own, or a folder's totals."""
    try:
        st = unit.stat()
    except OSError:
        return None
    if not unit.is_dir():
        return st.st_size, st.st_mtime_ns
    size, mtime = 0, st.st_mtime_ns
    for root, _dirs, files in os.walk(unit):
        for name in files:
            try:
                fs = os.stat(os.path.join(root, name))
            except OSError:
                continue
            size += fs.st_size
            mtime = max(mtime, fs.st_mtime_ns)
    return size, mtime
