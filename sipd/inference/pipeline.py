"""The streaming tile loop shared by prediction, testing and benchmarks.

Three stages overlap: reader thread(s) build batches of tiles, the calling
thread runs the graph, and a writer thread hands cropped results to a sink
(GeoTIFF writer, confusion-matrix accumulator). Bounded queues between them
keep memory at a few batches whatever the scene size, and let GDAL's I/O and
(de)compression run while onnxruntime computes (both release the GIL).

Failure handling: a stage that fails records its exception and sets the
shared stop event; every blocking put/get polls that event, so no stage can
wait forever on a dead partner, and the first error is re-raised in the
calling thread after all threads have been joined.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from rasterio.errors import RasterioError

from sipd.errors import InvalidArgument
from sipd.inference.engine import LoadedModel
from sipd.inference.tiling import Tile, TileGrid, TileReader
from sipd.jobs.context import JobContext

_POLL = 0.05  # seconds between checks of the stop event while blocked on a queue


class TileSink(Protocol):
    """Receives each tile's cropped outputs in the writer thread.

    `outputs` maps roles ("labels", "confidence", "probabilities") to arrays
    cropped to the tile core: labels [h, w] uint8 with invalid pixels already
    0, confidence [h, w] float32, probabilities [K, h, w] float32. `invalid`
    is the core's nodata/background mask, or None when all pixels are valid.
    """

    def open(self) -> None: ...

    def write(self, tile: Tile, outputs: dict[str, np.ndarray], invalid: np.ndarray | None) -> None:
        ...

    def close(self) -> None: ...


@dataclass
class RunStats:
    tiles: int = 0
    read_s: float = 0.0  # summed over reader threads
    infer_s: float = 0.0
    starved_s: float = 0.0  # inference waiting for the readers: reading is the bottleneck
    write_s: float = 0.0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {
            "read_s": round(self.read_s, 3),
            "infer_s": round(self.infer_s, 3),
            "starved_s": round(self.starved_s, 3),
            "write_s": round(self.write_s, 3),
        }


@dataclass
class _Batch:
    seq: int
    tiles: list[Tile]
    data: np.ndarray | None  # [N, C, H, W] for the graph
    invalid: list[np.ndarray | None]
    outputs: dict[str, np.ndarray] | None = None


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


class _Stopped(Exception):
    """A partner stage stopped; the loop unwinds quietly."""


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            q.put(item, timeout=_POLL)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue


def fill_values(model: LoadedModel) -> np.ndarray:
    """Per-band value given to invalid pixels: the training mean (0 once normalized)."""
    return np.asarray(model.spec.mean, dtype=np.float32)


def run_tiles(
    model: LoadedModel,
    src: str | os.PathLike[str],
    grid: TileGrid,
    tiles: Sequence[Tile],
    sink: TileSink,
    *,
    roles: Sequence[str] = ("labels",),
    background: np.ndarray | str | os.PathLike[str] | None = None,
    batch_size: int = 4,
    ctx: JobContext | None = None,
    io_threads: int = 1,
    stage: str = "predict",
    progress_base: float = 0.0,
    progress_span: float = 1.0,
) -> RunStats:
    """Run the graph over `tiles` of `src` and feed the cropped results to `sink`.

    `roles` are the outputs to compute (names resolved through model.yaml);
    asking only for labels keeps probability tensors inside onnxruntime.
    Progress goes to ctx as progress_base + progress_span * done/total.
    """
    ctx = ctx or JobContext()
    batch_size = max(1, int(batch_size))
    n_readers = max(1, int(io_threads))
    names = [model.spec.outputs[r] for r in roles]
    batches = [list(tiles[i : i + batch_size]) for i in range(0, len(tiles), batch_size)]
    stats = RunStats(tiles=len(tiles))
    if not batches:
        return stats

    stop = threading.Event()
    # Two batches waiting per stage: enough to hide jitter, bounded memory.
    in_q: queue.Queue[Any] = queue.Queue(maxsize=2 * n_readers)
    out_q: queue.Queue[Any] = queue.Queue(maxsize=2)
    errors: list[BaseException] = []
    lock = threading.Lock()
    fill = fill_values(model)
    channels = len(model.bands)
    th, tw = grid.tile_shape

    def fail(exc: BaseException) -> None:
        with lock:
            errors.append(exc)
        stop.set()

    def reader(k: int) -> None:
        try:
            with TileReader(src, fill, background) as tr:
                for seq in range(k, len(batches), n_readers):
                    t0 = time.perf_counter()
                    group = batches[seq]
                    data = np.empty((len(group), channels, th, tw), dtype=np.float32)
                    invalid = [tr.read_into(t, data[i]) for i, t in enumerate(group)]
                    with lock:
                        stats.read_s += time.perf_counter() - t0
                    _put(in_q, _Batch(seq, group, data, invalid), stop)
        except _Stopped:
            pass
        except RasterioError as exc:
            # A truncated or corrupt scene is the user's to fix: say which file.
            # rasterio keeps GDAL's own message (which block, why) as the cause.
            detail = f"{exc} ({exc.__cause__})" if exc.__cause__ else str(exc)
            err = InvalidArgument(f"cannot read raster {src}: {detail}")
            err.__cause__ = exc
            fail(err)
        except BaseException as exc:  # handed to the calling thread
            fail(exc)

    def writer() -> None:
        try:
            sink.open()
            try:
                while True:
                    item = _get(out_q, stop)
                    if item is _DONE:
                        return
                    t0 = time.perf_counter()
                    _write_batch(item, sink)
                    stats.write_s += time.perf_counter() - t0
            finally:
                sink.close()
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the calling thread
            fail(exc)

    threads = [
        threading.Thread(target=reader, args=(k,), name=f"sipd-read-{k}", daemon=True)
        for k in range(n_readers)
    ]
    threads.append(threading.Thread(target=writer, name="sipd-write", daemon=True))
    start = time.perf_counter()
    for t in threads:
        t.start()
    try:
        done_tiles = 0
        for _ in batches:
            ctx.check_cancelled()
            t0 = time.perf_counter()
            batch = _get(in_q, stop)
            t1 = time.perf_counter()
            stats.starved_s += t1 - t0
            result = model.session.run(names, {model.spec.input_name: batch.data})
            stats.infer_s += time.perf_counter() - t1
            batch.data = None  # release the input before the next read lands
            batch.outputs = dict(zip(roles, result, strict=True))
            _put(out_q, batch, stop)
            done_tiles += len(batch.tiles)
            ctx.progress(
                stage,
                progress_base + progress_span * done_tiles / len(tiles),
                f"{done_tiles}/{len(tiles)} tiles",
            )
        ctx.check_cancelled()
        _put(out_q, _DONE, stop)
        threads[-1].join()
    except _Stopped:
        pass  # a worker thread failed; its error is raised below
    except BaseException as exc:
        fail(exc)
    finally:
        stop.set()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    stats.seconds = time.perf_counter() - start
    return stats


def _write_batch(batch: _Batch, sink: TileSink) -> None:
    assert batch.outputs is not None
    for i, tile in enumerate(batch.tiles):
        rows = slice(tile.offset[0], tile.offset[0] + tile.height)
        cols = slice(tile.offset[1], tile.offset[1] + tile.width)
        cropped: dict[str, np.ndarray] = {}
        for role, arr in batch.outputs.items():
            if role == "probabilities":
                cropped[role] = arr[i, :, rows, cols]
            else:
                cropped[role] = arr[i, rows, cols]
        invalid = batch.invalid[i]
        if "labels" in cropped:
            # The graph may emit int64 when exported without a final cast.
            labels = cropped["labels"].astype(np.uint8, copy=True)
            if invalid is not None:
                labels[invalid] = 0
            cropped["labels"] = labels
        sink.write(tile, cropped, invalid)
