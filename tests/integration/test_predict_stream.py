"""For integrators without a shared filesystem: PredictStream, and ExportModel, through a
real daemon. The model is the default architecture with random weights (no training needed
for I/O and protocol behaviour), copied into the daemon's model repository."""

from __future__ import annotations

import io
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import rasterio
from sipapi.v1 import common_pb2, job_pb2, prediction_pb2, training_pb2

from sipd.bench.throughput import make_model, write_synthetic_scene
from tests.support import Sipd, file_hashes, wait_for, write_raster

MODEL = "projects/remote/models/1"
P = prediction_pb2
MAX_BYTES = 40 * 1024 * 1024
CHUNK = 16 * 1024  # small, so even a well-compressed label map comes back in several messages


@pytest.fixture(scope="module")
def model_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "1", bands=4, classes=3)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, model_source: Path) -> Iterator[Sipd]:
    root = tmp_path_factory.mktemp("stream")
    d = Sipd(
        root / "state",
        roots=[root],
        env={
            "SIPD_INFERENCE__MAX_STREAM_BYTES": str(MAX_BYTES),
            "SIPD_INFERENCE__STREAM_CHUNK_BYTES": str(CHUNK),
        },
    ).start()
    shutil.copytree(model_source, root / "state" / "models" / "remote" / "1")
    try:
        yield d
    finally:
        d.stop()


def _spools(d: Sipd) -> list[str]:
    tmp = d.data_dir / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def _requests(header: P.PredictStreamHeader, payload: bytes, chunk: int = 100_000):
    yield P.PredictStreamRequest(header=header)
    for i in range(0, len(payload), chunk):
        yield P.PredictStreamRequest(chunk=payload[i : i + chunk])


def _stream(d: Sipd, header: P.PredictStreamHeader, payload: bytes):
    responses = list(d.client.prediction.PredictStream(_requests(header, payload), timeout=300))
    assert responses[0].WhichOneof("part") == "result"
    result = responses[0].result
    data = b"".join(r.chunk for r in responses[1:])
    assert all(len(r.chunk) <= CHUNK for r in responses[1:])
    assert len(data) == result.label_bytes + result.confidence_bytes
    return result, data[: result.label_bytes], data[result.label_bytes :]


def _read(data: bytes) -> tuple[np.ndarray, dict]:
    with rasterio.MemoryFile(io.BytesIO(data)) as mem, mem.open() as ds:
        return ds.read(1), {"crs": ds.crs, "transform": ds.transform, "tags": ds.tags(),
                            "dtype": ds.dtypes[0], "nodata": ds.nodata}


def _path_labels(d: Sipd, src: Path, name: str) -> np.ndarray:
    out = d.roots[0] / name
    d.sipctl("predict", "remote", str(src), "-o", str(out))
    with rasterio.open(out) as ds:
        return ds.read(1)


def test_geotiff_in_chunks_returns_the_label_map_and_confidence(daemon):
    d = daemon
    src = d.roots[0] / "scene.tif"
    write_synthetic_scene(src, 600, 4)
    payload = src.read_bytes()
    header = P.PredictStreamHeader(
        model=MODEL, encoding=P.RASTER_ENCODING_GEOTIFF, total_bytes=len(payload), confidence=True
    )
    result, labels_bytes, conf_bytes = _stream(d, header, payload)
    assert result.confidence_bytes > 0 and len(labels_bytes) > CHUNK  # several messages back
    labels, meta = _read(labels_bytes)
    with rasterio.open(src) as ds:
        assert meta["crs"] == ds.crs and meta["transform"] == ds.transform
    assert meta["dtype"] == "uint8" and meta["nodata"] == 0 and meta["tags"]["CLASS_1"] == "class1"
    assert np.array_equal(labels, _path_labels(d, src, "by_path.tif"))
    p = result.prediction
    assert (p.width, p.height, p.pixels) == (600, 600, 600 * 600)
    assert sum(p.class_pixels.values()) == 600 * 600 and p.mpx_per_s > 0
    assert p.output == "" and p.input == ""  # the daemon's spool paths mean nothing remotely
    conf, _ = _read(conf_bytes)
    assert conf.shape == (600, 600) and conf.min() >= 1
    assert _spools(d) == []


def test_raw_pixels_with_nodata(daemon):
    d = daemon
    src = d.roots[0] / "raw_source.tif"
    write_synthetic_scene(src, 320, 4)
    with rasterio.open(src) as ds:
        data = ds.read()
    data[:, 10:30, 40:90] = 0
    header = P.PredictStreamHeader(
        model=MODEL, encoding=P.RASTER_ENCODING_RAW, total_bytes=data.nbytes,
        shape=list(data.shape), dtype="uint16", nodata=0,
    )
    result, labels_bytes, conf_bytes = _stream(d, header, data.astype("<u2").tobytes())
    assert conf_bytes == b"" and result.confidence_bytes == 0
    labels, meta = _read(labels_bytes)
    assert labels.shape == (320, 320) and meta["crs"] is None
    assert (labels[10:30, 40:90] == 0).all() and result.prediction.pixels == 320 * 320 - 20 * 50
    # Same labels as the GeoTIFF of the same pixels through Predict (its grid aside).
    same = write_raster(d.roots[0] / "raw_as_tif.tif", data, nodata=0)
    assert np.array_equal(labels, _path_labels(d, same, "raw_by_path.tif"))
    assert _spools(d) == []


@pytest.mark.parametrize(
    ("header", "code", "needle"),
    [
        (dict(model="projects/remote/models/7"), grpc.StatusCode.NOT_FOUND, "does not exist"),
        (dict(model="nonsense"), grpc.StatusCode.INVALID_ARGUMENT, "not valid"),
        (dict(encoding=0), grpc.StatusCode.INVALID_ARGUMENT, "encoding"),
        (dict(total_bytes=MAX_BYTES + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, "max_stream_bytes"),
        (dict(encoding=2, shape=[4, 10, 10], dtype="uint16", total_bytes=801),
         grpc.StatusCode.INVALID_ARGUMENT, "does not match shape"),
        (dict(encoding=2, shape=[3, 10, 10], dtype="uint16", total_bytes=600),
         grpc.StatusCode.INVALID_ARGUMENT, "expects 4"),
        (dict(encoding=2, shape=[4, 10, 10], dtype="float64", total_bytes=3200),
         grpc.StatusCode.INVALID_ARGUMENT, "dtype"),
        (dict(encoding=2, shape=[4, 100], dtype="uint8", total_bytes=400),
         grpc.StatusCode.INVALID_ARGUMENT, "[bands, height, width]"),
    ],
)
def test_a_bad_header_is_refused_before_any_data(daemon, header, code, needle):
    fields = {"model": MODEL, "encoding": P.RASTER_ENCODING_GEOTIFF, "total_bytes": 1000}
    fields.update(header)
    sent = []

    def requests():
        yield P.PredictStreamRequest(header=P.PredictStreamHeader(**fields))
        for _ in range(1000):  # never asked for: the header is refused first
            sent.append(1)
            yield P.PredictStreamRequest(chunk=b"x" * 1000)

    with pytest.raises(grpc.RpcError) as err:
        list(daemon.client.prediction.PredictStream(requests(), timeout=60))
    assert err.value.code() == code and needle in err.value.details(), err.value.details()
    assert len(sent) < 1000
    assert _spools(daemon) == []


@pytest.mark.parametrize(
    ("payload", "total", "needle"),
    [
        (b"this is not a raster" * 10, 200, "not a readable geotiff raster"),
        (b"x" * 100, 200, "ended after 100 of the 200"),
        (b"x" * 300, 200, "more than the 200"),
    ],
)
def test_bad_bytes_are_invalid_argument(daemon, payload, total, needle):
    header = P.PredictStreamHeader(
        model=MODEL, encoding=P.RASTER_ENCODING_GEOTIFF, total_bytes=total
    )
    with pytest.raises(grpc.RpcError) as err:
        list(daemon.client.prediction.PredictStream(_requests(header, payload, 50), timeout=60))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details(), err.value.details()
    assert _spools(daemon) == []


def test_first_message_must_be_the_header(daemon):
    with pytest.raises(grpc.RpcError) as err:
        list(daemon.client.prediction.PredictStream(
            iter([P.PredictStreamRequest(chunk=b"abc")]), timeout=60))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in err.value.details()


def test_a_client_that_goes_away_cancels_the_job_and_leaves_no_spool(daemon):
    d = daemon
    data = np.full((4, 2048, 2048), 1000, dtype="<u2")  # seconds of work on a CPU
    header = P.PredictStreamHeader(
        model=MODEL, encoding=P.RASTER_ENCODING_RAW, total_bytes=data.nbytes,
        shape=list(data.shape), dtype="uint16",
    )
    call = d.client.prediction.PredictStream(
        _requests(header, data.tobytes(), 1024 * 1024), timeout=300
    )
    outcome = {}

    def consume() -> None:
        try:
            list(call)
        except grpc.RpcError as exc:
            outcome["code"] = exc.code()

    reader = threading.Thread(target=consume)
    reader.start()

    def running_stream_job():
        jobs = d.client.jobs.ListJobs(job_pb2.ListJobsRequest(type="predict"), timeout=10).jobs
        live = [j for j in jobs if j.source == "stream" and j.state == common_pb2.Job.RUNNING]
        return live[0] if live else None

    job = wait_for(running_stream_job, 120, what="the stream's predict job to run")
    assert _spools(d)  # the upload is spooled while the job runs
    call.cancel()
    reader.join(30)
    assert outcome["code"] == grpc.StatusCode.CANCELLED

    def final():
        j = d.client.jobs.GetJob(job_pb2.GetJobRequest(name=job.name), timeout=10)
        return j if j.state in (common_pb2.Job.CANCELLED, common_pb2.Job.SUCCEEDED) else None

    assert wait_for(final, 60, what="the job to end").state == common_pb2.Job.CANCELLED
    wait_for(lambda: _spools(d) == [], 30, what="the spool to be removed")


def test_export_model_writes_the_fp16_variant(daemon):
    d = daemon
    job = d.client.training.ExportModel(
        training_pb2.ExportModelRequest(name=MODEL, fp16=True), timeout=30
    )
    source = d.data_dir / "models" / "remote" / "1"
    before = file_hashes(source)
    final = d.sipctl_json("jobs", "wait", job.name)
    assert final["state"] == "SUCCEEDED", final
    # A published version never changes: the re-export is version 2, derived from 1.
    assert final["export"]["model"] == "projects/remote/models/2"
    assert final["export"]["source_model"] == MODEL
    assert file_hashes(source) == before
    folder = d.data_dir / "models" / "remote" / "2"
    assert (folder / "model.fp16.onnx").is_file()
    names = {Path(f).name for f in final["export"]["files"]}
    assert {"model.onnx", "model.fp16.onnx", "model.yaml", "checkpoint.pt"} <= names
    assert final["export"]["max_abs_diff"] < 1e-3
    # The new version predicts ("latest" is now version 2).
    src = d.roots[0] / "after_export.tif"
    write_synthetic_scene(src, 200, 4)
    assert _path_labels(d, src, "after_export_labels.tif").min() >= 1
    with pytest.raises(grpc.RpcError) as err:
        d.client.training.ExportModel(
            training_pb2.ExportModelRequest(name="projects/remote/models/latest"), timeout=30
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
