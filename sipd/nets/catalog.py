"""The architectures sipd trains: their names, where each class lives, and the constructor.

Torch-free at import: the daemon validates architecture names with `ARCHS`
without loading torch (only the worker touches the device); a net's module
is imported when `build_net` or `default_params` first needs its class.

Every net maps normalized input [N, C, H, W] to logits [N, K, H, W] and
exposes `hparams` (all params, defaults filled in), `size_multiple` (H and
W must be multiples of it), `receptive_margin` (context per side that can
affect an output pixel anywhere) and `seamless_margin` (context per side a
tile aligned to the `size_multiple` grid needs so that its core equals a
whole-image pass; at most `receptive_margin`).
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from sipd.errors import InvalidArgument

if TYPE_CHECKING:
    from torch import nn

# name -> "module:Class". The one list of architectures.
ARCHITECTURES: dict[str, str] = {
    "unet": "sipd.nets.unet:UNet",
    "patchcnn": "sipd.nets.patchcnn:PatchCNN",
    "spectral": "sipd.nets.spectral:SpectralMLP",
}
ARCHS: tuple[str, ...] = tuple(ARCHITECTURES)
DEFAULT_NET = "unet"
# Model kinds that are not nets but train through the same job (sipd.training.forest):
# no epochs, fitted in seconds, exported as one ONNX graph like a net.
INSTANT_ARCHS: tuple[str, ...] = ("forest",)
TRAIN_ARCHS: tuple[str, ...] = ARCHS + INSTANT_ARCHS


def check_arch(name: str) -> str:
    """`name` if it is an architecture sipd knows, else InvalidArgument listing them."""
    if name not in ARCHITECTURES:
        raise InvalidArgument(f"unknown architecture {name!r}; accepted: {', '.join(ARCHS)}")
    return name


def net_class(name: str) -> type[nn.Module]:
    """The class of architecture `name` (imports its module, and with it torch)."""
    module, _, cls = ARCHITECTURES[check_arch(name)].partition(":")
    return getattr(importlib.import_module(module), cls)


def default_params(name: str) -> dict[str, Any]:
    """The architecture's hyper-parameters and their defaults."""
    sig = inspect.signature(net_class(name).__init__)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.default is not inspect.Parameter.empty
    }


# Params a model card written before the param existed implies: such a model
# was trained without it, whatever today's default is.
LEGACY_PARAMS: dict[str, dict[str, Any]] = {"unet": {"bank_sigmas": ()}}


def build_net(name: str, in_channels: int, num_classes: int, **params: Any) -> nn.Module:
    """Build network `name`: input [N, in_channels, H, W] -> logits [N, num_classes, H, W]."""
    cls = net_class(name)
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
        elif kind is tuple and isinstance(value, list | tuple) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            # A list of numbers (JSON and YAML have no tuples), e.g. filter scales.
            return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        pass
    raise InvalidArgument(
        f"parameter {key}={value!r} of architecture {arch!r} must be of type {kind.__name__} "
        f"(default {default!r})"
    )
