"""checkpoint.pt: best weights plus what is needed to rebuild the net."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sipd.errors import FailedPrecondition
from sipd.modelrepo.layout import CHECKPOINT_FILE as FILE
from sipd.nets import build_net
from sipd.nets.catalog import LEGACY_PARAMS

FORMAT = "sipd-checkpoint/1"
__all__ = ["FILE", "FORMAT", "checkpoint_payload", "load_checkpoint"]


def checkpoint_payload(
    net: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    arch: str,
    in_channels: int,
    num_classes: int,
    **info: Any,
) -> dict[str, Any]:
    """What checkpoint.pt holds: plain data and tensors only (loads with weights_only)."""
    return {
        "format": FORMAT,
        "architecture": {"name": arch, "params": dict(net.hparams)},
        "in_channels": in_channels,
        "num_classes": num_classes,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        **info,
    }


def load_checkpoint(model_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the net of a model folder (or a checkpoint.pt path) in eval mode on the CPU.

    Returns (net, payload); payload also carries normalization, bands and
    classes, so the net can be re-exported (export_onnx) without model.yaml.
    """
    path = Path(model_dir)
    if path.is_dir():
        path = path / FILE
    if not path.is_file():
        raise FailedPrecondition(f"no checkpoint at {path}; the model folder is incomplete")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FailedPrecondition(f"{path} is not a {FORMAT} checkpoint")
    arch = payload["architecture"]
    params = {**LEGACY_PARAMS.get(arch["name"], {}), **arch["params"]}
    net = build_net(arch["name"], payload["in_channels"], payload["num_classes"], **params)
    net.load_state_dict(payload["state_dict"])
    return net.eval(), payload
