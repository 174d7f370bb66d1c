"""What the worker process is started with."""

from __future__ import annotations

from sipd.config import InferenceConfig, RayConfig
from sipd.contracts.base import Contract


class WorkerSettings(Contract):
    """Engine settings a job may need (threads, the inference section of the config)."""

    log_level: str = "info"
    # 0: the libraries' own default (all cores).
    threads: int = 0
    inference: InferenceConfig = InferenceConfig()
    # Every file GDAL opens in the worker must lie below one of these (the allowed
    # roots and the data dir); empty: no check (a benchmark, a unit test).
    allowed_roots: list[str] = []
    # Where predict jobs run: "local" (this process) or "ray" (sipd.jobs.ray_executor).
    executor: str = "local"
    ray: RayConfig = RayConfig()
