"""Which device jobs run on: CUDA when usable, else the CPU.

The daemon decides without importing torch (slow to import, and only the
worker may touch the GPU) by asking the CUDA driver library directly.
"""

from __future__ import annotations

import ctypes
import logging
import re

log = logging.getLogger("sipd.device")


def cuda_device_count() -> int:
    """GPUs the CUDA driver sees; 0 when there is no driver or no device."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
        except AttributeError:
            return 0
        return int(count.value)
    return 0


def resolve_device(setting: str) -> str:
    """'auto' | 'cpu' | 'cuda[:N]' -> 'cpu' or 'cuda:N' that exists."""
    if setting == "cpu":
        return "cpu"
    count = cuda_device_count()
    if setting == "auto":
        return "cuda:0" if count > 0 else "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", setting)
    index = int(match.group(1) or 0) if match else 0
    if index < count:
        return f"cuda:{index}"
    log.warning(
        "device %s requested but the CUDA driver reports %d GPU(s); running on the CPU",
        setting,
        count,
    )
    return "cpu"
