"""Evaluation records: one JSON file per evaluation of a version, under <version>/evaluations/.

A published version never changes, so a test report is not written into it:
it is a new file of its own beside it, written once and never modified.
Records sort by name in the order they were made (the name starts with a
UTC timestamp). Versions published before records existed may hold a test
report in metrics.json; it is listed as the oldest evaluation.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticSerializationError

from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.modelrepo.layout import CARD_FILE, EVALUATIONS_DIR, METRICS_FILE, write_new_file

log = logging.getLogger("sipd.modelrepo")

EVALUATION_FORMAT = "sipd-evaluation/1"
# `source` of the test report that format-1 versions kept in metrics.json.
LEGACY_SOURCE = "metrics.json"


class Evaluation(BaseModel):
    """One evaluation of a model version: who made it, when, and its report."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["sipd-evaluation/1"] = EVALUATION_FORMAT
    id: str  # the file name without .json; "metrics.json#test" for a legacy report
    source: str = Field(min_length=1)  # what made it: "test" (the test job), ...
    created: AwareDatetime
    scenes: tuple[str, ...] = ()  # scene ids the report is about
    report: dict[str, Any]  # e.g. an accuracy report (sipd.accuracy.accuracy_report)


def record_evaluation(
    model_dir: str | Path,
    report: dict[str, Any],
    source: str = "test",
    *,
    scenes: Sequence[str] = (),
) -> Path:
    """Store an evaluation of a published version as a new file; returns its path.

    Nothing existing is modified: the record is written under a fresh name
    (UTC time + random suffix) through a temporary file, so a reader sees
    either no record or the whole one.
    """
    folder = Path(model_dir)
    if not (folder / CARD_FILE).is_file():
        raise FailedPrecondition(f"{folder} is not a model version folder (it has no {CARD_FILE})")
    if not source:
        raise InvalidArgument("an evaluation needs a source (what made it, e.g. 'test')")
    now = dt.datetime.now(dt.UTC)
    ident = f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
    record = Evaluation(id=ident, source=source, created=now, scenes=tuple(scenes), report=report)
    try:
        data = record.model_dump(mode="json", exclude={"id"})  # the file name is the id
        text = json.dumps(data, indent=2) + "\n"
    except (TypeError, ValueError, PydanticSerializationError) as exc:
        raise InvalidArgument(f"an evaluation report must be plain JSON data: {exc}") from exc
    return write_new_file(folder / EVALUATIONS_DIR / f"{ident}.json", text)


def list_evaluations(model_dir: str | Path) -> tuple[Evaluation, ...]:
    """A version's evaluations, oldest first; an unreadable record is skipped with a warning.

    Evaluations are additions to a version, not part of it: one damaged file
    must not make the version itself unusable.
    """
    folder = Path(model_dir)
    out: list[Evaluation] = []
    legacy = _legacy_test(folder)
    if legacy is not None:
        out.append(legacy)
    records = folder / EVALUATIONS_DIR
    if records.is_dir():
        for path in sorted(records.glob("*.json")):
            if path.name.startswith("."):
                continue  # a record being written
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                out.append(Evaluation.model_validate({**data, "id": path.stem}))
            except (OSError, ValueError, TypeError, ValidationError) as exc:
                log.warning("skipping evaluation record %s: %s", path, exc)
    return tuple(out)


def _legacy_test(folder: Path) -> Evaluation | None:
    path = folder / METRICS_FILE
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        test = metrics.get("test") if isinstance(metrics, dict) else None
        if not isinstance(test, dict):
            return None
        created = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    except (OSError, ValueError):
        return None
    return Evaluation(id=f"{METRICS_FILE}#test", source=LEGACY_SOURCE, created=created, report=test)
