"""Bad input through the API gets a clear status (never INTERNAL), and changes nothing."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from sipapi.v1 import common_pb2, job_pb2, labeling_pb2, project_pb2

from tests.support import Sipd, write_raster

PROJECT = "projects/bad"
SCENE = "projects/bad/scenes/a"


@pytest.fixture(scope="module")
def d(shared_sipd: Sipd) -> Iterator[Sipd]:
    """A project with one 64 x 64 two-band scene and one ROI."""
    shared_sipd.sipctl("project", "create", "bad", "--classes", "ice,water", "--bands", "HH,HV")
    scene = write_raster(shared_sipd.roots[0] / "a.tif", np.ones((2, 64, 64), dtype="uint16"))
    shared_sipd.sipctl("scene", "add", "bad", str(scene), "--name", "a")
    shared_sipd.sipctl("roi", "add", "bad", "--class", "ice", "--wkt", "POINT (5 5)")
    yield shared_sipd


def _refused(call: Callable[..., Any], request: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    assert info.value.code() == code, info.value.details()
    return str(info.value.details())


def _invalid(call: Callable[..., Any], request: Any) -> str:
    return _refused(call, request, grpc.StatusCode.INVALID_ARGUMENT)


def _rois(d: Sipd) -> list[str]:
    resp = d.client.labeling.ListRois(labeling_pb2.ListRoisRequest(parent=SCENE), timeout=10)
    return [r.wkt for r in resp.rois]


# -- names, paging and enums ----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["jobs/99999999999999999999", "jobs/٣", "jobs/-1", "jobs/", "jobs/3\n"]
)
def test_job_names_out_of_range_or_not_ascii_are_invalid(d: Sipd, name: str) -> None:
    message = _invalid(d.client.jobs.GetJob, job_pb2.GetJobRequest(name=name))
    assert "expected jobs/N" in message


def test_an_roi_id_beyond_sqlite_integers_is_invalid(d: Sipd) -> None:
    name = f"{SCENE}/rois/{'9' * 20}"
    assert "not a number of an ROI" in _invalid(
        d.client.labeling.DeleteRoi, labeling_pb2.DeleteRoiRequest(name=name)
    )


def test_page_tokens_that_no_list_returned_are_invalid(d: Sipd) -> None:
    assert "page_token" in _invalid(
        d.client.jobs.ListJobs, job_pb2.ListJobsRequest(page_token="9" * 40)
    )
    assert "page_token" in _invalid(
        d.client.projects.ListProjects, project_pb2.ListProjectsRequest(page_token="-1")
    )
    assert "page_token" in _invalid(
        d.client.labeling.ListRois, labeling_pb2.ListRoisRequest(parent=SCENE, page_token="-1")
    )


def test_unknown_enum_numbers_are_invalid(d: Sipd) -> None:
    assert "state 99" in _invalid(d.client.jobs.ListJobs, job_pb2.ListJobsRequest(state=99))
    assert "split 77" in _invalid(
        d.client.labeling.ListRois, labeling_pb2.ListRoisRequest(parent=SCENE, split=77)
    )
    before = _rois(d)
    for roi in (
        labeling_pb2.Roi(class_name="ice", wkt="POINT (1 1)", split=77),
        labeling_pb2.Roi(class_name="ice", wkt="POINT (1 1)", coordinates=9),
    ):
        _invalid(d.client.labeling.CreateRoi, labeling_pb2.CreateRoiRequest(parent=SCENE, roi=roi))
    assert _rois(d) == before


def test_negative_roi_width_is_refused_not_stored_as_1(d: Sipd) -> None:
    before = _rois(d)
    roi = labeling_pb2.Roi(class_name="ice", wkt="LINESTRING (1 1, 9 9)", width=-3)
    message = _invalid(
        d.client.labeling.CreateRoi, labeling_pb2.CreateRoiRequest(parent=SCENE, roi=roi)
    )
    assert "width -3" in message
    assert _rois(d) == before


@pytest.mark.parametrize(
    "wkt",
    [
        # GEOS's WKT reader crashed the daemon (SIGSEGV) on this.
        "GEOMETRYCOLLECTION (" * 100_000 + "POINT (1 1)" + ")" * 100_000,
        "GEOMETRYCOLLECTION (" * 1_000 + "POINT (1 1)" + ")" * 1_000,
        "POINT (inf 1)",
        "POINT (nan nan)",
    ],
    ids=["nested-100000", "nested-1000", "inf", "nan"],
)
def test_wkt_nested_too_deep_or_not_finite_is_refused(d: Sipd, wkt: str) -> None:
    before = _rois(d)
    roi = labeling_pb2.Roi(class_name="ice", wkt=wkt)
    _invalid(d.client.labeling.CreateRoi, labeling_pb2.CreateRoiRequest(parent=SCENE, roi=roi))
    assert d.proc is not None and d.proc.poll() is None
    assert _rois(d) == before


def test_a_10kB_name_gives_a_short_message(d: Sipd) -> None:
    name = "x" * 10_000
    for call, request in (
        (d.client.projects.GetProject, project_pb2.GetProjectRequest(name=name)),
        (
            d.client.projects.CreateProject,
            project_pb2.CreateProjectRequest(
                project_id=name,
                project=project_pb2.Project(classes=[common_pb2.ClassDef(name="a")]),
            ),
        ),
        (d.client.jobs.GetJob, job_pb2.GetJobRequest(name=name)),
    ):
        message = _invalid(call, request)
        assert len(message) < 1100 and "…" in message


# -- ROI files --------------------------------------------------------------------------


def _import(d: Sipd, name: str, text: str) -> str:
    path = d.roots[0] / name
    path.write_text(text)
    before = _rois(d)
    message = _invalid(
        d.client.labeling.ImportRois, labeling_pb2.ImportRoisRequest(parent=SCENE, path=str(path))
    )
    assert _rois(d) == before
    return message


def _feature(coordinates: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"class": "ice"},
        "geometry": {"type": "Point", "coordinates": coordinates},
    }


def test_geojson_with_utm_numbers_and_no_crs_is_refused_as_not_lonlat(d: Sipd) -> None:
    doc = {"type": "FeatureCollection", "features": [_feature([500100, 6999900])]}
    message = _import(d, "utm.geojson", json.dumps(doc))
    assert "not longitude/latitude" in message and '"crs"' in message


def test_geojson_with_infinite_coordinates_is_refused(d: Sipd) -> None:
    text = '{"type": "Feature", "properties": {"class": "ice"}, ' + (
        '"geometry": {"type": "Point", "coordinates": [Infinity, 1]}}'
    )
    assert "not finite" in _import(d, "inf.geojson", text)


def test_deeply_nested_json_is_refused(d: Sipd) -> None:
    assert "nested too deeply" in _import(d, "deep.json", "[" * 100_000 + "]" * 100_000)


def test_sip_csv_row_with_too_few_fields_is_refused(d: Sipd) -> None:
    text = ",width,height,Object,X,Y,Type,Label\n0,64,64,1,5,5,Point,ice_train\n1,64,64,2\n"
    assert "too few fields" in _import(d, "short.csv", text)


# -- scene size -------------------------------------------------------------------------


def _huge_header(path: Path, size: int) -> Path:
    """A GeoTIFF whose header declares size x size pixels but holds no data (sparse)."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=2,
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(500000, 7000000, 10, 10),
        tiled=True,
        sparse_ok=True,
        compress="deflate",
    ):
        pass
    return path


def test_a_scene_too_large_to_mask_is_refused_at_add(d: Sipd) -> None:
    path = _huge_header(d.roots[0] / "huge.tif", 200_000)
    message = _refused(
        d.client.labeling.CreateScene,
        labeling_pb2.CreateSceneRequest(
            parent=PROJECT, scene_id="huge", scene=labeling_pb2.Scene(path=str(path))
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert "200000 x 200000" in message and "limits.max_scene_pixels" in message


@pytest.mark.slow  # restarts a daemon with a lowered limit
def test_a_stored_scene_over_a_lowered_limit_is_refused_at_mask(tmp_path: Path) -> None:
    d = Sipd(tmp_path / "state", roots=[tmp_path]).start()
    try:
        d.sipctl("project", "create", "p", "--classes", "ice,water")
        scene = write_raster(tmp_path / "a.tif", np.ones((1, 100, 100), dtype="uint16"))
        d.sipctl("scene", "add", "p", str(scene), "--name", "a")
        d.stop()
        d.env = {"SIPD_LIMITS__MAX_SCENE_PIXELS": "5000"}
        d.start()
        result = d.sipctl("mask", "p", check=False)
        assert result.returncode != 0
        assert "limits.max_scene_pixels" in result.stderr
        assert "internal" not in result.stderr.lower()
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


# -- disk full ---------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, filled: needs root (mount); skipped elsewhere."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        # Unbuffered: the write that finds the disk full raises here, not at close.
        with open(folder / "filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_is_reported_as_no_space_left(tmp_path: Path, full_disk: Path) -> None:
    d = Sipd(tmp_path / "state", roots=[tmp_path]).start()
    try:
        d.sipctl("project", "create", "p", "--classes", "ice,water")
        scene = write_raster(tmp_path / "a.tif", np.ones((1, 64, 64), dtype="uint16"))
        d.sipctl("scene", "add", "p", str(scene), "--name", "a")
        for i in range(50):  # enough GeoJSON not to fit in what a filled tmpfs has left
            roi = labeling_pb2.Roi(class_name="ice", wkt=f"POINT ({i} {i})")
            d.client.labeling.CreateRoi(
                labeling_pb2.CreateRoiRequest(parent="projects/p/scenes/a", roi=roi), timeout=10
            )
        message = _refused(
            d.client.labeling.ExportRois,
            labeling_pb2.ExportRoisRequest(
                parent="projects/p/scenes/a", path=str(full_disk / "rois.geojson")
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        assert "no space left on device" in message
    finally:
        d.stop()


# -- start errors ------------------------------------------------------------------------


def _start(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPD_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sipd",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "",
            "--studio-listen",
            "",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_a_corrupt_store_fails_the_start_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "state"
    data.mkdir()
    (data / "sipd.db").write_bytes(b"this is not a database" * 100)
    result = _start(data)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sipd: ") and "not a sipd database" in last
    assert "Traceback" not in result.stderr


def test_a_newer_schema_fails_the_start_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "state"
    data.mkdir()
    db = sqlite3.connect(data / "sipd.db")
    db.execute("PRAGMA user_version=999")
    db.close()
    result = _start(data)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "schema version 999" in last and "upgrade sipd" in last
    assert "Traceback" not in result.stderr


def test_disk_full_mapping_of_gdal_and_chained_errors() -> None:
    """What a filled tmpfs cannot show through the API: GDAL's wording and a cause chain.

    The worker's failures (rasterio writing a mask or label map) reach the user through
    `disk_full` only where the worker calls it (see the report of this change)."""
    from rasterio.errors import RasterioIOError

    from sipd.errors import Code, disk_full, is_transient

    direct = disk_full(OSError(errno.ENOSPC, "No space left on device", "/data/out.tif"))
    assert direct is not None and "no space left on device at /data/out.tif" in str(direct)
    assert direct.code == Code.RESOURCE_EXHAUSTED and is_transient(direct.code)
    gdal = disk_full(RasterioIOError("/data/out.tif: Write failed: No space left on device"))
    assert gdal is not None and "no space left" in str(gdal)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("Write failed") from exc
    except RuntimeError as chained:
        assert disk_full(chained) is not None
    assert disk_full(RasterioIOError("Write failed")) is None
    assert disk_full(ValueError("bad")) is None
