"""The daemon's side of PredictStream: a raster sent in chunks, classified, sent back.

The daemon never runs a model itself (only the worker touches the device), so
a streamed raster is spooled to DATA_DIR/tmp/stream-*/, predicted by an
ordinary "predict" job (params built by sipd.job_requests like any other),
and the spool is removed whatever happens.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import RasterioError

from sipd.config import Config
from sipd.contracts.job_record import JobRecord
from sipd.contracts.jobs import PredictItem
from sipd.errors import InvalidArgument, ResourceExhausted
from sipd.job_requests import JobRequests, predict_params
from sipd.jobs.engine import JobEngine
from sipd.modelrepo import ModelVersion, parse_model_name
from sipd.raster import check_readable


class StreamPredictions:
    def __init__(self, config: Config, requests: JobRequests, engine: JobEngine) -> None:
        self.config = config
        self.requests = requests
        self.engine = engine
        self.spool_root = Path(config.data_dir) / "tmp"
        # No stream can be in flight before this daemon serves: what is there
        # was left by one that died mid-stream.
        for stale in self.spool_root.glob("stream-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def open(self, header: StreamHeader) -> StreamUpload:
        """Check a PredictStream header before any data is accepted; make the spool."""
        project, version = parse_model_name(header.model)
        model = self.requests.model(project, version)
        limit = self.config.inference.max_stream_bytes
        if header.encoding not in ("geotiff", "raw"):
            raise InvalidArgument(
                "header.encoding must be RASTER_ENCODING_GEOTIFF (a whole GeoTIFF file) or "
                "RASTER_ENCODING_RAW (band-sequential pixels with shape and dtype)"
            )
        if header.total_bytes <= 0:
            raise InvalidArgument("header.total_bytes must be the positive number of bytes sent")
        if header.total_bytes > limit:
            raise ResourceExhausted(
                f"header.total_bytes {header.total_bytes} exceeds the limit of {limit} bytes "
                "(inference.max_stream_bytes); send a smaller raster or raise the limit"
            )
        if header.encoding == "raw":
            _check_raw(header, len(model.card.bands))
        self.spool_root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="stream-", dir=self.spool_root))
        return StreamUpload(folder, header, model)

    def submit(self, upload: StreamUpload) -> JobRecord:
        """Submit the "predict" job for a complete upload (source "stream")."""
        raster = upload.finish()
        try:
            _check_self_contained(raster, upload.folder, upload.header.encoding)
            check_readable(raster)
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"the streamed bytes are not a readable {upload.header.encoding} raster ({exc})"
            ) from exc
        model = upload.model
        self.requests.check_bands(model, raster, "the streamed raster")
        item = PredictItem(
            input=str(raster),
            output=str(upload.labels_path),
            confidence=str(upload.confidence_path) if upload.header.confidence else "",
        )
        params = predict_params(
            model,
            [item],
            tile_size=self.config.inference.tile_size,
            batch_size=self.config.inference.batch_size,
        )
        return self.engine.submit(params, project=model.project, source="stream")

    def wait_for(self, job_id: int, alive: Callable[[], bool]) -> JobRecord:
        """Wait until the job ends; cancel it (and still wait for it) once `alive()` is False.

        Waiting after the cancel matters: the job writes into the spool, which
        the caller removes only once nothing writes there any more.
        """
        while True:
            job = self.engine.wait(job_id, timeout=0.5)
            if job.final:
                return job
            if not alive():
                self.engine.cancel(job_id, "cancelled: the PredictStream client went away")
                grace = self.config.jobs.cancel_grace_seconds + 10
                return self.engine.wait(job_id, timeout=grace)


@dataclass(frozen=True)
class StreamHeader:
    """The first message of a PredictStream call, as plain data."""

    model: str
    encoding: str  # "geotiff" | "raw" | anything else (refused)
    total_bytes: int
    shape: tuple[int, ...] = ()
    dtype: str = ""
    nodata: float | None = None
    confidence: bool = False


# PredictStream RAW dtypes (the scene dtypes) -> ENVI "data type" codes.
_ENVI_TYPES = {"uint8": 1, "int16": 2, "float32": 4, "uint16": 12}
_ITEMSIZE = {"uint8": 1, "int16": 2, "uint16": 2, "float32": 4}


def _check_raw(header: StreamHeader, bands: int) -> None:
    if header.dtype not in _ENVI_TYPES:
        raise InvalidArgument(
            f"header.dtype {header.dtype!r} is not accepted; RAW takes one of: "
            f"{', '.join(_ENVI_TYPES)}"
        )
    if len(header.shape) != 3 or min(header.shape) < 1:
        raise InvalidArgument(
            f"header.shape {list(header.shape)} must be [bands, height, width] with "
            "positive sizes for RAW"
        )
    expected = math.prod(header.shape) * _ITEMSIZE[header.dtype]
    if header.total_bytes != expected:
        raise InvalidArgument(
            f"header.total_bytes {header.total_bytes} does not match shape "
            f"{list(header.shape)} of {header.dtype} ({expected} bytes)"
        )
    if header.shape[0] != bands:
        raise InvalidArgument(
            f"header.shape has {header.shape[0]} band(s) but the model expects {bands}"
        )


# What a stream may be, by encoding: one self-contained file of one driver.
# A VRT (or anything else naming other files) sent as "GeoTIFF" would make
# the worker read files the caller chose, outside every root.
_STREAM_DRIVERS = {"raw": "ENVI", "geotiff": "GTiff"}


def _check_self_contained(raster: Path, folder: Path, encoding: str) -> None:
    """Open the spooled bytes with the encoding's driver only, and refuse them when
    GDAL opened any file outside the spool folder (checked before reading pixels)."""
    driver = _STREAM_DRIVERS.get(encoding.lower(), "GTiff")
    accepted = (
        "a self-contained GeoTIFF, or RAW pixels described by the header (VRT and "
        "other formats that reference files are refused)"
    )
    try:
        # Without a driver, as the worker will open it: GDAL picks a driver by content,
        # so RAW bytes that are VRT XML would be read as a VRT there.
        with rasterio.open(raster) as ds:
            files = list(ds.files)
            opened_by = ds.driver
    except RasterioError as exc:
        raise InvalidArgument(
            f"the streamed bytes are not a {encoding} raster ({exc}); accepted: {accepted}"
        ) from exc
    spool = Path(os.path.realpath(folder))
    outside = [f for f in files if not Path(os.path.realpath(f)).is_relative_to(spool)]
    if opened_by != driver or outside:
        raise InvalidArgument(
            f"the streamed bytes were read as {opened_by} and reference other files "
            f"({', '.join(outside) or 'none'}); accepted: {accepted}"
        )


class StreamUpload:
    """A raster arriving in chunks, spooled in its own folder until the stream ends.

    RAW pixels are kept as they arrive and described by an ENVI header, which
    GDAL reads in place (no conversion, no copy). `cleanup` removes the folder.
    """

    def __init__(self, folder: Path, header: StreamHeader, model: ModelVersion) -> None:
        self.folder = folder
        self.header = header
        self.model = model
        self.received = 0
        name = "scene.bsq" if header.encoding == "raw" else "scene.tif"
        self.raster_path = folder / name
        self.labels_path = folder / "labels.tif"
        self.confidence_path = folder / "confidence.tif"
        self._file: Any = open(self.raster_path, "wb")  # noqa: SIM115 - closed in finish/cleanup

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.header.total_bytes:
            raise InvalidArgument(
                f"received more than the {self.header.total_bytes} bytes the header announced"
            )
        self._file.write(chunk)

    def finish(self) -> Path:
        """The spooled raster, once every announced byte has arrived."""
        self._file.close()
        if self.received != self.header.total_bytes:
            raise InvalidArgument(
                f"the stream ended after {self.received} of the {self.header.total_bytes} "
                "bytes the header announced"
            )
        h = self.header
        if h.encoding == "raw":
            lines = [
                "ENVI",
                f"samples = {h.shape[2]}",
                f"lines = {h.shape[1]}",
                f"bands = {h.shape[0]}",
                "header offset = 0",
                "file type = ENVI Standard",
                f"data type = {_ENVI_TYPES[h.dtype]}",
                "interleave = bsq",
                "byte order = 0",  # little endian, as PredictStream specifies
            ]
            if h.nodata is not None:
                lines.append(f"data ignore value = {h.nodata!r}")
            (self.folder / "scene.hdr").write_text("\n".join(lines) + "\n")
        return self.raster_path

    def outputs(self, chunk_bytes: int) -> tuple[int, int, Iterator[bytes]]:
        """(label bytes, confidence bytes, chunks of the label map then the confidence map)."""
        files = [self.labels_path]
        if self.header.confidence:
            files.append(self.confidence_path)
        sizes = [p.stat().st_size for p in files]

        def chunks() -> Iterator[bytes]:
            for path in files:
                with open(path, "rb") as f:
                    while block := f.read(chunk_bytes):
                        yield block

        return sizes[0], sizes[1] if len(sizes) > 1 else 0, chunks()

    def cleanup(self) -> None:
        self._file.close()
        shutil.rmtree(self.folder, ignore_errors=True)
