"""The streaming tile loop shared by prediction, testing and benchmarks.

Three stages overlap: reader thread(s) build batches of tiles, the calling
thread runs the graph, and a writer thread hands cropped results to a sink
(GeoTIFF writer, confusion-matrix accumulator). Bounded queues between them
keep memory at a few batches whatever the scene size, and let GDAL's I/O and
(de)compression run while onnxruntime computes (both release the GIL).

One run may cover several scenes (ScenePass): the readers go straight on to
the next scene's tiles while the graph still runs on the current one, and
each scene's sink is closed (and its `on_done` called, e.g. to start the
COG copy) as soon as its last tile is written, so finishing one scene
overlaps with inference on the next.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from rasterio.errors import RasterioError

from sipd.errors import InvalidArgument
from sipd.inference.sessions import LoadedModel
from sipd.inference.tiling import Tile, TileGrid, TileReader
from sipd.progress import JobContext

_POLL = 0.05  # seconds between checks of the stop event while blocked on a queue

Background = np.ndarray | str | os.PathLike[str] | None


class TileSink(Protocol):
    """Receives each tile's cropped outputs in the writer thread.

    `outputs` maps roles ("labels", "confidence", "probabilities",
    "uncertainty") to arrays cropped to the tile core: labels [h, w] uint8
    with invalid pixels already 0, confidence [h, w] float32, probabilities
    [K, h, w] float32, uncertainty [h, w] float32 in 0..1 (normalized_entropy
    of the probabilities; present whenever probabilities are). `invalid` is
    the core's nodata/background mask, or None when all pixels are valid.
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
    seconds: float = 0.0  # first read started -> sink closed
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {
            "read_s": round(self.read_s, 3),
            "infer_s": round(self.infer_s, 3),
            "starved_s": round(self.starved_s, 3),
            "write_s": round(self.write_s, 3),
        }


@dataclass(eq=False)
class ScenePass:
    """One scene's share of a run: which tiles of which raster go to which sink.

    `background` (bool array, raster path, or a callable returning either,
    called once when the scene is first read: a rasterized vector mask need
    only exist while its scene is in flight). `on_done` runs in the writer
    thread right after the sink is closed; an exception from it fails the run.
    """

    src: str | os.PathLike[str]
    grid: TileGrid
    tiles: Sequence[Tile]
    sink: TileSink
    background: Background | Callable[[], Background] = None
    on_done: Callable[[ScenePass], None] | None = None
    stats: RunStats = field(default_factory=RunStats)
    started: float | None = None  # perf_counter() when its first tile was read
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def resolve_background(self) -> Background:
        with self._lock:
            if callable(self.background):
                self.background = self.background()
            return self.background

    def mark_started(self) -> None:
        with self._lock:
            if self.started is None:
                self.started = time.perf_counter()


@dataclass
class _Batch:
    seq: int
    scene: int
    tiles: list[Tile]
    data: np.ndarray | None  # [N, C, H, W] for the graph
    invalid: list[np.ndarray | None]
    outputs: dict[str, np.ndarray] | None = None


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


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """Per-pixel uncertainty of class probabilities [K, ...] -> [...] float32 in 0..1.

    H(p) / ln K, with 0 * ln 0 = 0: 0 when one class has all the probability,
    1 when all K classes are equally likely (0 everywhere for K = 1). Chosen
    over the margin 1 - (p1 - p2) because it weighs every class, not only the
    best two: a pixel torn between three classes is more uncertain than one torn
    between two, which is what a labeler should look at first. For K = 2 both
    give the same order.
    """
    k = probs.shape[0]
    if k < 2:
        return np.zeros(probs.shape[1:], dtype=np.float32)
    p = np.clip(np.asarray(probs, dtype=np.float32), 0.0, 1.0)
    h = -np.sum(p * np.log(np.maximum(p, np.float32(1e-12))), axis=0)
    return np.clip(h / np.float32(np.log(k)), 0.0, 1.0).astype(np.float32, copy=False)


def graph_roles(roles: Sequence[str]) -> tuple[str, ...]:
    """The graph outputs that `roles` need: "uncertainty" is derived from "probabilities"."""
    return tuple(dict.fromkeys("probabilities" if r == "uncertainty" else r for r in roles))


def fill_values(model: LoadedModel) -> np.ndarray:
    """Per-band value given to invalid pixels: the training mean (0 once normalized)."""
    return np.asarray(model.spec.mean, dtype=np.float32)


def run_passes(
    model: LoadedModel,
    passes: Sequence[ScenePass],
    *,
    roles: Sequence[str] = ("labels",),
    batch_size: int = 1,
    ctx: JobContext | None = None,
    io_threads: int = 1,
    stage: str = "predict",
    progress_base: float = 0.0,
    progress_span: float = 1.0,
) -> RunStats:
    """Run the graph over the tiles of every pass, in order, as one pipeline.

    `roles` are the outputs to compute (names resolved through model.yaml;
    "uncertainty" is derived from the graph's probabilities, which are then
    computed: see normalized_entropy); asking only for labels keeps probability
    tensors inside onnxruntime.
    A batch never mixes scenes (their tile shapes may differ). Progress goes
    to ctx as progress_base + progress_span * tiles done / all tiles.
    Per-scene figures land in each pass's `stats`; the total is returned.
    """
    ctx = ctx or JobContext()
    batch_size = max(1, int(batch_size))
    n_readers = max(1, int(io_threads))
    roles = tuple(roles)
    batches: list[tuple[int, list[Tile]]] = []
    for k, p in enumerate(passes):
        p.stats.tiles = len(p.tiles)
        for i in range(0, len(p.tiles), batch_size):
            batches.append((k, list(p.tiles[i : i + batch_size])))
    total_tiles = sum(len(p.tiles) for p in passes)
    total = RunStats(tiles=total_tiles)
    run = model.runner(graph_roles(roles))

    stop = threading.Event()
    # Two batches waiting per stage: enough to hide jitter, bounded memory.
    in_q: queue.Queue[Any] = queue.Queue(maxsize=2 * n_readers)
    out_q: queue.Queue[Any] = queue.Queue(maxsize=2)
    errors: list[BaseException] = []
    lock = threading.Lock()
    fill = fill_values(model)
    channels = len(model.bands)

    def fail(exc: BaseException) -> None:
        with lock:
            errors.append(exc)
        stop.set()

    def reader(k: int) -> None:
        current: tuple[int, TileReader] | None = None
        src: Any = None
        try:
            for seq in range(k, len(batches), n_readers):
                scene, group = batches[seq]
                p = passes[scene]
                src = p.src
                if current is None or current[0] != scene:
                    if current is not None:
                        current[1].close()
                        current = None
                    p.mark_started()
                    current = (scene, TileReader(p.src, fill, p.resolve_background()))
                t0 = time.perf_counter()
                th, tw = p.grid.tile_shape
                data = np.empty((len(group), channels, th, tw), dtype=np.float32)
                invalid = [current[1].read_into(t, data[i]) for i, t in enumerate(group)]
                spent = time.perf_counter() - t0
                with lock:
                    p.stats.read_s += spent
                    total.read_s += spent
                _put(in_q, _Batch(seq, scene, group, data, invalid), stop)
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
        finally:
            if current is not None:
                current[1].close()

    def writer() -> None:
        remaining = [len(p.tiles) for p in passes]
        opened: set[int] = set()
        try:
            for k, p in enumerate(passes):
                if not p.tiles:  # nothing to compute: an empty output all the same
                    _finish(p, opened, k)
            while True:
                item = _get(out_q, stop)
                if item is _DONE:
                    return
                p = passes[item.scene]
                if item.scene not in opened:
                    p.sink.open()
                    opened.add(item.scene)
                t0 = time.perf_counter()
                _write_batch(item, p.sink)
                spent = time.perf_counter() - t0
                p.stats.write_s += spent
                total.write_s += spent
                remaining[item.scene] -= len(item.tiles)
                if remaining[item.scene] == 0:
                    _finish(p, opened, item.scene)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the calling thread
            fail(exc)
        finally:
            for k in list(opened):
                try:
                    passes[k].sink.close()
                except Exception:  # already failing: the first error is the one to report
                    pass

    def _finish(p: ScenePass, opened: set[int], k: int) -> None:
        if k not in opened:
            p.sink.open()
        opened.discard(k)
        p.sink.close()
        p.stats.seconds = time.perf_counter() - (p.started or time.perf_counter())
        p.background = None  # a rasterized mask is not needed any more
        if p.on_done is not None:
            p.on_done(p)

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
            outputs = run(batch.data)
            t2 = time.perf_counter()
            p = passes[batch.scene]
            p.stats.starved_s += t1 - t0
            p.stats.infer_s += t2 - t1
            total.starved_s += t1 - t0
            total.infer_s += t2 - t1
            batch.data = None  # release the input before the next read lands
            batch.outputs = outputs
            _put(out_q, batch, stop)
            done_tiles += len(batch.tiles)
            ctx.progress(
                stage,
                progress_base + progress_span * done_tiles / max(1, total_tiles),
                _message(passes, batch.scene, done_tiles, total_tiles),
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
    total.seconds = time.perf_counter() - start
    return total


def _message(passes: Sequence[ScenePass], scene: int, done: int, total: int) -> str:
    if len(passes) == 1:
        return f"{done}/{total} tiles"
    return f"scene {scene + 1}/{len(passes)}, {done}/{total} tiles"


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
        if "probabilities" in cropped:
            # In the writer thread, off the graph's critical path.
            cropped["uncertainty"] = normalized_entropy(cropped["probabilities"])
        if "labels" in cropped:
            # The graph may emit int64 when exported without a final cast.
            labels = cropped["labels"].astype(np.uint8, copy=True)
            if invalid is not None:
                labels[invalid] = 0
            cropped["labels"] = labels
        sink.write(tile, cropped, invalid)
