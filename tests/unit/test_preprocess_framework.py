"""The preprocessing framework every family plugs into: the catalog and the options
registry in step, typed options per preprocessor, and the block writer (values, names,
tags, nodata; nothing left behind when a run fails or is cancelled)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from sipd.contracts.preprocessing import OPTIONS, PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess import catalog
from sipd.preprocess.band_stack import StackGrid, write_stack
from sipd.progress import JobCancelled, JobContext
from sipd.recipes import make_step
from tests.support import assert_cog, shared_fixture


def test_every_preprocessor_has_an_options_model_and_a_reader() -> None:
    assert set(catalog.PREPROCESSORS) == set(OPTIONS)
    for pre in catalog.PREPROCESSORS.values():
        model = pre.options
        model()  # every option has a default: a recipe names only what it changes
        for name, field in model.model_fields.items():
            assert field.description, f"{pre.name}.{name} has no description"
        assert set(model.PATH_OPTIONS) <= set(model.model_fields), pre.name
        assert isinstance(model().output_bands(), list)
        code = pre.code()
        if pre.kind == "sar":
            assert callable(getattr(code, f"open_{pre.name}"))
        else:
            assert callable(code.accepts) and callable(code.run), pre.name
        if pre.fitter:
            module, _, function = pre.fitter.partition(":")
            assert callable(getattr(__import__(module, fromlist=[function]), function))


def test_steps_keep_their_family_options_through_json() -> None:
    for name in catalog.PREPROCESSORS:
        step = make_step(name, {})
        again = PreprocessStep.model_validate_json(step.model_dump_json())
        assert again == step and type(again.options) is OPTIONS[name]


def test_options_of_another_family_are_refused_naming_the_preprocessor() -> None:
    with pytest.raises(InvalidArgument, match=r"landsat options: .*multilook"):
        make_step("landsat", {"multilook": "2x2"})
    with pytest.raises(InvalidArgument, match="no preprocessor 'landsat8'"):
        make_step("landsat8", {})


def test_nothing_unrelated_is_taken_for_a_product(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a product")
    for pre in catalog.PREPROCESSORS.values():
        assert not pre.accepts(tmp_path / "notes.txt"), pre.name
        assert not pre.accepts(tmp_path / "missing.tif"), pre.name
    with pytest.raises(InvalidArgument, match="not a product a preprocessor knows"):
        catalog.detect(tmp_path / "notes.txt")


GRID = StackGrid(70, 45, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 4600000))


def _expected(r0: int, r1: int) -> np.ndarray:
    rows = np.arange(r0, r1, dtype=np.float32)[:, None]
    cols = np.arange(GRID.width, dtype=np.float32)[None, :]
    block = np.stack([rows * 1000 + cols, -(rows + cols)])
    block[:, (rows[:, 0] % 7 == 0)] = np.nan  # masked rows: NaN in every band
    return block


def test_write_stack_writes_every_block_in_place_with_names_tags_and_nodata(
    tmp_path: Path,
) -> None:
    out = tmp_path / "scene.tif"
    calls: list[int] = []
    lock = threading.Lock()

    def read(r0: int, r1: int) -> np.ndarray:
        with lock:
            calls.append(r0)
        return _expected(r0, r1)

    seconds = write_stack(out, GRID, ["red", "nir"], read, JobContext(), {"SIPD_MASK": "cloud"},
                          threads=3, block_rows=8,
                          band_tags=[{"wavelength": "665"}, {"wavelength": "842"}])  # fmt: skip
    assert sorted(calls) == list(range(0, 45, 8)) and seconds["total"] > 0
    assert_cog(out)
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("red", "nir") and ds.crs == GRID.crs
        assert ds.transform == GRID.transform and np.isnan(ds.nodata)
        assert ds.tags()["SIPD_MASK"] == "cloud" and ds.tags(2)["wavelength"] == "842"
        np.testing.assert_array_equal(ds.read(), _expected(0, 45))
        assert (ds.dataset_mask()[::7] == 0).all() and (ds.dataset_mask()[1] == 255).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_write_stack_leaves_nothing_when_a_block_fails_or_the_job_is_cancelled(
    tmp_path: Path,
) -> None:
    def failing(r0: int, r1: int) -> np.ndarray:
        if r0 >= 16:
            raise InvalidArgument("band B04 is short")
        return _expected(r0, r1)

    with pytest.raises(InvalidArgument, match="B04"):
        write_stack(tmp_path / "a.tif", GRID, ["red", "nir"], failing, JobContext(), {},
                    threads=2, block_rows=8)  # fmt: skip
    stop = threading.Event()
    ctx = JobContext(cancel_event=stop)

    def cancelling(r0: int, r1: int) -> np.ndarray:
        if r0 >= 8:
            stop.set()
        return _expected(r0, r1)

    with pytest.raises(JobCancelled):
        write_stack(tmp_path / "b.tif", GRID, ["red", "nir"], cancelling, ctx, {},
                    threads=1, block_rows=8)  # fmt: skip
    with pytest.raises(ValueError, match="gave"):
        write_stack(tmp_path / "c.tif", GRID, ["red"], _expected, JobContext(), {},
                    threads=1)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_gdal_read_errors_in_a_block_are_bad_input(tmp_path: Path) -> None:
    def damaged(r0: int, r1: int) -> np.ndarray:
        raise rasterio.errors.RasterioIOError("Read failed: JP2 codestream is corrupt")

    with pytest.raises(InvalidArgument, match="damaged"):
        write_stack(tmp_path / "a.tif", GRID, ["red", "nir"], damaged, JobContext(), {},
                    threads=1)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_malformed_product_metadata_is_bad_input_naming_the_product(tmp_path: Path) -> None:
    """A reader tripping on content it did not expect (here a tile resolution that is not
    a number) fails as INVALID_ARGUMENT naming the product, never INTERNAL."""
    from sipd.bench.sentinel2_products import product_from_template
    from sipd.preprocess.runner import preprocess

    template = shared_fixture(
        "sentinel2/S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE"
    )
    safe = product_from_template(template, tmp_path / "p", 60)
    tile = next((safe / "GRANULE").glob("*/MTD_TL.xml"))
    tile.write_text(tile.read_text().replace('resolution="10"', 'resolution="ten"'))
    out = tmp_path / "out.tif"
    with pytest.raises(InvalidArgument, match=r"cannot be read as a sentinel2 product"):
        preprocess(str(safe), str(out), make_step("sentinel2", {}), JobContext(), overwrite=False)
    assert not out.exists()


def test_leaving_in_order_early_waits_for_the_work_in_flight() -> None:
    """A cancel raised while blocks are being read must not let the caller close the
    datasets those blocks still read (that was a SIGSEGV in GDAL)."""
    from sipd.preprocess.streaming import in_order

    started, release, finished = threading.Event(), threading.Event(), []

    def work(i: int) -> int:
        if i == 1:
            started.set()
            release.wait(10)
            finished.append(i)
        return i

    with pytest.raises(JobCancelled), in_order(work, range(4), 2, ahead=3) as results:
        for _ in results:
            assert started.wait(10)
            threading.Timer(0.2, release.set).start()
            raise JobCancelled("cancelled by request")
    assert finished == [1]  # item 1 was finished before the block was left
