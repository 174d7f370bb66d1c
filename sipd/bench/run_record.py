"""What a benchmark report records about the machine it ran on, and where it is written.

Every benchmark's figures are only meaningful with the host and the load they
ran under (the README reports ratios measured side by side, and absolute
figures with their load), so the benches share one record of both.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def write_report(report: dict[str, Any], json_path: str | None, work: Path, prefix: str) -> Path:
    """The report as indented JSON at `json_path`, else WORK/PREFIX-TIME.json; its path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(json_path) if json_path else work / f"{prefix}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
