"""model.yaml: parsing and validation of a model folder (see models/README.md).

Kept apart from the session code so that listing or inspecting models never
needs onnxruntime, and so every error names the file and the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sipd.errors import FailedPrecondition, InvalidArgument

MODEL_FORMAT = "sipd-model/1"
# Optional half-precision variant of model.onnx in the same folder (used on CUDA only).
FP16_FILE = "model.fp16.onnx"


@dataclass(frozen=True)
class ClassInfo:
    value: int
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class TileSpec:
    size: int
    halo: int
    multiple: int


@dataclass(frozen=True)
class ModelSpec:
    """What model.yaml says, checked; `raw` keeps the whole document."""

    path: Path
    name: str
    classes: tuple[ClassInfo, ...]
    bands: tuple[str, ...]
    input_name: str
    outputs: dict[str, str]  # role (labels/confidence/probabilities) -> graph output name
    mean: tuple[float, ...]
    std: tuple[float, ...]
    tile: TileSpec
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def class_values(self) -> list[int]:
        return [c.value for c in self.classes]


def parse_color(text: Any, where: str) -> tuple[int, int, int]:
    """'#rrggbb' (or 'rrggbb') -> (r, g, b)."""
    s = str(text).strip().lstrip("#")
    if len(s) != 6:
        raise InvalidArgument(f"{where}: colour {text!r} is not '#rrggbb'")
    try:
        return (int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16))
    except ValueError as exc:
        raise InvalidArgument(f"{where}: colour {text!r} is not '#rrggbb'") from exc


def _positive_int(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def _floats(value: Any, n: int, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != n:
        raise InvalidArgument(f"{where} must be a list of {n} numbers (one per band)")
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{where} must be numbers, got {value!r}") from exc


def _parse_classes(doc: dict[str, Any], where: str) -> tuple[ClassInfo, ...]:
    items = doc.get("classes")
    if not isinstance(items, list) or not items:
        raise InvalidArgument(f"{where}: 'classes' must be a non-empty list")
    if len(items) > 254:
        raise InvalidArgument(f"{where}: at most 254 classes fit a uint8 label map")
    classes = []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict) or "name" not in item:
            raise InvalidArgument(f"{where}: classes[{i - 1}] needs value, name and color")
        value = item.get("value", i)
        # The graph emits label k for classes[k-1]; anything else would
        # silently mislabel the map.
        if value != i:
            raise InvalidArgument(
                f"{where}: classes[{i - 1}] has value {value!r}; values must be 1..K in order"
            )
        color = parse_color(item.get("color", "#808080"), f"{where}: class {item['name']}")
        classes.append(ClassInfo(i, str(item["name"]), color))
    return tuple(classes)


def read_model_spec(model_dir: str | os.PathLike[str]) -> ModelSpec:
    """Parse and check model.yaml of a model folder; model.onnx must exist beside it."""
    root = Path(model_dir)
    if not root.is_dir():
        raise FailedPrecondition(f"model folder {root} does not exist")
    missing = [n for n in ("model.onnx", "model.yaml") if not (root / n).is_file()]
    if missing:
        raise FailedPrecondition(
            f"model folder {root} is incomplete: missing {', '.join(missing)} "
            "(a model folder holds model.onnx and model.yaml)"
        )
    where = str(root / "model.yaml")
    try:
        doc = yaml.safe_load((root / "model.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"{where}: not readable YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{where}: expected a mapping at the top level")
    fmt = doc.get("format", MODEL_FORMAT)
    if fmt != MODEL_FORMAT:
        raise InvalidArgument(f"{where}: format {fmt!r} is not supported (expected {MODEL_FORMAT})")

    classes = _parse_classes(doc, where)
    bands = doc.get("bands")
    if not isinstance(bands, list) or not bands:
        raise InvalidArgument(f"{where}: 'bands' must be a non-empty list of band names")
    bands_t = tuple(str(b) for b in bands)

    inp = doc.get("input") or {}
    input_name = str(inp.get("name", "input")) if isinstance(inp, dict) else "input"
    outs = doc.get("outputs") or {}
    if not isinstance(outs, dict) or "labels" not in outs:
        raise InvalidArgument(f"{where}: 'outputs' must name at least the 'labels' output")
    outputs = {str(k): str(v) for k, v in outs.items() if v}

    norm = doc.get("normalization") or {}
    n = len(bands_t)
    mean = _floats(norm.get("mean", [0.0] * n), n, f"{where}: normalization.mean")
    std = _floats(norm.get("std", [1.0] * n), n, f"{where}: normalization.std")

    tile = doc.get("tile") or {}
    if not isinstance(tile, dict):
        raise InvalidArgument(f"{where}: 'tile' must be a mapping with size, halo, multiple")
    multiple = _positive_int(tile.get("multiple", 1), f"{where}: tile.multiple")
    size = _positive_int(tile.get("size", 512), f"{where}: tile.size")
    halo = _positive_int(tile.get("halo", 0), f"{where}: tile.halo", minimum=0)
    if size % multiple:
        raise InvalidArgument(f"{where}: tile.size {size} is not a multiple of {multiple}")

    return ModelSpec(
        path=root,
        name=str(doc.get("name", root.name)),
        classes=classes,
        bands=bands_t,
        input_name=input_name,
        outputs=outputs,
        mean=mean,
        std=std,
        tile=TileSpec(size=size, halo=halo, multiple=multiple),
        raw=doc,
    )
