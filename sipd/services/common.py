"""Shared servicer plumbing: error mapping, resource names, paging, timestamps."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2
from sipapi.v1 import common_pb2

from sipd.errors import Code, InvalidArgument, ResourceExhausted, SipError, bounded, disk_full

log = logging.getLogger("sipd.api")

F = TypeVar("F", bound=Callable[..., Any])

# Every Code is named after the gRPC status it maps to.
_STATUS = {code: grpc.StatusCode[code.value] for code in Code}


def rpc(fn: F) -> F:
    """Map domain errors to status codes; a bug becomes INTERNAL and is logged with its trace."""

    def fail(context: grpc.ServicerContext, exc: BaseException) -> None:
        # Messages are bounded: one quoting a 10 kB name would exceed the
        # metadata limit and reach the client as RESOURCE_EXHAUSTED "Stream removed".
        if isinstance(exc, SipError):
            context.abort(_STATUS[exc.code], bounded_message(str(exc)))
        full = disk_full(exc)
        if full is not None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, bounded_message(str(full)))
        if isinstance(exc, RecursionError):
            # Deeply nested input (JSON, WKT) reached a recursive parser.
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the input is nested too deeply to read; flatten it and try again",
            )
        log.exception("%s failed", fn.__qualname__)
        context.abort(
            grpc.StatusCode.INTERNAL,
            bounded_message(
                f"internal error in {fn.__name__}: {type(exc).__name__}: {bounded(str(exc))} "
                "(details in the daemon log)"
            ),
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


# Longest status message sent: gRPC carries it in a header (8 kB by default).
MAX_MESSAGE_CHARS = 1000


def bounded_message(message: str) -> str:
    """A status message cut to MAX_MESSAGE_CHARS, so no input can make it unsendable."""
    return bounded(message, MAX_MESSAGE_CHARS)


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
    regex = re.escape(pattern).replace(r"\{\}", f"({_ID})")
    match = re.fullmatch(regex, name or "")
    if not match:
        example = pattern.replace("{}", "ID")
        raise InvalidArgument(
            f"{what} {bounded(repr(name))} is not a valid name; expected {example}"
        )
    return match.groups()


def project_id(name: str) -> str:
    return parse_name(name, "projects/{}", "project name")[0]


# Job and ROI ids are SQLite integers: anything larger names nothing (and overflows SQLite).
MAX_ROW_ID = 2**63 - 1


def row_number(text: str, limit: int = MAX_ROW_ID) -> int | None:
    """`text` as a SQLite row number (job id, ROI id, page offset), or None.

    [0-9], not \\d or str.isdigit: those also take other scripts' digits
    ("٣" is not 3); fullmatch, because "$" would also accept a trailing newline;
    at most `limit`, so that no number overflows SQLite's integers.
    """
    if not re.fullmatch(r"[0-9]{1,19}", text or ""):
        return None
    value = int(text)
    return value if value <= limit else None


def job_id(name: str) -> int:
    number = row_number(name.removeprefix("jobs/")) if (name or "").startswith("jobs/") else None
    if number is None:
        raise InvalidArgument(
            f"job name {bounded(repr(name))} is not valid; expected jobs/N with N a job number, "
            "e.g. jobs/42"
        )
    return number


def page_start(page_token: str, method: str, limit: int = MAX_ROW_ID) -> int:
    """A page token this daemon made: a non-negative decimal integer of at most `limit`."""
    start = row_number(page_token, limit)
    if start is None:
        raise InvalidArgument(
            f"page_token {bounded(repr(page_token))} was not returned by {method}; "
            "leave it empty for the first page"
        )
    return start


# -- paging -------------------------------------------------------------------------


def page(items: Sequence[Any], page_size: int, page_token: str) -> tuple[list[Any], str]:
    size = _page_size(page_size)
    start = page_start(page_token, "this method") if page_token else 0
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
    return enum_name(common_pb2.Split, value, "split").removeprefix("SPLIT_").lower()


def enum_name(enum: Any, value: int, field: str) -> str:
    """The name of a proto enum value; an unknown number (proto3 keeps them) is refused."""
    try:
        return str(enum.Name(value))
    except ValueError:
        known = ", ".join(f"{n} ({v})" for n, v in enum.items())
        raise InvalidArgument(f"{field} {value} is not one of: {known}") from None


# -- streaming calls ----------------------------------------------------------------


class StreamLimiter:
    """Bounds the streaming calls open at once, overall and per client connection.

    Each open stream holds one RPC thread for its whole life (a waiting
    `sipctl` holds a WatchJob stream); without a bound they take every thread
    and Health, GetStatus and CancelJob wait behind them. The server's pool
    has `total` threads plus spare ones, so unary calls always find a thread.
    """

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._lock = threading.Lock()
        self._open = 0
        self._by_peer: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, context: grpc.ServicerContext, method: str) -> Iterator[None]:
        peer = context.peer() or "unknown"
        with self._lock:
            if self._open >= self.total:
                raise ResourceExhausted(
                    f"{method}: {self.total} long-lived calls (streams, waits) are open "
                    "(limit limits.max_streams); wait for one to end or raise the limit"
                )
            if self._by_peer.get(peer, 0) >= self.per_client:
                raise ResourceExhausted(
                    f"{method}: this client already has {self.per_client} long-lived calls open "
                    "(limit limits.max_streams_per_client); wait for one to end or raise the "
                    "limit"
                )
            self._open += 1
            self._by_peer[peer] = self._by_peer.get(peer, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
                left = self._by_peer[peer] - 1
                if left:
                    self._by_peer[peer] = left
                else:
                    del self._by_peer[peer]

    def open_count(self) -> int:
        with self._lock:
            return self._open
