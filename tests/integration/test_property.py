"""Generated malformed requests to every RPC of a running daemon.

For each method of every sip.v1 service, hypothesis builds requests from the
method's input descriptor: fields left unset or filled with edge values (huge
and negative numbers, NaN, unknown enum numbers, names that almost match,
10 kB strings, paths outside the allowed roots). Whatever it sends:

- the answer is never INTERNAL or UNKNOWN (a bug), nor UNAVAILABLE (a crash);
- the daemon stays up;
- a refused call changes nothing in the store.

A module-scoped daemon and a small example count keep it to seconds a method.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sipapi.v1 import (
    common_pb2,
    dataset_pb2,
    job_pb2,
    labeling_pb2,
    prediction_pb2,
    preprocess_pb2,
    project_pb2,
    system_pb2,
    training_pb2,
    watch_pb2,
)

from tests.support import Sipd, wait_for, write_raster

pytestmark = pytest.mark.slow

MODULES = [
    project_pb2,
    labeling_pb2,
    dataset_pb2,
    training_pb2,
    prediction_pb2,
    preprocess_pb2,
    watch_pb2,
    job_pb2,
    system_pb2,
]
METHODS = [
    method
    for module in MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
BUGS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE}
FD = pb_descriptor.FieldDescriptor

# Names and values that reach past the first check: real resources of the seeded
# project, near misses, and values no check expects.
NAMES = [
    "",
    "projects/p",
    "projects/p/scenes/a",
    "projects/p/scenes/-",
    "projects/p/scenes/a/rois/1",
    "projects/p/scenes/a/rois/99999999999999999999",
    "projects/p/models/1",
    "projects/p/models/latest",
    "projects/p/models/99999999999999999999",
    "projects/P",
    "projects/",
    "projects/p/",
    "jobs/1",
    "jobs/0",
    "jobs/99999999999999999999",
    "jobs/٣",
    "watches/w",
    "-1",
    "9" * 40,
    "x" * 10_000,
    "/etc/passwd",
    "../../etc/passwd",
    "\x00",
    "é",
    "p",
    "a",
    "ice",
    "background",
    "latest",
    "EPSG:4326",
    "*.tif",
    "POINT (1 1)",
    "LINESTRING (0 0, 1e308 1e308)",
    "POLYGON EMPTY",
    "POINT (inf 1)",
    "GEOMETRYCOLLECTION (POINT (1 1))",
    "GEOMETRYCOLLECTION (" * 100_000 + "POINT (1 1)" + ")" * 100_000,
    "[" * 100_000,
]


def _strings(root: Path) -> st.SearchStrategy[str]:
    paths = [str(root / n) for n in ("a.tif", "nope.tif", "out.tif", "rois.geojson", "")]
    paths.append(str(root))
    return st.one_of(st.sampled_from(NAMES + paths), st.text(max_size=30))


# Valid names of the seeded state: fields that name a resource get them most of the
# time, so generated requests pass the name checks and reach the deeper ones.
RESOURCES = [
    "projects/p",
    "projects/p/scenes/a",
    "projects/p/scenes/-",
    "projects/p/scenes/a/rois/1",
    "projects/p/models/1",
    "projects/p/models/latest",
    "jobs/1",
    "watches/w",
]
_NAME_FIELDS = ("parent", "name", "project", "model", "scenes", "source")
_PATH_HINTS = ("path", "input", "output", "inbox", "outbox", "dir", "mask")


def _scalar(field: pb_descriptor.FieldDescriptor, root: Path) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FD.TYPE_STRING:
        if field.name in _NAME_FIELDS:
            return st.one_of(st.sampled_from(RESOURCES), st.sampled_from(RESOURCES), _strings(root))
        if any(hint in field.name for hint in _PATH_HINTS):
            paths = [str(root / n) for n in ("a.tif", "nope.tif", "out.tif", "o", "a.tif/x")]
            return st.one_of(st.sampled_from(paths), _strings(root))
        return _strings(root)
    if kind == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind == FD.TYPE_DOUBLE:
        return st.floats()
    if kind == FD.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == FD.TYPE_ENUM:
        # proto3 enums are open: unknown numbers arrive as they are.
        return st.one_of(
            st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-3, 99)
        )
    if kind in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**32 - 1]))
    if kind in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**64 - 1]))
    if kind in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([-1, 0, 1, 2**63 - 1]))
    return st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([-1, 0, 1, 2**31 - 1]))


def _message(
    desc: pb_descriptor.Descriptor, root: Path, depth: int = 0
) -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if field.type == FD.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry or depth >= 2:
                continue
            value = _message(field.message_type, root, depth + 1)
        else:
            value = _scalar(field, root)
        if field.is_repeated:
            value = st.lists(value, max_size=3)
        fields[field.name] = value
    # Each field unset or set: most requests leave most fields empty, as clients do.
    return st.fixed_dictionaries({}, optional=fields)


@pytest.fixture(scope="module")
def seeded(shared_sipd: Sipd) -> Iterator[Sipd]:
    """A project `p` with a 32 x 32 scene `a` and one ROI: names in NAMES reach real state."""
    write_raster(shared_sipd.roots[0] / "a.tif", np.ones((1, 32, 32), dtype="uint16"))
    _seed(shared_sipd)
    yield shared_sipd


def _seed(d: Sipd) -> None:
    """Put back what an accepted Delete* removed, so later examples still reach real state."""
    try:
        d.client.projects.GetProject(project_pb2.GetProjectRequest(name="projects/p"), timeout=10)
    except grpc.RpcError:
        project = project_pb2.Project(
            classes=[common_pb2.ClassDef(name="ice"), common_pb2.ClassDef(name="water")],
            bands=["B1"],
        )
        d.client.projects.CreateProject(
            project_pb2.CreateProjectRequest(project_id="p", project=project), timeout=10
        )
    try:
        scene = d.client.labeling.GetScene(
            labeling_pb2.GetSceneRequest(name="projects/p/scenes/a"), timeout=10
        )
    except grpc.RpcError:
        scene = d.client.labeling.CreateScene(
            labeling_pb2.CreateSceneRequest(
                parent="projects/p",
                scene_id="a",
                scene=labeling_pb2.Scene(path=str(d.roots[0] / "a.tif")),
            ),
            timeout=10,
        )
    if not scene.roi_count:
        d.client.labeling.CreateRoi(
            labeling_pb2.CreateRoiRequest(
                parent=scene.name, roi=labeling_pb2.Roi(class_name="ice", wkt="POINT (5 5)")
            ),
            timeout=10,
        )


def _store(d: Sipd) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(f"file:{d.data_dir / 'sipd.db'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: db.execute(f"SELECT * FROM {t}").fetchall() for t in tables}
    finally:
        db.close()


def _quiet(d: Sipd) -> None:
    """Cancel what an accepted call queued, and wait until nothing runs: the store then
    changes only through the call under test."""
    jobs = d.client.jobs.ListJobs(job_pb2.ListJobsRequest(page_size=1000), timeout=10).jobs
    for job in jobs:
        if job.state in (common_pb2.Job.State.QUEUED, common_pb2.Job.State.RUNNING):
            d.client.jobs.CancelJob(job_pb2.CancelJobRequest(name=job.name), timeout=10)

    def idle() -> bool:
        status = d.client.system.GetStatus(system_pb2.GetStatusRequest(), timeout=10)
        return status.queue_length == 0 and status.worker.state in (
            system_pb2.WorkerStatus.State.IDLE,
            system_pb2.WorkerStatus.State.STARTING,
        )

    wait_for(idle, timeout=60, what="the daemon to be idle")


def _call(d: Sipd, method: pb_descriptor.MethodDescriptor, request: Any) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    out = message_factory.GetMessageClass(method.output_type)
    kwargs = {
        "request_serializer": type(request).SerializeToString,
        "response_deserializer": out.FromString,
    }
    channel = d.channel()
    try:
        if method.client_streaming:
            call = channel.stream_stream(path, **kwargs)
            for _ in call(iter([request]), timeout=10):
                pass
        elif method.server_streaming:
            responses = channel.unary_stream(path, **kwargs)(request, timeout=10)
            # The first answer (or the refusal) is enough; a stream of a running job
            # would otherwise last as long as the job.
            next(responses, None)
            responses.cancel()
        else:
            channel.unary_unary(path, **kwargs)(request, timeout=10)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.CANCELLED and method.server_streaming:
            return grpc.StatusCode.OK
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_malformed_requests_get_a_clear_status(
    seeded: Sipd, method: pb_descriptor.MethodDescriptor
) -> None:
    d = seeded
    cls = message_factory.GetMessageClass(method.input_type)

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(fields=_message(method.input_type, d.roots[0]))
    def check(fields: dict[str, Any]) -> None:
        request = cls(**fields)
        _seed(d)
        _quiet(d)
        before = _store(d)
        code = _call(d, method, request)
        assert code not in BUGS, f"{method.name}({request}) answered {code}\n{d.log()[-3000:]}"
        assert d.proc is not None and d.proc.poll() is None, "the daemon exited"
        if code != grpc.StatusCode.OK and code != grpc.StatusCode.DEADLINE_EXCEEDED:
            _quiet(d)
            assert _store(d) == before, f"refused {method.name}({request}) changed the store"

    check()
    # Still answering after all of it.
    assert d.client.system.GetStatus(system_pb2.GetStatusRequest(), timeout=5).version
