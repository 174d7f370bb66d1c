"""Output: protobuf messages as plain data, tables, and the job progress bar."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def to_plain(msg: Message) -> dict[str, Any]:
    """Message -> JSON-ready dict: field names as in the proto, int64 as numbers
    (json_format would make them strings), enums as names, unset messages left out."""
    name = msg.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        return msg.ToJsonString()  # type: ignore[return-value,attr-defined]
    if name in ("google.protobuf.Struct", "google.protobuf.Value"):
        return json_format.MessageToDict(msg)
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _value(value_field, v) for k, v in value.items()}
        elif _is_repeated(field):
            out[field.name] = [_value(field, v) for v in value]
        elif field.has_presence:
            if msg.HasField(field.name):
                out[field.name] = _value(field, value)
        else:
            out[field.name] = _value(field, value)
    return out


def _is_repeated(field: FieldDescriptor) -> bool:
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return field.label == FieldDescriptor.LABEL_REPEATED


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == "sip.v1.ConfusionRow":
            # Scripts want a plain matrix: [[...], [...]], not [{"counts": [...]}].
            return [int(n) for n in value.counts]
        return to_plain(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return (
            field.enum_type.values_by_number[value].name
            if value in field.enum_type.values_by_number
            else value
        )
    if field.type in _INT64:
        return int(value)
    return value


def print_json(data: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def table(rows: list[list[Any]], headers: list[str], out: TextIO = sys.stdout) -> None:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressBar:
    """One self-rewriting line on a terminal; plain lines on a stage change otherwise."""

    def __init__(self, out: TextIO = sys.stderr, width: int = 28) -> None:
        self.out = out
        self.width = width
        self.tty = out.isatty()
        self._last_stage = ""
        self._last_line = 0.0
        self._drawn = False

    def update(self, job: Any) -> None:
        p = job.progress
        stage = p.stage or job.type
        fraction = max(0.0, min(1.0, p.fraction))
        metrics = " ".join(f"{k}={_num(v)}" for k, v in sorted(p.metrics.items()) if k != "epoch")
        eta = f" ETA {duration(p.eta_seconds)}" if p.eta_seconds > 0 else ""
        if self.tty:
            filled = int(round(fraction * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"{stage:<10} [{bar}] {fraction * 100:5.1f}%{eta} {p.message} {metrics}".rstrip()
            self.out.write("\r\033[K" + line[:160])
            self.out.flush()
            self._drawn = True
        elif stage != self._last_stage or metrics and time.monotonic() - self._last_line > 0.5:
            self.out.write(
                f"{job.name} {stage} {fraction * 100:.0f}% {p.message} {metrics}".rstrip() + "\n"
            )
            self._last_line = time.monotonic()
        self._last_stage = stage

    def close(self) -> None:
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False


def _num(value: float) -> str:
    return f"{value:.4g}"
