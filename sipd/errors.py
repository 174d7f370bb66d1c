"""Domain errors.

Domain code raises these; the gRPC servicers map each to its status code, and
the job engine records them as a failed job's reason. Messages are shown to
people as they are, so each says what was wrong and what is accepted.
"""

from __future__ import annotations


class SipError(Exception):
    """Base of every error a user can act on."""

    code = "INTERNAL"


class InvalidArgument(SipError):
    code = "INVALID_ARGUMENT"


class NotFound(SipError):
    code = "NOT_FOUND"


class AlreadyExists(SipError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(SipError):
    code = "FAILED_PRECONDITION"


class PermissionDenied(SipError):
    code = "PERMISSION_DENIED"


class ResourceExhausted(SipError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(SipError):
    """Transient: worth retrying later (a busy device, a file still locked)."""

    code = "UNAVAILABLE"

