"""A watch's definition as plain data, checked the same way for the API and sipd.yaml."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from sipd.errors import InvalidArgument

WATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
ON_SUCCESS = ("keep", "move", "delete")
# Folders inside an inbox the watch itself writes to; never scanned.
PROCESSED_DIR = "processed"
FAILED_DIR = "failed"


@dataclass
class WatchSpec:
    id: str
    inbox: str
    outbox: str
    project: str
    model: str = "latest"
    pattern: str = "*"
    recursive: bool = False
    on_success: str = "keep"
    # 0 = the daemon's watch.quiet_seconds.
    quiet_seconds: float = 0.0
    require_sentinel: bool = False
    confidence: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def outbox_path(self) -> Path:
        return Path(self.outbox)


def spec_from_dict(data: dict[str, Any], where: str) -> WatchSpec:
    """A WatchSpec from loose data (sipd.yaml or the API), with every field checked."""
    known = {f.name for f in fields(WatchSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidArgument(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    for required in ("id", "inbox", "outbox", "project"):
        if not str(data.get(required) or "").strip():
            raise InvalidArgument(f"{where}: {required} is required")
    spec = WatchSpec(
        id=str(data["id"]),
        inbox=str(data["inbox"]),
        outbox=str(data["outbox"]),
        project=str(data["project"]).removeprefix("projects/"),
        model=str(data.get("model") or "latest"),
        pattern=str(data.get("pattern") or "*"),
        recursive=_bool(data.get("recursive", False), f"{where}: recursive"),
        on_success=str(data.get("on_success") or "keep").lower(),
        quiet_seconds=_float(data.get("quiet_seconds", 0.0), f"{where}: quiet_seconds"),
        require_sentinel=_bool(data.get("require_sentinel", False), f"{where}: require_sentinel"),
        confidence=_bool(data.get("confidence", False), f"{where}: confidence"),
    )
    validate(spec, where)
    return spec


def validate(spec: WatchSpec, where: str = "watch") -> None:
    if not WATCH_ID.match(spec.id):
        raise InvalidArgument(
            f"{where}: watch id {spec.id!r} is not valid; use 1-63 letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    model = spec.model.rsplit("/", 1)[-1]
    if model != "latest" and not model.isdigit():
        raise InvalidArgument(f"{where}: model {spec.model!r} is not a version number or 'latest'")
    spec.model = model
    if spec.on_success not in ON_SUCCESS:
        raise InvalidArgument(
            f"{where}: on_success {spec.on_success!r} is not one of: {', '.join(ON_SUCCESS)}"
        )
    if spec.quiet_seconds < 0:
        raise InvalidArgument(f"{where}: quiet_seconds must be 0 (default) or positive")
    if "/" in spec.pattern:
        raise InvalidArgument(
            f"{where}: pattern {spec.pattern!r} matches file names, so it cannot hold '/'; "
            "use --recursive to take files from sub-folders"
        )


def check_folders(inbox: Path, outbox: Path, where: str = "watch") -> None:
    """Inbox and outbox must be distinct and not nested: outputs would be taken as scenes."""
    if inbox == outbox or inbox.is_relative_to(outbox) or outbox.is_relative_to(inbox):
        raise InvalidArgument(
            f"{where}: inbox {inbox} and outbox {outbox} must be different folders, "
            "neither inside the other"
        )


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidArgument(f"{where} must be true or false, got {value!r}")


def _float(value: Any, where: str) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{where} must be a number, got {value!r}") from None
