"""Domain errors and their status codes.

Domain code raises these; the gRPC servicers map each `Code` to the gRPC
status of the same name, the job engine records it as a failed job's
`error_code`, and the watch dispatcher decides from it whether a failure is
worth retrying (`is_transient`). Messages are shown to people as they are,
so each says what was wrong and what is accepted.
"""

from __future__ import annotations

import errno
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


# Longest user value quoted in a message: a name or path of 10 kB must not
# make a 10 kB status message.
QUOTE_CHARS = 200


def bounded(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` cut to `limit` characters, with an ellipsis saying it was cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…"


# "No space left on device" (ENOSPC) and "Disk quota exceeded" (EDQUOT).
_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_FULL_TEXT = ("no space left on device", "disk quota exceeded")


def disk_full(exc: BaseException) -> ResourceExhausted | None:
    """A RESOURCE_EXHAUSTED error when `exc` (or what caused it) is a full disk, else None.

    Python reports it as OSError ENOSPC; GDAL (rasterio) reports a failed
    write whose message carries the C library's text, so the text is read
    too. RESOURCE_EXHAUSTED is transient: a watch retries once space is freed.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            where = current.filename
            return ResourceExhausted(
                "no space left on device"
                + (f" at {bounded(str(where))}" if where else "")
                + "; free space there or point sipd elsewhere, then try again"
            )
        if any(t in str(current).lower() for t in _FULL_TEXT):
            return ResourceExhausted(
                f"no space left on device ({bounded(str(current))}); free space and try again"
            )
        current = current.__cause__ or current.__context__
    return None
