"""A watch's definition, checked the same way for the API and sipd.yaml."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from sipd.contracts.base import Contract
from sipd.contracts.jobs import describe
from sipd.errors import InvalidArgument

WATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
# Folders inside an inbox the watch itself writes to; never scanned.
PROCESSED_DIR = "processed"
FAILED_DIR = "failed"


class WatchSpec(Contract):
    """A watch, checked when built (sipd.contracts style: frozen, unknown fields refused)."""

    id: str
    inbox: str
    outbox: str
    project: str
    model: str = "latest"
    pattern: str = "*"
    recursive: bool = False
    on_success: Literal["keep", "move", "delete"] = "keep"
    # 0 = the daemon's watch.quiet_seconds.
    quiet_seconds: float = Field(default=0.0, ge=0)
    require_sentinel: bool = False
    confidence: bool = False
    # Arrivals are raw products made into scenes by this recipe ("name@version",
    # pinned when the watch is made); "" = arrivals are classifiable rasters.
    recipe: str = ""
    keep_preprocessed: bool = True

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not WATCH_ID.match(value):
            raise ValueError(
                f"watch id {value!r} is not valid; use 1-63 letters, digits, '-' and '_', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        return value.removeprefix("projects/")

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        # "projects/p/models/3", "3" and "latest" all name a version.
        model = (value or "latest").rsplit("/", 1)[-1]
        if model != "latest" and not model.isdigit():
            raise ValueError(f"model {value!r} is not a version number or 'latest'")
        return model

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if "/" in value:
            raise ValueError(
                f"pattern {value!r} matches file names, so it cannot hold '/'; "
                "use --recursive to take files from sub-folders"
            )
        return value or "*"

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @property
    def outbox_path(self) -> Path:
        return Path(self.outbox)


def spec_from_dict(data: dict[str, Any], where: str) -> WatchSpec:
    """A WatchSpec from loose data (sipd.yaml or the API), with every field checked."""
    known = set(WatchSpec.model_fields)
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidArgument(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    for required in ("id", "inbox", "outbox", "project"):
        if not str(data.get(required) or "").strip():
            raise InvalidArgument(f"{where}: {required} is required")
    fields = {k: v for k, v in data.items() if v is not None and v != ""}
    if isinstance(fields.get("on_success"), str):
        fields["on_success"] = fields["on_success"].lower()
    try:
        return WatchSpec(**fields)
    except ValidationError as exc:
        raise InvalidArgument(f"{where}: {describe(exc)}") from None


def check_folders(inbox: Path, outbox: Path, where: str = "watch") -> None:
    """Inbox and outbox must be distinct and not nested: outputs would be taken as scenes."""
    if inbox == outbox or inbox.is_relative_to(outbox) or outbox.is_relative_to(inbox):
        raise InvalidArgument(
            f"{where}: inbox {inbox} and outbox {outbox} must be different folders, "
            "neither inside the other"
        )
