"""What the worker process is started with."""

from __future__ import annotations

from sipd.config import InferenceConfig
from sipd.contracts.base import Contract


class WorkerSettings(Contract):
    """Engine settings a job may need (threads, the inference section of the config)."""

    log_level: str = "info"
    # 0: the libraries' own default (all cores).
    threads: int = 0
    inference: InferenceConfig = InferenceConfig()
