"""The device setting, parsed in one place, and what each part of sipd makes of it.

Accepted: 'auto' (CUDA when usable, else the CPU), 'cpu', 'cuda' (= cuda:0)
and 'cuda:N'.

- `parse_device`: the setting -> `DeviceSetting` (kind, index), or a clear error.
- `resolve_device`: what the daemon runs its worker on ('cpu' or 'cuda:N'),
  decided without importing torch (slow to import, and only the worker may
  touch the GPU) by asking the CUDA driver library directly.
- `torch_device`: the torch.device training runs on (imports torch lazily).
- onnxruntime sessions take `DeviceSetting.kind` and `.index` (sipd.inference.sessions).
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sipd.errors import InvalidArgument

if TYPE_CHECKING:
    import torch

log = logging.getLogger("sipd.device")

ACCEPTED = "auto, cpu, cuda, cuda:N"


@dataclass(frozen=True)
class DeviceSetting:
    kind: Literal["auto", "cpu", "cuda"]
    index: int = 0  # the CUDA device number; 0 for 'auto' and 'cpu'

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" else self.kind


def parse_device(setting: str) -> DeviceSetting:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' (any case, spaces around ignored) -> DeviceSetting."""
    text = (setting or "").strip().lower() if isinstance(setting, str) else None
    if text in ("auto", "cpu"):
        return DeviceSetting(text)  # type: ignore[arg-type]
    if text == "cuda":
        return DeviceSetting("cuda", 0)
    if text is not None and text.startswith("cuda:") and text[5:].isdigit():
        return DeviceSetting("cuda", int(text[5:]))
    raise InvalidArgument(f"device {setting!r} is not one of: {ACCEPTED}")


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
    """The daemon's choice without torch: 'cpu' or a 'cuda:N' that the driver reports.

    A CUDA device that is not there falls back to the CPU with one warning,
    as training and the predictor do.
    """
    parsed = parse_device(setting)
    if parsed.kind == "cpu":
        return "cpu"
    count = cuda_device_count()
    if parsed.kind == "auto":
        return "cuda:0" if count > 0 else "cpu"
    if parsed.index < count:
        return str(parsed)
    log.warning(
        "device %s requested but the CUDA driver reports %d GPU(s); running on the CPU",
        parsed,
        count,
    )
    return "cpu"


def torch_device(setting: str, logger: logging.Logger | None = None) -> torch.device:
    """The torch device for a setting: 'auto' is CUDA when torch can use it, else the CPU.

    A CUDA device that torch cannot use falls back to the CPU with one
    warning (on `logger`, e.g. the job's log), matching the predictor.
    torch is imported here, not at module level: the daemon imports this
    module and must not load torch.
    """
    import torch

    parsed = parse_device(setting)
    if parsed.kind == "cpu":
        return torch.device("cpu")
    usable = torch.cuda.is_available()
    if parsed.kind == "auto":
        return torch.device("cuda:0" if usable else "cpu")
    if usable and parsed.index < torch.cuda.device_count():
        return torch.device(str(parsed))
    (logger or log).warning(
        "device %s is not usable (CUDA unavailable or no such GPU); running on the CPU", parsed
    )
    return torch.device("cpu")
