"""What the chain's stages share to stream a raster: one dataset handle per thread,
and a thread pool whose results come back in order with a bounded number in flight
(numpy, scipy and GDAL release the GIL, so blocks compute in parallel while the
caller writes the finished ones)."""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import rasterio

T = TypeVar("T")
R = TypeVar("R")


class DatasetsPerThread:
    """One open dataset per thread and path: GDAL handles are not thread-safe."""

    def __init__(self, opener: Callable[[str], rasterio.DatasetReader] = rasterio.open) -> None:
        self._opener = opener
        self._local = threading.local()
        self._all: list[rasterio.DatasetReader] = []
        self._lock = threading.Lock()

    def get(self, path: str) -> rasterio.DatasetReader:
        cache = getattr(self._local, "datasets", None)
        if cache is None:
            cache = self._local.datasets = {}
        ds = cache.get(path)
        if ds is None:
            ds = cache[path] = self._opener(path)
            with self._lock:
                self._all.append(ds)
        return ds

    def close(self) -> None:
        for ds in self._all:
            ds.close()


@contextlib.contextmanager
def in_order(
    work: Callable[[T], R], items: Iterable[T], threads: int, ahead: int
) -> Iterator[Iterator[tuple[T, R]]]:
    """(item, work(item)) in the order of `items`, computed on `threads` threads with at
    most `ahead` results waiting: memory stays bounded whatever the number of items.

    A context manager, `with in_order(...) as results: for item, result in results:`,
    so that leaving the block early (an error, a cancel) drops what was not started
    and WAITS for the work in flight before the caller closes what that work reads:
    a generator left to the garbage collector (a traceback keeps its frame alive)
    went on reading datasets the caller had already closed (a SIGSEGV in GDAL)."""
    results = _in_order(work, items, threads, ahead)
    try:
        yield results
    finally:
        results.close()


def _in_order(
    work: Callable[[T], R], items: Iterable[T], threads: int, ahead: int
) -> Iterator[tuple[T, R]]:
    pool = ThreadPoolExecutor(threads)
    try:
        pending: deque[tuple[T, Future[R]]] = deque()
        it = iter(items)
        for item in it:
            pending.append((item, pool.submit(work, item)))
            if len(pending) >= ahead:
                break
        while pending:
            item, future = pending.popleft()
            result = future.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(work, nxt)))
            yield item, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
