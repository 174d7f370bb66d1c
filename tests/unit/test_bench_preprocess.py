"""`sipctl bench preprocess` and the S1 products it is made on (sipd.bench.sar_products)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sipd.bench.sar_products import make_s1_product, speckle_dn
from sipd.preprocess.sentinel1 import open_sentinel1
from tests.support import shared_fixture

S1 = "sentinel1/S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"


@pytest.mark.filterwarnings(
    "ignore::rasterio.errors.NotGeoreferencedWarning"
)  # the fixture's placeholder
def test_scaled_product_keeps_the_real_geometry(tmp_path: Path) -> None:
    template = shared_fixture(S1)
    full = open_sentinel1(str(template), ["VV"])
    safe = make_s1_product(template, tmp_path / template.name, scale=16)
    small = open_sentinel1(str(safe))
    assert [b.polarisation for b in small.bands] == ["VV", "VH"]  # VH made from VV
    assert (small.lines, small.pixels) == (full.lines // 16, full.pixels // 16)
    assert small.pixel_spacing == (full.pixel_spacing[0] * 16, full.pixel_spacing[1] * 16)
    # Every grid point moved with the image: same lon/lat at the scaled line/pixel.
    for a, b in zip(full.gcps, small.gcps, strict=True):
        assert (a.lon, a.lat) == (b.lon, b.lat)
        assert abs((a.line - 0.5) / 16 - (b.line - 0.5)) < 1e-6
    with rasterio.open(small.bands[1].measurement) as ds:
        assert (ds.height, ds.width, ds.dtypes[0]) == (small.lines, small.pixels, "uint16")
        assert ds.compression is None and len(ds.gcps[0]) == len(small.gcps)  # as ESA delivers
        dn = ds.read(1)
    assert dn.min() >= 1 and dn.std() > 20
    np.testing.assert_array_equal(dn[:50, :60], speckle_dn()(0, 0, 50, 60))


@pytest.mark.slow  # a benchmark in a child process
def test_sipctl_bench_preprocess_reports_steps_and_memory(tmp_path: Path) -> None:
    template = shared_fixture(S1)
    result = subprocess.run(
        [sys.executable, "-m", "sipctl", "--json", "bench", "preprocess", "--template",
         str(template), "--scale", "32", "--dir", str(tmp_path), "--option", "resolution=320"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["input"] == f"{16705 // 32} x {26102 // 32} x 2" and data["sensor"] == "sentinel1"
    assert data["options"]["speckle"] == "refined-lee:7" and data["options"]["resolution"] == 320
    for step in ("read", "calibrate", "speckle", "geocode", "cog", "total"):
        assert data["step_seconds"][step] >= 0
    assert 0 < data["peak_rss_mb"] < 2048 and data["crs"].startswith("EPSG:326")
    with rasterio.open(data["output"]) as ds:
        assert ds.descriptions == ("VV_sigma0_dB", "VH_sigma0_dB")
        assert abs(ds.transform.a - 320) < 1e-9


@pytest.mark.slow  # makes three products and preprocesses them in child processes
@pytest.mark.parametrize(
    ("sensor", "scale", "size"),
    [("landsat", 20, (390, 385, 7)), ("sentinel2", 30, (366, 366, 4)), ("sentinel3", 16, None)],
)
def test_bench_preprocess_of_optical_products(
    tmp_path: Path, sensor: str, scale: int, size: tuple[int, int, int] | None
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sipctl", "--json", "bench", "preprocess", "--sensor", sensor,
         "--scale", str(scale), "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["sensor"] == sensor and data["options"]["mask"]
    # A swath is resampled onto a map grid: its size is the grid's (at least 4 bands).
    assert data["output_size"] == list(size) if size else data["output_size"][2] == 4
    assert data["step_seconds"]["bands"] > 0
    assert 0 < data["peak_rss_mb"] < 2048 and data["seconds"] > 0
    with rasterio.open(data["output"]) as ds:
        assert ds.count == data["output_size"][2] and np.isnan(ds.nodata)
        assert np.isnan(ds.read(1)).any() and np.isfinite(ds.read(1)).any()  # clouds masked
