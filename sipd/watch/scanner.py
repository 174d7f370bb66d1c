"""Finding complete scenes: file events and rescans -> settled units -> the durable queue."""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileClosedNoWriteEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from sipd.config import WatchConfig
from sipd.watch.files import is_leftover_temporary
from sipd.watch.queue import WatchQueue
from sipd.watch.runtime import Runtime, unit_key

log = logging.getLogger("sipd.watch")

FsEvent = tuple[str, str, bool]  # watch id, path, a folder that just appeared


class EventSink(FileSystemEventHandler):
    """watchdog's callback: note the path and return (its thread must not block)."""

    def __init__(self, watch_id: str, sink: queue.SimpleQueue[FsEvent]) -> None:
        self.watch_id = watch_id
        self.sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, (FileOpenedEvent, FileClosedNoWriteEvent)):
            return  # reads, including our own, say nothing about completeness
        new_folder = event.is_directory and event.event_type in ("created", "moved")
        if event.dest_path:
            self.sink.put((self.watch_id, os.fsdecode(event.dest_path), new_folder))
        if event.src_path:
            self.sink.put(
                (self.watch_id, os.fsdecode(event.src_path), new_folder and not event.dest_path)
            )


class Scanner:
    def __init__(
        self,
        queue_: WatchQueue,
        config: WatchConfig,
        runtimes: Callable[[], dict[str, Runtime]],
        schedule: Callable[[Runtime], None],
        wake: Callable[[], None],
    ) -> None:
        self.queue = queue_
        self.config = config
        self.runtimes = runtimes
        self.schedule = schedule
        self.wake = wake
        self.events: queue.SimpleQueue[FsEvent] = queue.SimpleQueue()
        self.start_wall = time.time()

    def tick(self) -> None:
        now = time.monotonic()
        runtimes = self.runtimes()
        self._drain_events(runtimes, now)
        full = False
        for rt in runtimes.values():
            if not rt.paused:
                if not rt.cleaned:
                    self._clean_outbox(rt)
                if rt.rescan_requested or now >= rt.next_scan:
                    self._rescan(rt, now)
                if not full:
                    full = self._offer_ready(rt, now)
            rt.passes += 1  # counted once the pass is complete, a paused watch's too

    def _drain_events(self, runtimes: dict[str, Runtime], now: float) -> None:
        while True:
            try:
                watch_id, path, new_folder = self.events.get_nowait()
            except queue.Empty:
                return
            rt = runtimes.get(watch_id)
            if rt is None or rt.paused:
                continue  # a resumed watch rescans
            if new_folder and rt.layout.is_subfolder(Path(path)):
                # A sub-folder moved in whole: its files raised no events of their own.
                for inner in rt.layout.scan_under(Path(path)):
                    rt.settler.touch(inner, now)
                continue
            unit = rt.layout.unit_of(Path(path))
            if unit is not None:
                rt.settler.touch(unit, now)

    def _rescan(self, rt: Runtime, now: float) -> None:
        rt.rescan_requested = False
        rt.next_scan = now + self.config.rescan_seconds
        if rt.handle is None:
            self.schedule(rt)  # the inbox may exist again, or inotify have room now
        known = self.queue.known_keys(rt.spec.id)
        for unit in rt.layout.scan():
            if unit in rt.settler:
                continue
            key = unit_key(unit)
            if key is None or (str(unit), *key) in known:
                continue
            rt.settler.touch(unit, now)
        rt.rescans += 1

    def _offer_ready(self, rt: Runtime, now: float) -> bool:
        """Queue the units that settled; True when the queue is full (backpressure)."""
        for unit, _sig in rt.settler.poll(now):
            key = unit_key(unit)
            if key is None:
                rt.settler.forget(unit)
                continue
            outcome = self.queue.offer(
                rt.spec.id, str(unit), key[0], key[1], self.config.queue_limit
            )
            if outcome == "full":
                return True  # it stays pending, on disk, and is offered again next tick
            rt.settler.forget(unit)
            if outcome == "queued":
                log.debug("watch %s: queued %s", rt.spec.id, unit)
                self.wake()
        return False

    def _clean_outbox(self, rt: Runtime) -> None:
        """Temporaries a killed worker left in the outbox (dot-named, older than this start)."""
        rt.cleaned = True
        for root, _dirs, files in os.walk(rt.spec.outbox):
            for name in files:
                if not is_leftover_temporary(name):
                    continue
                path = Path(root) / name
                try:
                    if path.stat().st_mtime < self.start_wall:
                        path.unlink()
                        log.info("watch %s: removed leftover temporary %s", rt.spec.id, path)
                except OSError:
                    pass
