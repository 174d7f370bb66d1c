"""What a running job sees of the engine: progress reporting and cancellation.

Domain code (training, inference, dataset preparation) takes a JobContext and
never knows whether it runs in the daemon's worker process, in a benchmark or
in a unit test.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sipd.contracts.worker_settings import WorkerSettings


class JobCancelled(Exception):
    """Raised by JobContext.check_cancelled once a cancel was asked for."""


@dataclass
class ProgressEvent:
    stage: str
    fraction: float
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


class JobContext:
    """Progress sink and cancel flag for one job.

    `emit` receives every ProgressEvent; the worker forwards them to the
    daemon, a benchmark may print them, a test may collect them.
    `cancel_event` is set by whoever wants the job to stop; domain code calls
    `check_cancelled()` at safe points (per batch, per tile, per block).
    """

    def __init__(
        self,
        device: str = "cpu",
        emit: Callable[[ProgressEvent], None] | None = None,
        cancel_event: Any = None,
        logger: logging.Logger | None = None,
        settings: WorkerSettings | None = None,
    ) -> None:
        self.device = device
        self.log = logger or logging.getLogger("sipd.job")
        # Engine settings a job may need (threads, tile size, session cache).
        self.settings = settings or WorkerSettings()
        self._emit = emit
        self._cancel = cancel_event if cancel_event is not None else threading.Event()
        self._last_emit = 0.0

    def progress(
        self,
        stage: str,
        fraction: float,
        message: str = "",
        metrics: dict[str, float] | None = None,
        force: bool = False,
    ) -> None:
        """Report progress; throttled to ~10 events/s unless `force` or metrics."""
        now = time.time()
        if not force and not metrics and now - self._last_emit < 0.1 and fraction < 1.0:
            return
        self._last_emit = now
        if self._emit is not None:
            event = ProgressEvent(stage, max(0.0, min(1.0, fraction)), message, metrics or {})
            self._emit(event)

    def child(self, start: float, span: float) -> JobContext:
        """A context for one step of a larger job: its 0..1 maps to start..start+span
        of this job, so a job of several steps reports one steadily rising fraction."""

        def emit(event: ProgressEvent) -> None:
            if self._emit is not None:
                event.fraction = start + span * event.fraction
                self._emit(event)

        return JobContext(self.device, emit, self._cancel, self.log, self.settings)

    def cancel(self) -> None:
        self._cancel.set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled("cancelled by request")
