"""The studio's pure parts: strip-parallel features, tile windows, PNG encoding."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from sipd.errors import InvalidArgument
from sipd.nets.filter_bank import FilterBank
from sipd.studio.live import LIVE_SIGMAS, bank_rows
from sipd.studio.png import encode_png
from sipd.studio.tiles import max_level, tile_window


@pytest.mark.parametrize("threads", [1, 3])
def test_strip_parallel_features_equal_the_whole_image_pass(threads: int) -> None:
    bank = FilterBank(2, LIVE_SIGMAS).eval()
    image = np.random.default_rng(0).normal(size=(2, 300, 170)).astype(np.float32)
    inner = (21, 5, 250, 160)  # a box with a halo above and left, none below or right
    with torch.no_grad():
        whole = bank(torch.from_numpy(image)[None])[0].numpy()
    r0, c0, h, w = inner
    expected = whole[:, r0 : r0 + h, c0 : c0 + w].reshape(whole.shape[0], -1).T
    rows = bank_rows(bank, image, inner, threads)
    assert rows.shape == (h * w, bank.num_features)
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-5)


def test_tile_windows_cover_the_scene_level_by_level() -> None:
    assert max_level(256, 100) == 0 and max_level(257, 10) == 1 and max_level(10000, 5) == 6
    window, shape = tile_window(600, 400, 0, 2, 1)
    assert (window.col_off, window.row_off, window.width, window.height) == (512, 256, 88, 144)
    assert shape == (144, 88)
    window, shape = tile_window(600, 400, 2, 0, 0)
    assert (window.width, window.height, shape) == (600, 400, (100, 150))
    with pytest.raises(InvalidArgument, match="outside"):
        tile_window(600, 400, 1, 2, 0)
    with pytest.raises(InvalidArgument, match="level 3"):
        tile_window(600, 400, 3, 0, 0)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_round_trips_through_gdal(channels: int) -> None:
    # GDAL's PNG driver is the independent decoder.
    pixels = np.random.default_rng(channels).integers(0, 256, (37, 53, channels), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no georeference
        with MemoryFile(encode_png(pixels)) as mem, mem.open() as ds:
            assert ds.driver == "PNG"
            np.testing.assert_array_equal(np.moveaxis(ds.read(), 0, -1), pixels)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(pixels.astype(np.uint16))


def test_live_reader_fills_a_band_that_alone_is_nodata(tmp_path) -> None:
    """sipd.validity's rule in the live view: a pixel with every band nodata is invalid;
    one band at nodata among valid others is a real pixel, classified from its other
    bands with that band at its stretch's middle (the -9999 never reaches the bank)."""
    import rasterio

    from sipd.studio.live import BAND_FILL, _LevelReader
    from sipd.studio.tiles import SceneTiles

    data = np.random.default_rng(0).uniform(100, 200, (3, 40, 50)).astype(np.float32)
    data[0, 5, 7] = -9999  # band 1 alone
    data[:, 30:, 40:] = -9999  # every band: nodata
    data[2, 12, 3] = np.nan  # a float band's NaN is nodata too
    path = tmp_path / "scene.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=50, height=40, count=3,
                           dtype="float32", nodata=-9999) as ds:  # fmt: skip
            ds.write(data)
    low, span = np.full(3, 100, np.float32), np.full(3, 100, np.float32)
    reader = _LevelReader(SceneTiles(tmp_path / "cache"), str(path), 0,
                          {"width": 50, "height": 40}, low, span)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        image, invalid, origin = reader.read((0, 0, 50, 40), halo=0)
    assert origin == (0, 0) and image.shape == (3, 40, 50) and np.isfinite(image).all()
    expected = np.zeros((40, 50), dtype=bool)
    expected[30:, 40:] = True
    np.testing.assert_array_equal(invalid, expected)
    assert image[0, 5, 7] == BAND_FILL and image[2, 12, 3] == BAND_FILL
    assert image[1, 5, 7] == pytest.approx((data[1, 5, 7] - 100) / 100)
    ok = ~expected
    ok[5, 7] = ok[12, 3] = False
    np.testing.assert_allclose(image[:, ok], (data[:, ok] - 100) / 100, rtol=1e-6)
