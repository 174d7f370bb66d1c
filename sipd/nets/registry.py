"""Name -> architecture, and the one constructor the rest of sipd uses."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from sipd.errors import InvalidArgument
from sipd.nets.patchcnn import PatchCNN
from sipd.nets.spectral import SpectralMLP
from sipd.nets.unet import UNet

NETS: dict[str, type[nn.Module]] = {
    "unet": UNet,
    "patchcnn": PatchCNN,
    "spectral": SpectralMLP,
}
DEFAULT_NET = "unet"


def default_params(name: str) -> dict[str, Any]:
    """The architecture's hyper-parameters and their defaults."""
    cls = _lookup(name)
    sig = inspect.signature(cls.__init__)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.default is not inspect.Parameter.empty
    }


def build_net(name: str, in_channels: int, num_classes: int, **params: Any) -> nn.Module:
    """Build network `name`: input [N, in_channels, H, W] -> logits [N, num_classes, H, W].

    Every net exposes `receptive_margin` (pixels of context each side that
    can affect an output pixel), `size_multiple` (H and W must be
    multiples of it) and `hparams` (all params, defaults filled in).
    """
    cls = _lookup(name)
    known = default_params(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InvalidArgument(
            f"unknown parameter(s) {', '.join(unknown)} for architecture {name!r}; "
            f"accepted: {', '.join(f'{k} (default {v})' for k, v in known.items())}"
        )
    if in_channels < 1 or num_classes < 1:
        raise InvalidArgument(
            f"a net needs >= 1 input band and >= 1 class, got {in_channels} and {num_classes}"
        )
    params = {k: _coerce(name, k, v, known[k]) for k, v in params.items()}
    return cls(in_channels, num_classes, **params)


def _coerce(arch: str, key: str, value: Any, default: Any) -> Any:
    """Give a param its default's type: YAML/JSON/proto callers send 3.0 for 3."""
    kind = type(default)
    try:
        if kind is int and not isinstance(value, bool):
            as_float = float(value)
            if as_float.is_integer():
                return int(as_float)
        elif kind is float and not isinstance(value, bool):
            return float(value)
        elif kind is bool and isinstance(value, bool):
            return value
    except (TypeError, ValueError):
        pass
    raise InvalidArgument(
        f"parameter {key}={value!r} of architecture {arch!r} must be of type {kind.__name__} "
        f"(default {default!r})"
    )


def _lookup(name: str) -> type[nn.Module]:
    try:
        return NETS[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown architecture {name!r}; accepted: {', '.join(sorted(NETS))}"
        ) from None
