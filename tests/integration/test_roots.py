"""Nothing is read or written outside the allowed roots, nor inside the daemon's own data dir:
export targets, inboxes and outputs, FIFOs, VRTs naming files outside the roots, streamed
VRTs, links in inboxes, and the scratch files a killed worker leaves. A real daemon, real
gRPC and sipctl, real rasters, FIFOs (os.mkfifo) and VRT files written as text."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from sipapi.v1 import prediction_pb2

from sipd.bench.throughput import make_model, write_synthetic_scene
from tests.support import Sipd, wait_for, write_raster

P = prediction_pb2
MODEL_BANDS = 4
SIZE = 256  # small scenes: one tile each on a shared CPU


@pytest.fixture(scope="module")
def model_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "1", bands=MODEL_BANDS, classes=3)


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the daemon's roots holding a readable scene."""
    folder = tmp_path_factory.mktemp("outside")
    write_synthetic_scene(folder / "secret.tif", SIZE, MODEL_BANDS)
    return folder


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, model_source: Path) -> Iterator[Sipd]:
    """Roots = [root]; the data dir root/state is inside the root, on purpose: the data
    dir must be protected whatever the roots say."""
    root = tmp_path_factory.mktemp("roots")
    d = Sipd(root / "state", roots=[root], env={"SIPD_WATCH__QUIET_SECONDS": "0.5"}).start()
    shutil.copytree(model_source, root / "state" / "models" / "remote" / "1")
    bands = ",".join(f"B{i + 1}" for i in range(MODEL_BANDS))
    d.sipctl("project", "create", "remote", "--classes", "c1,c2,c3", "--bands", bands)
    try:
        yield d
    finally:
        d.stop()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(d: Sipd, *args: str) -> str:
    """sipctl must fail, quickly (a blocked RPC thread would hit the timeout)."""
    result = d.sipctl(*args, check=False, timeout=60)
    assert result.returncode != 0, result.stdout
    return result.stderr + result.stdout


def _vrt(path: Path, source: Path, bands: int = MODEL_BANDS, size: int = SIZE) -> Path:
    """A VRT whose bands are read from `source` (an absolute path)."""
    band_xml = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{b}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename>'
        f"<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b in range(1, bands + 1)
    )
    head = f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">'
    path.write_text(f"{head}{band_xml}</VRTDataset>")
    return path


def test_roi_export_never_replaces_existing_files_the_data_dir_or_scenes(daemon: Sipd) -> None:
    d = daemon
    root = d.roots[0]
    d.sipctl("project", "create", "labels", "--classes", "ice,water", "--bands", "HH,HV")
    data = np.random.default_rng(0).integers(1, 1000, (2, 64, 64)).astype("uint16")
    scene = write_raster(root / "labels_scene.tif", data)
    d.sipctl("scene", "add", "labels", str(scene), "--name", "a")
    d.sipctl("roi", "add", "labels", "--class", "ice", "--wkt", "POINT (5 5)")
    out = root / "rois.geojson"
    d.sipctl("roi", "export", "labels", "--scene", "a", "-o", str(out))
    assert out.exists()
    out.write_text("mine")
    message = _refused(d, "roi", "export", "labels", "--scene", "a", "-o", str(out))
    assert "exists" in message and "--overwrite" in message
    assert out.read_text() == "mine"
    # Never the daemon's own files or a registered scene, even when overwrite is asked.
    protected = [d.data_dir / "sipd.db", scene]
    before = {p: _digest(p) for p in protected}
    for target in protected:
        message = _refused(
            d, "roi", "export", "labels", "--scene", "a", "-o", str(target), "--overwrite"
        )
        assert "data dir" in message or "scene" in message
    assert {p: _digest(p) for p in protected} == before
    assert "labels" in d.sipctl("project", "list").stdout  # the database is intact
    # Asked for, an ordinary file of the caller's is replaced.
    d.sipctl("roi", "export", "labels", "--scene", "a", "-o", str(out), "--overwrite")
    assert json.loads(out.read_text())["type"] == "FeatureCollection"


def test_data_dir_is_never_an_inbox_outbox_or_predict_output(daemon: Sipd) -> None:
    d = daemon
    root = d.roots[0]
    state = d.data_dir
    for inbox, outbox in [
        (state, root / "w_out1"),  # the data dir itself
        (state / "models" / "remote" / "1", root / "w_out2"),  # a model version folder
        (root, root.parent / "elsewhere"),  # a folder that holds the data dir
        (root / "w_in", state / "out"),  # an outbox inside the data dir
    ]:
        message = _refused(
            d, "watch", "add", str(inbox), "--project", "remote", "--out", str(outbox)
        )
        assert "data dir" in message or "outside the allowed roots" in message
    assert d.sipctl_json("watch", "list").get("watches", []) == []
    assert sorted(p.name for p in state.iterdir() if p.name in ("sipd.db", "models", "projects"))
    src = root / "pred_scene.tif"
    write_synthetic_scene(src, SIZE, MODEL_BANDS)
    message = _refused(
        d, "predict", "remote", str(src), "-o", str(state / "sipd.db"), "--overwrite"
    )
    assert "data dir" in message
    assert not (state / "sipd.tif").exists()


def test_fifo_inputs_are_refused_before_anything_opens_them(daemon: Sipd) -> None:
    d = daemon
    fifo = d.roots[0] / "pipe.tif"
    os.mkfifo(fifo)
    try:
        for args in (
            ("scene", "add", "remote", str(fifo), "--name", "pipe"),
            ("predict", "remote", str(fifo), "-o", str(d.roots[0] / "pipe_labels.tif")),
            ("inspect", str(fifo)),
        ):
            message = _refused(d, *args)
            assert "not a regular file" in message, message
        # The worker is not blocked: a real job still runs.
        src = d.roots[0] / "after_fifo.tif"
        write_synthetic_scene(src, SIZE, MODEL_BANDS)
        d.sipctl("predict", "remote", str(src), "-o", str(d.roots[0] / "after_fifo_labels.tif"))
    finally:
        fifo.unlink()


def test_vrt_naming_files_outside_the_roots_is_refused(daemon: Sipd, outside: Path) -> None:
    d = daemon
    vrt = _vrt(d.roots[0] / "leak.vrt", outside / "secret.tif")
    message = _refused(d, "scene", "add", "remote", str(vrt), "--name", "leak")
    assert "outside the allowed roots" in message
    out = d.roots[0] / "leak_labels.tif"
    message = _refused(d, "predict", "remote", str(vrt), "-o", str(out))
    assert "outside the allowed roots" in message and not out.exists()
    # Inspect would reveal the outside file's statistics: refused before any job exists.
    jobs = d.sipctl_json("jobs", "list").get("jobs", [])
    message = _refused(d, "inspect", str(vrt), "--stats")
    assert "outside the allowed roots" in message
    assert d.sipctl_json("jobs", "list").get("jobs", []) == jobs
    # A VRT that reads through a GDAL virtual file system: the archive it names is checked.
    archive = outside / "secret.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(outside / "secret.tif", "secret.tif")
    zipped = _vrt(d.roots[0] / "zipped.vrt", Path(f"/vsizip/{archive}/secret.tif"))
    message = _refused(d, "inspect", str(zipped), "--stats")
    assert "outside the allowed roots" in message
    # A caller's /vsi path is refused too (sipd builds those itself, for inbox archives).
    message = _refused(d, "predict", "remote", f"/vsizip/{outside}/x.zip/a.tif", "-o", str(out))
    assert "virtual file system" in message
    # A VRT inside the roots naming files inside them is still accepted.
    inside = d.roots[0] / "inside.tif"
    write_synthetic_scene(inside, SIZE, MODEL_BANDS)
    good = _vrt(d.roots[0] / "good.vrt", inside)
    d.sipctl("predict", "remote", str(good), "-o", str(d.roots[0] / "good_labels.tif"))


def test_streamed_vrt_is_refused(daemon: Sipd, outside: Path) -> None:
    d = daemon
    payload = _vrt(d.roots[0] / "stream.vrt", outside / "secret.tif").read_bytes()
    header = P.PredictStreamHeader(
        model="projects/remote/models/1",
        encoding=P.RASTER_ENCODING_GEOTIFF,
        total_bytes=len(payload),
    )
    requests = iter([P.PredictStreamRequest(header=header), P.PredictStreamRequest(chunk=payload)])
    with pytest.raises(grpc.RpcError) as err:
        list(d.client.prediction.PredictStream(requests, timeout=60))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "VRT" in (err.value.details() or "")


def test_watched_inbox_refuses_fifos_links_and_leaking_vrts(daemon: Sipd, outside: Path) -> None:
    d = daemon
    root = d.roots[0]
    inbox, outbox = root / "inbox", root / "outbox"
    inbox.mkdir()
    d.sipctl("watch", "add", str(inbox), "--project", "remote", "--out", str(outbox),
             "--name", "guarded", "--on-success", "delete")  # fmt: skip
    os.mkfifo(inbox / "pipe.tif")
    (inbox / "link.tif").symlink_to(outside / "secret.tif")
    _vrt(inbox / "leak.vrt", outside / "secret.tif")
    write_synthetic_scene(root / "good.tmp", SIZE, MODEL_BANDS)
    os.rename(root / "good.tmp", inbox / "good.tif")
    failed = inbox / "failed"

    def settled() -> bool:
        names = {p.name for p in failed.iterdir()} if failed.exists() else set()
        bad = {"pipe.tif", "link.tif", "leak.vrt"} <= names
        return bad and (outbox / "good.tif").exists()

    wait_for(settled, timeout=180, what="bad units in failed/, the good one classified")
    assert not (outbox / "link.tif").exists() and not (outbox / "leak.tif").exists()
    assert (outside / "secret.tif").exists()  # the link's target is untouched
    error = (failed / "link.tif.error.txt").read_text()
    assert "symbolic link" in error
    assert "outside the unit" in (failed / "leak.vrt.error.txt").read_text()
    d.sipctl("watch", "remove", "guarded")


def test_predict_removes_scratch_files_a_killed_worker_left(daemon: Sipd) -> None:
    d = daemon
    folder = d.roots[0] / "scratch_out"
    folder.mkdir()
    leftovers = [
        folder / ".lab.tif.deadbeef.scratch.tif",
        folder / ".lab.tif.deadbeef.scratch.tif.aux.xml",
        folder / ".lab_confidence.tif.0badf00d.scratch.tif",
        folder / ".lab.tif.cafe0123.tmp",
    ]
    for p in leftovers:
        p.write_bytes(b"left by a killed worker")
    other = folder / ".someone_else.tif.deadbeef.scratch.tif"  # not an output of this job
    other.write_bytes(b"x")
    src = d.roots[0] / "scratch_scene.tif"
    write_synthetic_scene(src, SIZE, MODEL_BANDS)
    d.sipctl("predict", "remote", str(src), "-o", str(folder / "lab.tif"), "--confidence")
    assert [p for p in leftovers if p.exists()] == []
    assert other.exists()
    assert (folder / "lab.tif").exists()


@pytest.mark.slow  # restarts a daemon on a doctored store
def test_a_stored_watch_into_the_data_dir_is_paused_at_start(
    tmp_path: Path, model_source: Path
) -> None:
    """A watch stored before the check existed (its row edited here, daemon stopped, as
    an older sipd left it) must not move the daemon's files away after a restart."""
    d = Sipd(tmp_path / "state", roots=[tmp_path]).start()
    shutil.copytree(model_source, d.data_dir / "models" / "p" / "1")
    try:
        bands = ",".join(f"B{i + 1}" for i in range(MODEL_BANDS))
        d.sipctl("project", "create", "p", "--classes", "c1,c2,c3", "--bands", bands)
        d.sipctl("watch", "add", str(tmp_path / "in"), "--project", "p", "--out",
                 str(tmp_path / "out"), "--name", "old")  # fmt: skip
    finally:
        d.stop()
    db = sqlite3.connect(d.data_dir / "sipd.db")
    with db:
        (spec,) = db.execute("SELECT spec FROM watches WHERE id = 'old'").fetchone()
        data = json.loads(spec)
        data["inbox"] = str(d.data_dir)
        db.execute("UPDATE watches SET spec = ? WHERE id = 'old'", (json.dumps(data),))
    db.close()
    d.start()
    try:
        shown = d.sipctl_json("watch", "show", "old")
        assert shown["state"].endswith("PAUSED") and "data dir" in shown["last_error"], shown
        message = _refused(d, "watch", "resume", "old")
        assert "data dir" in message
        time.sleep(2)  # a scanner pass or more
        assert (d.data_dir / "sipd.db").exists() and not (d.data_dir / "failed").exists()
    finally:
        d.stop()


@pytest.mark.parametrize("dtype", ["float64", "complex64"])
def test_predict_refuses_pixel_types_scene_add_refuses(daemon: Sipd, dtype: str) -> None:
    d = daemon
    data = np.ones((MODEL_BANDS, 32, 32), dtype=dtype)
    src = write_raster(d.roots[0] / f"typed_{dtype}.tif", data)
    out = d.roots[0] / f"typed_{dtype}_labels.tif"
    jobs = d.sipctl_json("jobs", "list").get("jobs", [])
    message = _refused(d, "predict", "remote", str(src), "-o", str(out))
    # Refused at submit, with the accepted types, instead of a FAILED job later.
    assert "INVALID_ARGUMENT" in message and f"pixel type {dtype}" in message
    assert d.sipctl_json("jobs", "list").get("jobs", []) == jobs and not out.exists()


def test_streamed_raw_bytes_that_are_vrt_xml_are_refused(daemon: Sipd, outside: Path) -> None:
    # GDAL picks a driver by content: RAW pixels that happen to be VRT XML (padded to the
    # announced size) would be read as a VRT of an outside file by the worker.
    d = daemon
    size = MODEL_BANDS * SIZE * SIZE * 2
    xml = _vrt(d.roots[0] / "raw.vrt", outside / "secret.tif").read_bytes()
    payload = xml + b" " * (size - len(xml))
    header = P.PredictStreamHeader(
        model="projects/remote/models/1",
        encoding=P.RASTER_ENCODING_RAW,
        total_bytes=size,
        shape=[MODEL_BANDS, SIZE, SIZE],
        dtype="uint16",
    )
    requests = iter([P.PredictStreamRequest(header=header), P.PredictStreamRequest(chunk=payload)])
    with pytest.raises(grpc.RpcError) as err:
        list(d.client.prediction.PredictStream(requests, timeout=60))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "VRT" in (err.value.details() or "")


def test_nested_vrts_connection_strings_and_vrt_masks_are_refused(
    daemon: Sipd, outside: Path
) -> None:
    d = daemon
    root = d.roots[0]
    # GDAL lists only a VRT's direct sources: a VRT among them is refused.
    inner = _vrt(root / "inner.vrt", outside / "secret.tif")
    outer = _vrt(root / "outer.vrt", inner)
    out = root / "nested_labels.tif"
    message = _refused(d, "predict", "remote", str(outer), "-o", str(out))
    assert "itself a VRT" in message and not out.exists()
    # A connection string names its file inside; it is not a path in the roots.
    conn = _vrt(root / "conn.vrt", Path(f"GTIFF_DIR:1:{outside / 'secret.tif'}"))
    message = _refused(d, "inspect", str(conn), "--stats")
    assert "not a plain absolute file path" in message
    # A VRT background mask decides which pixels are left out: its sources are checked.
    scene = root / "masked_scene.tif"
    write_synthetic_scene(scene, SIZE, MODEL_BANDS)
    mask = _vrt(root / "mask.vrt", outside / "secret.tif", bands=1)
    message = _refused(
        d, "predict", "remote", str(scene), "-o", str(root / "masked.tif"),
        "--background-mask", str(mask),
    )  # fmt: skip
    assert "outside the allowed roots" in message


def test_predict_never_overwrites_a_registered_scene(daemon: Sipd) -> None:
    d = daemon
    root = d.roots[0]
    d.sipctl("project", "create", "guarded", "--classes", "a,b", "--bands", "B1,B2,B3,B4")
    scene = root / "guarded_scene.tif"
    write_synthetic_scene(scene, SIZE, MODEL_BANDS)
    d.sipctl("scene", "add", "guarded", str(scene), "--name", "g")
    before = _digest(scene)
    src = root / "guarded_src.tif"
    write_synthetic_scene(src, SIZE, MODEL_BANDS)
    # Another project's model, a `label` token and --overwrite: still not the scene.
    message = _refused(d, "predict", "remote", str(src), "-o", str(scene), "--overwrite")
    assert "PERMISSION_DENIED" in message and "scene 'g'" in message
    assert _digest(scene) == before


def test_a_scene_swapped_for_a_leaking_vrt_after_its_check_is_refused_by_the_worker(
    daemon: Sipd, outside: Path
) -> None:
    # The daemon checked the file when it was added; a job opens it later, in the worker,
    # which checks again what GDAL opens.
    d = daemon
    root = d.roots[0]
    d.sipctl("project", "create", "swapped", "--classes", "a,b", "--bands", "B1,B2,B3,B4")
    scene = root / "swapped.tif"
    write_synthetic_scene(scene, SIZE, MODEL_BANDS)
    d.sipctl("scene", "add", "swapped", str(scene), "--name", "s")
    d.sipctl("roi", "add", "swapped", "--class", "a", "--wkt", "POINT (5 5)")
    _vrt(root / "swap.vrt", outside / "secret.tif").replace(scene)
    message = _refused(d, "mask", "swapped")
    assert "PERMISSION_DENIED" in message and "outside the allowed roots" in message
