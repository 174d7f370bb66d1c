"""model.yaml, the model card: one type, one reader, one writer (models/README.md).

The card says everything needed to use a version's graph: classes, band
order, input and output names, normalization, tiling, architecture, how it
was trained and how the export was checked. `ModelCard` is format
sipd-model/2; cards of format sipd-model/1 (what sipd wrote before) are
upgraded in memory when read, never rewritten on disk: a published version
does not change.

Every error names the file and the field, and says what is accepted.
Torch-free and onnxruntime-free: the daemon lists models with it.
"""

from __future__ import annotations

import datetime as dt
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.modelrepo.layout import CARD_FILE, FP16_FILE

MODEL_FORMAT = "sipd-model/2"
FORMAT_1 = "sipd-model/1"
SUPPORTED_FORMATS = (FORMAT_1, MODEL_FORMAT)
OUTPUT_ROLES = ("labels", "confidence", "probabilities")
# A label map is uint8 with 0 for background / nodata: at most 254 classes (255 = ignore).
MAX_CLASSES = 254

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_DERIVED_FROM = re.compile(r"^projects/[^/]+/models/\d+$")


class _Part(BaseModel):
    """Frozen, and an unknown field is an error: a misspelled key must not be ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ClassDef(_Part):
    """Output label `value` (1..K) is this class; `color` is '#rrggbb' for the colour map."""

    value: int = Field(ge=1, le=MAX_CLASSES)
    name: str = Field(min_length=1)
    color: str

    @field_validator("color")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _COLOR.match(v):
            raise ValueError(f"{v!r} is not '#rrggbb' (e.g. '#228b22')")
        return v.lower()

    @property
    def rgb(self) -> tuple[int, int, int]:
        return (int(self.color[1:3], 16), int(self.color[3:5], 16), int(self.color[5:7], 16))


class InputSpec(_Part):
    name: str = Field(default="input", min_length=1)
    dtype: Literal["float32"] = "float32"
    layout: Literal["NCHW"] = "NCHW"


class Outputs(_Part):
    """Graph output name per role; only `labels` is required."""

    labels: str = Field(min_length=1)
    confidence: str | None = None
    probabilities: str | None = None

    def by_role(self) -> dict[str, str]:
        """{role: graph output name} for the roles the graph has."""
        return {role: name for role in OUTPUT_ROLES if (name := getattr(self, role))}


class Normalization(_Part):
    """Per band, applied inside the graph: (x - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


class Tile(_Part):
    size: int = Field(ge=1)  # default tile edge for prediction
    halo: int = Field(ge=0)  # overlap per side that makes tiles seamless
    multiple: int = Field(ge=1)  # every input H and W must be a multiple of this

    @model_validator(mode="after")
    def _size_is_a_multiple(self) -> Tile:
        if self.size % self.multiple:
            raise ValueError(
                f"size {self.size} is not a multiple of {self.multiple} (the tile's multiple)"
            )
        return self


class Architecture(_Part):
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingSummary(_Part):
    """Hyper-parameters and a data summary; all optional (a card may come from elsewhere)."""

    epochs: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    seed: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    augment: bool | None = None
    patience: int | None = None
    device: str | None = None
    selection: str | None = None
    class_weights: tuple[float, ...] | None = None
    scenes: tuple[str, ...] | None = None
    labeled_pixels: dict[str, dict[str, int]] | None = None
    note: str | None = None
    # Optimizer steps per epoch at most (None: one pass over the chips).
    steps_per_epoch: int | None = None
    # The output-bias shift from the labels' class mix to the scenes'
    # (sipd/training/priors.py): labels_prior, scene_prior, logit_shift.
    prior_correction: dict[str, list[float]] | None = None  # + check_accuracy before, after


class OnnxCheck(_Part):
    """onnxruntime against torch on the same input: the largest probability difference."""

    max_abs_diff: float = Field(ge=0)
    tolerance: float = Field(gt=0)


class Fp16Variant(_Part):
    file: str = FP16_FILE
    onnx_check: OnnxCheck


class ModelCard(_Part):
    """model.yaml of format sipd-model/2 (models/README.md)."""

    format: Literal["sipd-model/2"] = MODEL_FORMAT
    name: str = Field(min_length=1)  # the resource name the version was published as
    project: str = Field(min_length=1)
    version: int = Field(ge=1)
    created: AwareDatetime
    # Re-exports: the version whose checkpoint this one was exported from.
    derived_from: str | None = None
    classes: tuple[ClassDef, ...] = Field(min_length=1, max_length=MAX_CLASSES)
    bands: tuple[str, ...] = Field(min_length=1)
    input: InputSpec = Field(default_factory=InputSpec)
    outputs: Outputs
    normalization: Normalization
    tile: Tile
    architecture: Architecture
    training: TrainingSummary | None = None
    onnx_check: OnnxCheck | None = None
    fp16: Fp16Variant | None = None
    # How raw products become this model's input: the recipe (name, version and
    # options) every training scene was made with; None when they were not.
    preprocessing: PreprocessStep | None = None

    @field_validator("derived_from")
    @classmethod
    def _derived_name(cls, v: str | None) -> str | None:
        if v is not None and not _DERIVED_FROM.match(v):
            raise ValueError(f"{v!r} is not a model version name (projects/PROJECT/models/N)")
        return v

    @field_validator("classes")
    @classmethod
    def _values_in_order(cls, v: tuple[ClassDef, ...]) -> tuple[ClassDef, ...]:
        # The graph emits label k for classes[k-1]; anything else would silently
        # mislabel the map.
        values = [c.value for c in v]
        if values != list(range(1, len(v) + 1)):
            raise ValueError(f"class values {values} must be 1..K in order (label k is class k)")
        return v

    @field_validator("normalization")
    @classmethod
    def _one_per_band(cls, v: Normalization, info: ValidationInfo) -> Normalization:
        bands = info.data.get("bands")
        if bands is not None:
            for key in ("mean", "std"):
                n = len(getattr(v, key))
                if n != len(bands):
                    raise ValueError(
                        f"{key} has {n} value(s) but there are {len(bands)} "
                        f"bands {list(bands)}; give one per band"
                    )
        if any(s <= 0 for s in v.std):
            raise ValueError(f"std must be > 0 for every band, got {list(v.std)}")
        return v

    @property
    def created_timestamp(self) -> float:
        return self.created.timestamp()


# -- reading ----------------------------------------------------------------------------


def read_card(model_dir: str | Path) -> ModelCard:
    """The model card of a model folder, checked (format 1 upgraded in memory)."""
    return load_card(model_dir)[0]


def load_card(model_dir: str | Path) -> tuple[ModelCard, str]:
    """(card, the file's text as written) of a model folder."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise FailedPrecondition(f"model folder {folder} does not exist")
    path = folder / CARD_FILE
    try:
        text = path.read_text(encoding="utf-8")
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        raise FailedPrecondition(
            f"model folder {folder} is incomplete: missing {CARD_FILE} "
            "(a model folder holds model.onnx and model.yaml)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: not readable: {exc}") from exc
    return parse_card(text, path, mtime=mtime), text


def parse_card(text: str, where: Path, *, mtime: float | None = None) -> ModelCard:
    """Parse model.yaml text; `where` is the file (for messages, and the folder for format 1)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{where}: not readable YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{where}: expected a mapping of fields at the top level")
    fmt = doc.get("format", FORMAT_1)  # format 1 cards written by hand could omit it
    note = ""
    if fmt == FORMAT_1:
        doc = upgrade_format1(doc, Path(where).parent, mtime)
        note = f" (a {FORMAT_1} card, read through the upgrader)"
    elif fmt != MODEL_FORMAT:
        raise InvalidArgument(
            f"{where}: format {fmt!r} is not supported; this sipd reads "
            f"{' and '.join(SUPPORTED_FORMATS)}"
        )
    try:
        return ModelCard.model_validate(doc)
    except ValidationError as exc:
        raise InvalidArgument(f"{where}{note}: {describe(exc)}") from None


def upgrade_format1(doc: dict[str, Any], folder: Path, mtime: float | None) -> dict[str, Any]:
    """A sipd-model/1 document as a sipd-model/2 one (the same fields, filled in).

    Format 1 was read leniently: a missing value, colour, input, normalization
    or tile took a default, and output roles other than the three known were
    ignored. This applies those defaults, so every card that loaded before
    loads now; the checks of format 2 then apply to the result. Keys that
    format 2 does not know are dropped (they were never used).
    """
    out: dict[str, Any] = {"format": MODEL_FORMAT}
    version = doc.get("version")
    if version is None:
        version = int(folder.name) if folder.name.isdigit() else 1
    project = doc.get("project") or folder.parent.name
    out["name"] = doc.get("name") or f"projects/{project}/models/{version}"
    out["project"] = project
    out["version"] = version
    out["created"] = _created(doc.get("created"), mtime)

    classes = doc.get("classes")
    if isinstance(classes, list):
        classes = [_class1(item, i) for i, item in enumerate(classes, start=1)]
    out["classes"] = classes
    bands = doc.get("bands")
    if isinstance(bands, list):
        bands = [str(b) for b in bands]  # format 1 took `bands: [1, 2]` as names "1", "2"
    out["bands"] = bands

    # Format 1 read only the input's name; the graph input is float32 NCHW either way.
    inp = doc.get("input")
    name = inp.get("name") if isinstance(inp, dict) else None
    out["input"] = {"name": str(name or "input"), "dtype": "float32", "layout": "NCHW"}
    outputs = doc.get("outputs")
    if isinstance(outputs, dict):
        outputs = {k: str(v) for k, v in outputs.items() if k in OUTPUT_ROLES and v}
    out["outputs"] = outputs

    n = len(bands) if isinstance(bands, list) else 0
    norm = doc.get("normalization")
    out["normalization"] = {"mean": [0.0] * n, "std": [1.0] * n} | (
        norm if isinstance(norm, dict) else {}
    )
    tile = doc.get("tile") or {}
    if isinstance(tile, dict):
        tile = {"size": 512, "halo": 0, "multiple": 1} | tile
    out["tile"] = tile
    arch = doc.get("architecture") or {}
    if isinstance(arch, dict):
        arch = {"name": "unknown", "params": {}} | arch
    out["architecture"] = arch
    training = doc.get("training")
    if isinstance(training, dict):
        known = TrainingSummary.model_fields
        out["training"] = {k: v for k, v in training.items() if k in known}
    for key in ("onnx_check", "fp16"):
        if doc.get(key) is not None:
            out[key] = doc[key]
    return out


def _created(value: Any, mtime: float | None) -> Any:
    if value is None:
        # Before format 2 `created` was optional; the card's file time is when it was written.
        stamp = mtime if mtime is not None else 0.0
        return dt.datetime.fromtimestamp(stamp, dt.UTC).replace(microsecond=0)
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)  # YAML timestamps without a zone are UTC
    return value


def _class1(item: Any, index: int) -> Any:
    if not isinstance(item, dict):
        return item
    item = {"value": index, "color": "#808080"} | item
    if "name" in item:
        item["name"] = str(item["name"])
    color = item["color"]
    if isinstance(color, str):
        color = color.strip()
        item["color"] = color if color.startswith("#") else "#" + color  # format 1 took 'rrggbb'
    return item


# -- writing ----------------------------------------------------------------------------


def dump_card(card: ModelCard) -> str:
    """The YAML text of a card: fields in the documented order, unset optional ones left out."""
    data = card.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def write_card(folder: Path, card: ModelCard) -> Path:
    """Write model.yaml into a folder being built (staging); published cards are never rewritten."""
    path = Path(folder) / CARD_FILE
    path.write_text(dump_card(card), encoding="utf-8")
    return path


# -- messages ---------------------------------------------------------------------------


def describe(exc: ValidationError) -> str:
    """Pydantic's errors as 'field: what is wrong' clauses, named as in the YAML."""
    errors = exc.errors()
    parts = []
    for err in errors:
        where, kind = err["loc"], err["type"]
        # A list with a bad item is also reported as "too short" (the bad item
        # does not count); the item's own error is the one that helps.
        if kind == "too_short" and any(
            e is not err and e["loc"][: len(where)] == where for e in errors
        ):
            continue
        ctx = err.get("ctx") or {}
        if kind == "extra_forbidden":
            accepted = _accepted_fields(where[:-1])
            msg = "unknown field" + (f"; accepted: {', '.join(accepted)}" if accepted else "")
        elif kind == "missing":
            msg = "required field is missing"
        elif kind == "too_short":
            msg = f"needs at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length')}"
        elif kind in ("int_parsing", "int_type", "int_from_float"):
            msg = f"must be an integer, got {err.get('input')!r}"
        elif kind in ("float_parsing", "float_type"):
            msg = f"must be a number, got {err.get('input')!r}"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        loc = _dotted(where)
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _accepted_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the card part at `loc` (for 'unknown field' messages)."""
    model: type[BaseModel] = ModelCard
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        found = _model_in(field.annotation) if field else None
        if found is None:
            return []
        model = found
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
