"""Torch device from the job's device string."""

from __future__ import annotations

import logging

import torch

from sipd.errors import InvalidArgument


def resolve_device(name: str | None, log: logging.Logger) -> torch.device:
    """Map auto (CUDA when usable, else CPU), cpu, cuda or cuda:N to a torch device.

    A CUDA device that is not usable falls back to the CPU with one warning,
    matching how the predictor treats onnxruntime providers.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        index = 0 if name == "cuda" else name.split(":", 1)[1]
        try:
            index = int(index)
        except ValueError:
            raise InvalidArgument(
                f"device {name!r} not understood; accepted: auto, cpu, cuda, cuda:N"
            ) from None
        if torch.cuda.is_available() and index < torch.cuda.device_count():
            return torch.device(f"cuda:{index}")
        log.warning("device %s is not usable (CUDA unavailable); training on the CPU", name)
        return torch.device("cpu")
    raise InvalidArgument(f"device {name!r} not understood; accepted: auto, cpu, cuda, cuda:N")
