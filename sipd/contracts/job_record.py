"""A job as the engine hands it out: its row, with params and result typed."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from pydantic import Field, SerializeAsAny, ValidationError

from sipd.contracts.base import Contract
from sipd.contracts.jobs import JobParams, JobResult, JobType, parse_params, parse_result
from sipd.errors import Code, SipError, Unavailable

log = logging.getLogger("sipd.jobs")


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class Progress(Contract):
    stage: str
    fraction: float = Field(ge=0.0, le=1.0)
    message: str = ""
    metrics: dict[str, float] = {}
    time: float = 0.0
    eta_seconds: float = 0.0


class JobRecord(Contract):
    id: int
    type: JobType
    project: str = ""
    state: JobState
    # None only for a row whose params no longer parse (written by another
    # sipd version); such a job is failed with the reason when it would run.
    params: SerializeAsAny[JobParams] | None
    result: SerializeAsAny[JobResult] | None = None
    error: str = ""
    error_code: Code | None = None
    source: str = "api"
    create_time: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    progress: Progress | None = None

    @property
    def name(self) -> str:
        return f"jobs/{self.id}"

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def failure(self) -> SipError:
        """The error a caller waiting on this job sees when it did not succeed."""
        if self.state == JobState.CANCELLED:
            return Unavailable(f"the {self.type} job {self.name} was cancelled: {self.error}")
        if not self.final:
            return Unavailable(f"the {self.type} job {self.name} did not end in time")
        return SipError(
            self.error or f"the {self.type} job failed", self.error_code or Code.INTERNAL
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobRecord:
        """A store row (JSON already decoded) -> JobRecord."""
        params: JobParams | None
        try:
            params = parse_params(row["type"], row["params"] or {})
        except (ValidationError, ValueError) as exc:
            log.warning("job %s: stored params do not parse: %s", row["id"], exc)
            params = None
        result = None
        if row["result"] is not None:
            try:
                result = parse_result(row["type"], row["result"])
            except (ValidationError, ValueError) as exc:
                log.warning("job %s: stored result does not parse: %s", row["id"], exc)
        return cls(
            id=row["id"],
            type=row["type"],
            project=row["project"] or "",
            state=row["state"],
            params=params,
            result=result,
            error=row["error"] or "",
            error_code=Code.parse(row["error_code"]) if row["error_code"] else None,
            source=row["source"] or "",
            create_time=row["create_time"] or 0.0,
            start_time=row["start_time"],
            end_time=row["end_time"],
            progress=Progress.model_validate(row["progress"]) if row["progress"] else None,
        )
