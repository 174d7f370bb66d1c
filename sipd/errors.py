"""Domain errors and their status codes.

Domain code raises these; the gRPC servicers map each `Code` to the gRPC
status of the same name, the job engine records it as a failed job's
`error_code`, and the watch dispatcher decides from it whether a failure is
worth retrying (`is_transient`). Messages are shown to people as they are,
so each says what was wrong and what is accepted.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Outcome codes of failed work, named as gRPC status codes (same meaning)."""

    CANCELLED = "CANCELLED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    # Work stopped by something outside it: the daemon was killed or restarted
    # while the job ran. Running it again as it was may well succeed.
    ABORTED = "ABORTED"
    # Transient: a busy device, a file still locked, or the worker process
    # died under the job (out of memory, a crash in native code).
    UNAVAILABLE = "UNAVAILABLE"
    # A bug in sipd: the same input fails the same way again.
    INTERNAL = "INTERNAL"

    @classmethod
    def parse(cls, text: str) -> Code:
        """A stored code back into the enum; anything unknown reads as INTERNAL."""
        try:
            return cls(text)
        except ValueError:
            return cls.INTERNAL


# Failures that say nothing about the input and may pass on a later try.
TRANSIENT = frozenset({Code.ABORTED, Code.UNAVAILABLE, Code.RESOURCE_EXHAUSTED})


def is_transient(code: Code | str) -> bool:
    return Code.parse(str(code)) in TRANSIENT


class SipError(Exception):
    """Base of every error a user can act on."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str = "", code: Code | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgument(SipError):
    code = Code.INVALID_ARGUMENT


class NotFound(SipError):
    code = Code.NOT_FOUND


class AlreadyExists(SipError):
    code = Code.ALREADY_EXISTS


class FailedPrecondition(SipError):
    code = Code.FAILED_PRECONDITION


class PermissionDenied(SipError):
    code = Code.PERMISSION_DENIED


class ResourceExhausted(SipError):
    code = Code.RESOURCE_EXHAUSTED


class Unavailable(SipError):
    """Transient: worth retrying later (a busy device, a file still locked)."""

    code = Code.UNAVAILABLE

