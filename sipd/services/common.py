"""Shared servicer plumbing: error mapping, resource names, paging, timestamps."""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2
from sipapi.v1 import common_pb2

from sipd.errors import Code, InvalidArgument, SipError

log = logging.getLogger("sipd.api")

F = TypeVar("F", bound=Callable[..., Any])

# Every Code is named after the gRPC status it maps to.
_STATUS = {code: grpc.StatusCode[code.value] for code in Code}


def rpc(fn: F) -> F:
    """Map domain errors to status codes; a bug becomes INTERNAL and is logged with its trace."""

    def fail(context: grpc.ServicerContext, exc: BaseException) -> None:
        if isinstance(exc, SipError):
            context.abort(_STATUS[exc.code], str(exc))
        log.exception("%s failed", fn.__qualname__)
        context.abort(
            grpc.StatusCode.INTERNAL,
            f"internal error in {fn.__name__}: {type(exc).__name__}: {exc} "
            "(details in the daemon log)",
        )

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from fn(self, request, context)
            except Exception as exc:
                if _is_abort(exc):
                    raise
                fail(context, exc)

        return stream  # type: ignore[return-value]

    @functools.wraps(fn)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            fail(context, exc)

    return unary  # type: ignore[return-value]


def _is_abort(exc: BaseException) -> bool:
    # context.abort raises a private exception type; let it through untouched.
    return type(exc).__name__ == "_AbortError" or type(exc).__module__.startswith("grpc")


def unimplemented(service: str, method: str, planned: str) -> Callable[..., Any]:
    def method_impl(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{service}.{method} is not available in this sipd yet ({planned})",
        )

    return method_impl


# -- resource names ----------------------------------------------------------------

_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"


def parse_name(name: str, pattern: str, what: str) -> tuple[str, ...]:
    """Match `name` against a pattern like 'projects/{}/scenes/{}'; return the ids."""
    regex = "^" + re.escape(pattern).replace(r"\{\}", f"({_ID})") + "$"
    match = re.match(regex, name or "")
    if not match:
        example = pattern.replace("{}", "ID")
        raise InvalidArgument(f"{what} {name!r} is not a valid name; expected {example}")
    return match.groups()


def project_id(name: str) -> str:
    return parse_name(name, "projects/{}", "project name")[0]


def job_id(name: str) -> int:
    match = re.match(r"^jobs/(\d+)$", name or "")
    if not match:
        raise InvalidArgument(f"job name {name!r} is not valid; expected jobs/N, e.g. jobs/42")
    return int(match.group(1))


# -- paging -------------------------------------------------------------------------


def page(items: Sequence[Any], page_size: int, page_token: str) -> tuple[list[Any], str]:
    size = _page_size(page_size)
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        raise InvalidArgument(
            f"page_token {page_token!r} was not returned by this method"
        ) from None
    chunk = list(items[start : start + size])
    more = start + size < len(items)
    return chunk, str(start + size) if more else ""


def _page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument(f"page_size must be 0 (default 100) or positive, got {page_size}")
    return min(page_size or 100, 1000)


# -- conversion ---------------------------------------------------------------------


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if not seconds:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def label_counts(counts: dict[str, dict[str, int]]) -> list[common_pb2.LabelCount]:
    """{split: {class: pixels}} -> LabelCount messages."""
    return [
        common_pb2.LabelCount(class_name=name, split=split_enum(split), pixels=int(pixels))
        for split, per_class in counts.items()
        for name, pixels in per_class.items()
    ]


def split_enum(split: str) -> int:
    return common_pb2.Split.Value(f"SPLIT_{str(split).upper()}")


def split_name(value: int, default: str = "train") -> str:
    if value == common_pb2.SPLIT_UNSPECIFIED:
        return default
    return common_pb2.Split.Name(value).removeprefix("SPLIT_").lower()
