"""The SAR chain's own pieces: product detection, the fused calibrate+multilook pass,
border noise, block-size independence, the geolocation-grid spline."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sipd.bench.sar_products import make_s1_product, speckle_dn, zip_product
from sipd.contracts.preprocessing import SarOptions
from sipd.errors import InvalidArgument
from sipd.preprocess import catalog, geocode, sar_pipeline
from sipd.preprocess.product_files import open_measurement
from sipd.preprocess.sar_product import Quantity
from sipd.preprocess.sentinel1 import open_sentinel1
from sipd.preprocess.streaming import DatasetsPerThread
from sipd.progress import JobContext
from tests.support import shared_fixture

S1 = "sentinel1/S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"


@pytest.fixture(scope="module")
def small_s1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1/32-scale dual-pol IW GRD in the real layout, with a no-data margin."""
    template = shared_fixture(S1)
    base = speckle_dn(3)

    def dn(row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
        out = base(row0, col0, rows, cols)
        out[:, :37] = 0  # outside the swath, as GRDs have at their edges
        return out

    return make_s1_product(template, tmp_path_factory.mktemp("s1") / template.name, scale=32, dn=dn)


def test_detect_names_the_preprocessor_from_content(small_s1: Path, tmp_path: Path) -> None:
    assert catalog.detect(small_s1) == "sentinel1"
    assert catalog.detect(small_s1 / "manifest.safe") == "sentinel1"
    archive = zip_product(small_s1, tmp_path / "p.zip")
    assert catalog.detect(archive) == "sentinel1"
    assert catalog.detect(shared_fixture("radarsat2")) == "radarsat2"
    rcm = shared_fixture("rcm/fake_VV_VH_GRD")
    assert catalog.detect(rcm) == catalog.detect(rcm / "metadata" / "product.xml") == "rcm"
    s2 = next(shared_fixture("sentinel2").glob("S2*MSIL2A*.SAFE"))
    assert catalog.detect(s2) == "sentinel2"  # a SAFE, but not a SAR one
    truncated = tmp_path / "t.zip"
    truncated.write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(InvalidArgument, match="not a readable zip"):
        catalog.detect(truncated)
    with pytest.raises(InvalidArgument, match="not a product a preprocessor knows"):
        catalog.detect(tmp_path)
    assert not catalog.is_raw_product(tmp_path / "scene.tif")
    assert catalog.is_raw_product(archive) and catalog.is_raw_product(small_s1)


def _naive(product, band, options: SarOptions) -> np.ndarray:
    """Whole-image calibration, then multilook of the valid pixels, in float64."""
    with rasterio.open(band.measurement) as ds:
        dn = ds.read(1).astype(np.float64)
    k, n = band.radiometry.terms(
        slice(0, product.lines), slice(0, product.pixels), Quantity.SIGMA0, True
    )
    value = np.maximum((dn**2 - n) * k, 10 ** (options.noise_floor_db / 10))
    value[dn == 0] = np.nan
    az, rg = options.looks
    h, w = product.lines // az, product.pixels // rg
    cells = value[: h * az, : w * rg].reshape(h, az, w, rg)
    with np.errstate(invalid="ignore"):
        return np.nanmean(cells, axis=(1, 3))


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_fused_calibration_and_multilook_equal_the_naive_chain(small_s1: Path) -> None:
    product = open_sentinel1(str(small_s1))
    for looks in ("1x1", "3x2", "4x4"):
        options = SarOptions(multilook=looks, db=False, crs="none")
        plan = sar_pipeline.plan(product, options)
        readers = DatasetsPerThread(open_measurement)
        try:
            got = sar_pipeline._intensity(
                plan, product.bands[1], readers, 0, plan.out_lines, sar_pipeline.Timings()
            )
        finally:
            readers.close()
        want = _naive(product, product.bands[1], options)
        assert got.shape == want.shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=2e-5, equal_nan=True)
        assert np.isnan(got[:, 0]).all() and np.isfinite(got[:, -1]).all()


def test_border_noise_marks_low_runs_from_either_edge() -> None:
    dn = np.full((3, 40), 500, dtype=np.uint16)
    dn[0, :5] = [0, 3, 10, 29, 12]  # a run of low DN from the near edge
    dn[1, -4:] = 7  # and from the far edge
    dn[2, 10] = 1  # a low pixel inside the swath is signal, not border
    invalid = dn == 0
    sar_pipeline._blank_border(dn, invalid)
    assert invalid[0, :5].all() and not invalid[0, 5:].any()
    assert invalid[1, -4:].all() and not invalid[1, :-4].any()
    assert not invalid[2].any()


def test_output_does_not_depend_on_the_block_size(
    small_s1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    product = open_sentinel1(str(small_s1))
    options = SarOptions(multilook="2x2", speckle="refined-lee:7", crs="none")
    outputs = []
    for lines in (256, 40):  # many blocks, each with a halo
        monkeypatch.setattr(sar_pipeline, "BLOCK_LINES", lines)
        out = tmp_path / f"b{lines}.tif"
        sar_pipeline.run(product, options, out, JobContext(), {}, threads=2)
        with rasterio.open(out) as ds:
            outputs.append(ds.read())
            assert ds.descriptions == ("VV_sigma0_dB", "VH_sigma0_dB")
            assert len(ds.gcps[0]) == len(product.gcps)  # radar geometry keeps the grid
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b256.tif", "b40.tif"]  # no scratch


def test_grid_spline_is_exact_at_every_grid_point(small_s1: Path) -> None:
    product = open_sentinel1(str(small_s1))
    crs = rasterio.crs.CRS.from_epsg(3413)
    grid = geocode.output_grid(product.gcps, crs, 160.0)
    inverse = geocode.InverseMap(product.gcps, grid, (2, 2))
    xs, ys = rasterio.warp.transform(
        geocode.WGS84, crs, [g.lon for g in product.gcps], [g.lat for g in product.gcps]
    )
    cols, rows = geocode.pixel_of(grid.transform, np.asarray(xs), np.asarray(ys))
    spline_rows = np.column_stack([rows - 0.5, cols - 0.5])
    got = inverse.spline(spline_rows + 0.5)
    want = np.column_stack(
        [[g.line / 2 - 0.5 for g in product.gcps], [g.pixel / 2 - 0.5 for g in product.gcps]]
    )
    np.testing.assert_allclose(got, want, atol=1e-6)
    # The lattice between grid points departs from the spline by far under a pixel.
    window = rasterio.windows.Window(100, 100, 64, 64)
    lines, pixels = inverse.coords(window)
    rr, cc = np.mgrid[100:164, 100:164] + 0.5
    exact = inverse.spline(np.column_stack([rr.ravel(), cc.ravel()]))
    assert np.abs(lines.ravel() - exact[:, 0]).max() < 0.01
    assert np.abs(pixels.ravel() - exact[:, 1]).max() < 0.01


def test_a_zip_reads_like_the_folder(small_s1: Path, tmp_path: Path) -> None:
    archive = zip_product(small_s1, tmp_path / "p.zip")
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist()[0].startswith(small_s1.name + "/")
    a, b = open_sentinel1(str(small_s1)), open_sentinel1(str(archive))
    assert b.bands[0].measurement.startswith("/vsizip/") and b.files == [str(archive)]
    options = SarOptions(crs="none", db=False)
    for product, name in ((a, "a.tif"), (b, "b.tif")):
        sar_pipeline.run(product, options, tmp_path / name, JobContext(), {}, threads=1)
    with rasterio.open(tmp_path / "a.tif") as x, rasterio.open(tmp_path / "b.tif") as y:
        np.testing.assert_array_equal(x.read(), y.read())
    shutil.rmtree(tmp_path / "unused", ignore_errors=True)
